"""Running the hw2 scripts from the V1 tests (a module of its own: pytest imports every conftest.py
under one name, so tests cannot import from theirs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HW2 = REPO / "hw2"
# The burst overfills the KV cache whatever the timing: 6 prompts of 4000 tokens, all at once,
# need 6 x 254 blocks of 16 tokens to the end and hw2's V1 servers hold 1028 blocks per GPU (V0's
# budget, hw2/common.sh), so 2 requests wait for a first one to finish, and CFS and Fair have
# newcomers to make room for.
BURST_ENV = {"NUM_PROMPTS": "6", "REQUEST_RATE": "inf", "SEED": "3",
             "RANDOM_INPUT_LEN": "4000", "RANDOM_OUTPUT_LEN": "64"}


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    # In a session of its own: a script that signals the wrong process group stops itself, not pytest.
    return subprocess.run(["bash", *args], cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True)
