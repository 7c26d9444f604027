"""One short real sweep for the hw2 tests: hw2/sweep.sh over intervals 0 and 10 on the simulated
GPU, one burst each, the same burst against our FairScheduler (hw2/sweep.sh --scheduler fair, as
hw2/run_all.sh runs it) and at interval 10 on the staged swap worker (hw2/sweep.sh --swap staged,
as run_all.sh --staged-swap runs it, for one interval: each server start costs a minute or more
here), then the analysis of all of them. The three sweeps run side by side."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
from hw2_scripts import BURST_ARGS, BURST_ENV, HW2, distinct_free_ports, run_scripts_together

from vllm_cfs.analysis.pipeline import Outputs, analyze


@dataclasses.dataclass
class Sweep:
    task31: Path
    task32: Path
    fair: Path  # FairScheduler's folder, results_fair beside results_3.2 as run_all.sh lays it out
    staged: Path  # the staged swap worker's sweep (interval 10 only), results_3.2_staged likewise
    out: Path
    process: subprocess.CompletedProcess
    fair_process: subprocess.CompletedProcess
    staged_process: subprocess.CompletedProcess
    outputs: Outputs


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Sweep:
    root = tmp_path_factory.mktemp("hw2")
    task32, fair, staged = root / "results_3.2", root / "results_fair", root / "results_3.2_staged"
    ports = [str(p) for p in distinct_free_ports(3)]
    # The three sweeps are independent (the staged one at interval 10, where CFS swaps: the staged
    # path's cheaper copies have something to change); they run side by side.
    process, fair_process, staged_process = run_scripts_together(
        [str(HW2 / "sweep.sh"), "--intervals", "0 10", "--runs", "1", "--port", ports[0], "--out", str(task32),
         "--", *BURST_ARGS],
        [str(HW2 / "sweep.sh"), "--scheduler", "fair", "--runs", "1", "--port", ports[1], "--out", str(fair),
         "--", *BURST_ARGS],
        [str(HW2 / "sweep.sh"), "--swap", "staged", "--intervals", "10", "--runs", "1", "--port", ports[2],
         "--out", str(staged), "--", *BURST_ARGS],
        env=BURST_ENV)
    for done in (process, fair_process, staged_process):
        assert done.returncode == 0, done.stderr[-3000:]
    # Task 3.1 is the same FCFS burst: reuse the sweep's interval-0 run under 3.1's file names.
    task31 = root / "results_3.1"
    task31.mkdir()
    for name in ("p0_r1.json", "p0_r1.txt", "env.txt", "model_config.json"):
        shutil.copy(task32 / name, task31 / name)
    shutil.copy(task32 / "server_p0.log", task31 / "vllm_server.log")
    outputs = analyze(task31, task32, root, fair_dir=fair, staged_dir=staged)
    return Sweep(task31, task32, fair, staged, root, process, fair_process, staged_process, outputs)
