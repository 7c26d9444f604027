"""hw2/sweep.sh and friends: what a sweep leaves behind, and how it fails."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from hw2_scripts import BURST_ENV, HW2, group_is_gone, run_script, server_groups

from vllm_cfs.analysis.server_log import MARKER, read_server_log
from vllm_cfs.results import RunResult
from vllm_cfs.experiment.environment import read_env
from vllm_cfs.swap import WORKER_CLS

STAGED_LINE = f"Simulated staged swap ({WORKER_CLS}): a 32-block staging buffer"


def test_a_sweep_writes_every_file_and_leaves_no_server(sweep):
    files = sorted(p.name for p in sweep.task32.iterdir() if not p.name.endswith(".png"))
    assert files == ["env.txt", "model_config.json", "p0_r1.json", "p0_r1.txt", "p10_r1.json", "p10_r1.txt",
                     "server_p0.log", "server_p10.log"]
    for interval in (0, 10):
        result = RunResult.load(sweep.task32 / f"p{interval}_r1.json")
        assert result.summary.completed == int(BURST_ENV["NUM_PROMPTS"]) and result.summary.failed == 0
        assert result.setup["label"] == f"p{interval}_r1"
        assert result.setup["gpu"] == "simulated GPU (a100-40gb x2)"
        assert (sweep.task32 / f"p{interval}_r1.txt").read_text().count("P99 TTFT (ms):") == 1
        log_text = (sweep.task32 / f"server_p{interval}.log").read_text()
        assert log_text.count(MARKER) == 1
        assert f"CFS_INTERVAL={interval}" in log_text
        assert read_server_log(sweep.task32 / f"server_p{interval}.log").simulated.profile == "a100-40gb"
    groups = server_groups(sweep.process.stderr)
    assert len(groups) == 2
    assert all(group_is_gone(g) for g in groups)


def one_complete_burst(folder, run, server_log) -> RunResult:
    """The folder holds one burst's results, its server log and the setup files; every request completed."""
    files = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".png"))
    assert files == sorted(["env.txt", "model_config.json", f"{run}.json", f"{run}.txt", server_log])
    result = RunResult.load(folder / f"{run}.json")
    assert result.summary.completed == int(BURST_ENV["NUM_PROMPTS"]) and result.summary.failed == 0
    assert result.setup["gpu"] == "simulated GPU (a100-40gb x2)"
    return result


def test_a_fair_sweep_serves_fair_scheduler_into_its_own_folder(sweep):
    result = one_complete_burst(sweep.fair, "fair_r1", "server_fair.log")
    assert result.setup["label"] == "fair_r1"
    log_text = (sweep.fair / "server_fair.log").read_text()
    assert log_text.count(MARKER) == 1
    # The scheduler that served says who it is at start: FairScheduler, not CFS at some interval.
    assert re.search(r"^INFO .*\] Fair scheduler: first token first", log_text, re.M)
    assert "CFS scheduler:" not in log_text
    assert "vllm_cfs.FairScheduler, FAIR_PATIENCE_TOKENS=8" in log_text  # the marker names it
    groups = server_groups(sweep.fair_process.stderr)
    assert len(groups) == 1 and group_is_gone(groups[0])


def test_a_staged_sweep_serves_the_staged_swap_worker(sweep):
    one_complete_burst(sweep.staged, "p10_r1", "server_p10.log")
    staged_text = (sweep.staged / "server_p10.log").read_text()
    per_block_text = (sweep.task32 / "server_p10.log").read_text()
    # server.sh says which path it serves; the simulator, which worker class vLLM handed it.
    assert f"with CFS_INTERVAL=10, staged swap ({WORKER_CLS}); log appended to" in staged_text
    assert "with CFS_INTERVAL=10, vLLM's per-block swap; log appended to" in per_block_text
    assert re.search(rf"^INFO .*\] {re.escape(STAGED_LINE)}$", staged_text, re.M)
    assert "staging buffer" not in per_block_text
    assert "CFS_INTERVAL=10, staged swap, 20" in staged_text  # the marker names the path
    # The buffer's blocks come out of the KV cache: vLLM gets exactly 32 GPU blocks fewer, the
    # same swap space.
    staged, per_block = read_server_log(sweep.staged / "server_p10.log"), read_server_log(sweep.task32 / "server_p10.log")
    assert (staged.staging_blocks, per_block.staging_blocks) == (32, None)
    assert staged.blocks.gpu_blocks == per_block.blocks.gpu_blocks - 32
    assert staged.blocks.cpu_blocks == per_block.blocks.cpu_blocks
    # CFS at interval 10 swapped on the staged path too (its counters, not a sampled stats line).
    assert staged.for_run(1).cfs[-1].get("blocks_swapped_out") > 0
    groups = server_groups(sweep.staged_process.stderr)
    assert len(groups) == 1 and group_is_gone(groups[0])


def test_env_txt_records_versions_gpu_and_settings(sweep):
    env = read_env(sweep.task32 / "env.txt")
    assert env["gpu"] == "simulated GPU (a100-40gb x2)"
    assert env["vllm"] == "0.9.0"
    assert env["scheduler"] == "vllm_cfs.CFSScheduler"
    assert env["intervals"] == "0 10"
    assert env["runs_per_interval"] == "1"
    assert env["num_prompts"] == BURST_ENV["NUM_PROMPTS"]
    assert env["preemption_mode"] == "swap" and env["tensor_parallel_size"] == "2"
    assert "--random-input-len 1500" in env["client_args"]
    fair = read_env(sweep.fair / "env.txt")
    assert fair["scheduler"] == "vllm_cfs.FairScheduler"
    assert fair["fair_patience_tokens"] == "8 (default)"
    assert "intervals" not in fair and "cfs_min_granularity" not in fair
    assert {k: fair[k] for k in ("gpu", "num_prompts", "seed", "client_args", "runs_per_interval")} == \
        {k: env[k] for k in ("gpu", "num_prompts", "seed", "client_args", "runs_per_interval")}
    assert (env["swap"], env["worker_cls"]) == ("per-block", "vLLM's default")
    staged = read_env(sweep.staged / "env.txt")
    assert (staged["swap"], staged["worker_cls"], staged["intervals"]) == ("staged", WORKER_CLS, "10")
    assert staged["scheduler"] == "vllm_cfs.CFSScheduler"


def test_a_server_that_dies_during_start_stops_the_sweep(tmp_path):
    out = tmp_path / "results"
    process = run_script(str(HW2 / "sweep.sh"), "--intervals", "0", "--runs", "1", "--out", str(out),
                         "--startup-timeout", "300", env={"SIM_GPU": "no-such-gpu"})

    assert process.returncode == 1
    assert "did not start" in process.stderr.splitlines()[-1]
    # Stopped by the server's exit, not by the start-up timeout.
    assert "server exited during start" in process.stderr and "not healthy" not in process.stderr
    log = out / "server_p0.log"
    assert "no-such-gpu" in log.read_text()  # the log is kept and says why
    assert all(group_is_gone(g) for g in server_groups(process.stderr))
    assert not list(out.glob("p0_r*.json"))


def test_a_server_that_is_not_healthy_in_time_is_stopped(tmp_path):
    out = tmp_path / "results"
    process = run_script(str(HW2 / "sweep.sh"), "--intervals", "10", "--runs", "1", "--out", str(out),
                         "--startup-timeout", "3")

    assert process.returncode == 1
    assert "not healthy after 3 s" in process.stderr
    assert process.stderr.strip().splitlines()[-1].startswith("sweep.sh: error: the server for CFS_INTERVAL=10 did not start")
    groups = server_groups(process.stderr)
    assert len(groups) == 1 and group_is_gone(groups[0])
    assert (out / "server_p10.log").is_file()


def test_the_server_group_is_read_after_setsid_has_run(tmp_path):
    # A setsid that takes a second to act: a sweep that read the server's process group at once
    # got its own, and stopping "the server" stopped the sweep and whoever started it (make, pytest).
    slow = tmp_path / "bin" / "setsid"
    slow.parent.mkdir()
    slow.write_text(f'#!/bin/sh\nsleep 1\nexec {shutil.which("setsid")} "$@"\n')
    slow.chmod(0o755)
    out = tmp_path / "results"
    process = run_script(str(HW2 / "sweep.sh"), "--intervals", "10", "--runs", "1", "--out", str(out),
                         "--startup-timeout", "3", env={"PATH": f"{slow.parent}:{os.environ['PATH']}"})

    assert process.returncode == 1, process.stderr[-2000:]
    assert "not healthy after 3 s" in process.stderr
    groups = server_groups(process.stderr)
    assert len(groups) == 1 and groups[0] != os.getpgid(0) and group_is_gone(groups[0])


@pytest.mark.parametrize("args, message", [
    (["--runs", "0"], "--runs must be a number >= 1"),
    (["--intervals", "5 x"], "intervals must be whole numbers"),
    (["--intervals", "0 5", "--log", "vllm_server.log"], "--log works with one interval only"),
    (["--colour"], "unknown argument '--colour'"),
    (["--scheduler", "lottery"], "--scheduler must be cfs or fair, got 'lottery'"),
    (["--scheduler", "fair", "--intervals", "0"], "--intervals applies to --scheduler cfs only"),
    (["--swap", "bogus"], "--swap must be per-block or staged, got 'bogus'"),
])
def test_sweep_refuses_bad_arguments_in_one_line(args, message, tmp_path):
    process = run_script(str(HW2 / "sweep.sh"), "--out", str(tmp_path / "r"), *args)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [f"sweep.sh: error: {process.stderr.split('error: ', 1)[1].strip()}"]
    assert message in process.stderr
    assert not (tmp_path / "r").exists()


def test_server_refuses_a_bad_cfs_interval_before_starting_vllm():
    process = run_script(str(HW2 / "server.sh"), env={"CFS_INTERVAL": "-3"})
    assert process.returncode == 2
    assert process.stderr.strip() == "server.sh: error: CFS_INTERVAL must be a whole number >= 0 (0 = FCFS), got '-3'"


@pytest.mark.parametrize("args, env, message", [
    (["--scheduler", "lottery"], {}, "--scheduler must be cfs or fair, got 'lottery'"),
    (["--scheduler", "fair"], {"FAIR_PATIENCE_TOKENS": "soon"}, "FAIR_PATIENCE_TOKENS must be a whole number >= 0, got 'soon'"),
    (["--swap", "bogus"], {}, "--swap must be per-block or staged, got 'bogus'"),
])
def test_server_refuses_a_bad_scheduler_setting_before_starting_vllm(args, env, message, tmp_path):
    process = run_script(str(HW2 / "server.sh"), *args, "--log", str(tmp_path / "log"), env=env)
    assert process.returncode == 2
    assert process.stderr.strip() == f"server.sh: error: {message}"
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize("script", ["server.sh", "client.sh", "sweep.sh", "run_all.sh"])
def test_every_script_has_help(script):
    process = run_script(str(HW2 / script), "--help")
    assert process.returncode == 0
    assert process.stdout.startswith(f"Usage: hw2/{script}")
    if script != "client.sh":  # the others can serve FairScheduler and the staged swap, and say how
        assert "FairScheduler" in process.stdout
        assert "staged" in process.stdout and "StagedSwapWorker" in process.stdout


def test_run_all_help_documents_the_fair_line():
    text = run_script(str(HW2 / "run_all.sh"), "--help").stdout
    assert "--no-fair" in text and "DIR/results_fair" in text and "hw2/sweep.sh --scheduler fair" in text


def test_run_all_help_documents_the_staged_swap_opt_in():
    text = run_script(str(HW2 / "run_all.sh"), "--help").stdout
    assert "--staged-swap" in text and "DIR/results_3.2_staged" in text and "hw2/sweep.sh --swap staged" in text
    assert "doubles the sweep's time" in text
    assert "--swap per-block|staged" in run_script(str(HW2 / "server.sh"), "--help").stdout
