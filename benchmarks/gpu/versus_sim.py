#!/usr/bin/env python3
"""Replay real-GPU runs on the simulated GPU and print the errors: see vllm_cfs/realgpu/versus_sim.py."""

import sys

from vllm_cfs.realgpu.versus_sim import main

if __name__ == "__main__":
    sys.exit(main())
