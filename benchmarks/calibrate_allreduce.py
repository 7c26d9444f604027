#!/usr/bin/env python3
"""Measure NCCL all-reduce between two GPUs at a TP-2 engine's message sizes (logic: vllm_cfs.calibration.allreduce).

Run on a machine with two CUDA GPUs and PyTorch (no vLLM needed):
    python3 benchmarks/calibrate_allreduce.py --out OUT      # writes OUT/allreduce-raw.json
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vllm_cfs.calibration import allreduce  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for allreduce-raw.json")
    parser.add_argument("--hidden", type=int, default=8192, help="model hidden size (CodeLlama-34B: 8192)")
    parser.add_argument("--reps", type=int, default=50, help="timed repetitions per size")
    args = parser.parse_args()
    try:
        points = allreduce.measure(hidden=args.hidden, reps=args.reps)
    except RuntimeError as exc:
        sys.exit(f"calibrate_allreduce: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "allreduce-raw.json").write_text(json.dumps(
        {"environment": allreduce.environment(), "hidden": args.hidden,
         "calls_per_sample": allreduce.CALLS, "points": points}, indent=1))
    for p in points:
        print(f"{p['tokens']:>5} tokens {p['bytes'] / 2**20:9.3f} MiB  {p['median_s'] * 1e6:9.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
