#!/usr/bin/env python3
"""Compare GPU measurements with the simulator's cost model and write docs/calibration.md
(logic: vllm_cfs.calibration.report). Runs on a CPU.

    python benchmarks/calibration_report.py \\
        --raw profiles/h200-raw.json --calibrated profiles/h200-measured.json --out docs/calibration.md
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vllm_cfs.calibration.cli import report_main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(report_main())
