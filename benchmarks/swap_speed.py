#!/usr/bin/env python3
"""Swap speed on a real GPU: vLLM 0.9's per-block copies against the staged copier (logic: vllm_cfs.swap.speed).

Needs PyTorch and one CUDA GPU (no vLLM). Builds the per-block copier from C++ as vLLM does its
copies, checks both paths byte for byte, times 1-512 blocks of CodeLlama-34B at TP 2 each way,
prints a table and writes OUT/swap-speed.json:
    python3 benchmarks/swap_speed.py --out OUT
"""

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for swap-speed.json")
    parser.add_argument("--staging-blocks", type=int, nargs="+", default=[32, 512],
                        help="staging buffer sizes to measure (blocks)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("swap_speed: needs a CUDA GPU")
    from vllm_cfs.calibration.copiers import build_copier, prepare_build_environment
    from vllm_cfs.calibration.environment import describe_environment
    from vllm_cfs.swap import speed

    device = torch.device("cuda", 0)
    prepare_build_environment(torch, device)
    copier, errors = build_copier(torch, Path(tempfile.mkdtemp()))
    runs = {}
    for staging in args.staging_blocks:
        runs[staging] = speed.measure(copier, staging_blocks=staging)
    result = {"environment": asdict(describe_environment(torch, device)), "per_block_copier": copier.description,
              "copier_build_errors": errors, "runs": {str(k): v for k, v in runs.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "swap-speed.json").write_text(json.dumps(result, indent=1, default=str))
    print(speed.render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
