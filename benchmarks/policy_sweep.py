"""Scheduling policies x workloads x seeds through the virtual-time replay (simulated GPU): one
table (CSV, JSON) and plots. ``--quick`` ends with a one-line verdict on ``ours``; ``--help``
lists the policies and workloads. The logic lives in vllm_cfs.lab (cli, sweep, policies, plots).
"""

import sys

from vllm_cfs.lab.cli import main

if __name__ == "__main__":  # replays run in a spawned process, which imports this file again
    sys.exit(main())
