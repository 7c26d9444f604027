#!/usr/bin/env python3
"""Measure a real CUDA GPU on CodeLlama-34B-shaped work and fit a simulated-GPU profile
(logic: vllm_cfs.calibration; method and results: docs/calibration.md).

Needs PyTorch, numpy and a CUDA GPU only (no vLLM, no model download). Writes under --out:
raw.json (every measured point with its samples), profile.json (the fitted profile, for
VLLM_CFS_SIM_GPU=path/profile.json) and table.md (measured vs predicted).

    python3 benchmarks/calibrate_gpu.py --out OUT                 # on the GPU
    python3 benchmarks/calibrate_gpu.py --dry-run --out OUT       # every code path on a CPU
    python3 benchmarks/calibrate_gpu.py --from-raw profiles/h200-raw.json --name h200-measured --out DIR
"""

import sys
from pathlib import Path

# the GPU machine runs this from a plain copy of the tree, with nothing installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vllm_cfs.calibration.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
