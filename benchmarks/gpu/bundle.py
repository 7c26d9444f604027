#!/usr/bin/env python3
"""Pack vLLM V1 for a GPU host without network: see vllm_cfs/realgpu/bundle.py and docs/real-gpu.md."""

import sys

from vllm_cfs.realgpu.bundle import main

if __name__ == "__main__":
    sys.exit(main())
