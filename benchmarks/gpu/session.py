#!/usr/bin/env python3
"""On a GPU host: one vLLM V1 server per policy, bursts, results: see vllm_cfs/realgpu/session.py."""

import sys

from vllm_cfs.realgpu.session import main

if __name__ == "__main__":
    sys.exit(main())
