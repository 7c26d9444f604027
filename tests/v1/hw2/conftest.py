"""One short real hw2 experiment on vLLM V1: ``hw2/run_all.sh --engine v1`` on the simulated GPU,
FCFS (interval 0: V1's own scheduling) and CFS interval 10, one burst each, and FairScheduler,
then its analysis (run_all.sh runs hw2/analyze.py itself). Four server starts: a few minutes here.
The burst: v1_hw2_scripts.BURST_ENV."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from v1_hw2_scripts import BURST_ENV, HW2, REPO


@dataclasses.dataclass
class Experiment:
    out: Path
    task31: Path
    task32: Path
    fair: Path
    process: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def experiment(tmp_path_factory) -> Experiment:
    out = tmp_path_factory.mktemp("hw2-v1") / "results"
    # PYTHON unset: --engine v1 must find .venv-v1 by itself, and give it to every script it starts.
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    process = subprocess.run(["bash", str(HW2 / "run_all.sh"), "--engine", "v1", "--intervals", "0 10", "--runs", "1",
                              "--out", str(out)], cwd=REPO, env={**env, **BURST_ENV}, capture_output=True, text=True,
                             timeout=900, start_new_session=True)
    assert process.returncode == 0, process.stderr[-4000:]
    return Experiment(out, out / "results_3.1", out / "results_3.2", out / "results_fair", process)
