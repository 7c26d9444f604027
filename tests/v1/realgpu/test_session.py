"""The real-GPU session, run end to end on the simulated GPU (the same vllm serve, client and files)."""

import json
import math

import pytest

from vllm_cfs.realgpu import session
from vllm_cfs.realgpu.session import SessionError, policy_args, serve_command
from vllm_cfs.realgpu.versus_sim import as_client_sees, compare_folder, format_prediction
from vllm_cfs.results import RunResult
from vllm_cfs.sim.model_dir import codellama_34b_dir


def test_policies_are_the_labs_and_the_budget_is_passed(tmp_path):
    assert policy_args("fcfs")[1] == {"CFS_INTERVAL": "0"}
    assert policy_args("cfs-10")[:2] == ("vllm_cfs.CFSScheduler", {"CFS_INTERVAL": "10"})
    command, env = serve_command(tmp_path, "ours", 1028, 2, 8000, 4096)
    text = " ".join(command)
    assert "--scheduler-cls vllm_cfs.FairScheduler" in text and "--kv-offloading-size 16" in text
    assert "--num-gpu-blocks-override 1028" in text and "--tensor-parallel-size 2" in text
    assert "--load-format dummy" in text and env["VLLM_USE_FLASHINFER_SAMPLER"] == "0"
    assert "--num-gpu-blocks-override" not in " ".join(serve_command(tmp_path, "fcfs", None, 1, 8000, 4096)[0])
    for bad in ("cfs-0", "cfs-x", "lifo"):
        with pytest.raises(SessionError, match="unknown policy"):
            policy_args(bad)


def test_bad_input_is_one_line(tmp_path, capsys):
    assert session.main(["--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.startswith("session: error: ") and not (tmp_path / "o").exists()
    model = codellama_34b_dir()
    assert session.main(["--model", str(model), "--out", str(tmp_path / "o"), "--seeds", "3",
                         "--all-at-once-seed", "3"]) == 1
    assert "its own seed" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sim_session(tmp_path_factory, monkeypatch_module):
    """Ours on 64 blocks: 6 prompts of 200 tokens sent at once, 4 admitted (13 blocks each), 2 newcomers
    waiting while the 4 have 128 decode steps to go, so Fair evicts for them after its patience."""
    monkeypatch_module.setenv("VLLM_CFS_SIM_GPU", "h200")
    out = tmp_path_factory.mktemp("session")
    code = session.main(["--model", str(codellama_34b_dir()), "--out", str(out), "--policies", "ours",
                         "--gpu-blocks", "64", "--max-model-len", "512", "--seeds", "--all-at-once-seed", "0",
                         "--num-prompts", "6", "--input-len", "200", "--output-len", "128",
                         "--gpu", "simulated h200", "--port", "8731", "--log-steps"])
    assert code == 0, (out / "server-ours.log").read_text()[-3000:]
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_log_steps_has_vllm_log_every_steps_tokens_and_time(sim_session):
    steps = [line for line in (sim_session / "server-ours.log").read_text().splitlines() if "Iteration(" in line]
    # 6 prompts of 200 tokens, 128 tokens each: at least one step per output token of the longest.
    assert len(steps) >= 128 and all("context tokens" in line and "elapsed time" in line for line in steps)
    assert any(" 200 context tokens" in line or " 400 context tokens" in line for line in steps)


def test_a_session_writes_each_runs_results_and_its_own_counts(sim_session):
    [row] = json.loads((sim_session / "summary.json").read_text())
    result = RunResult.load(sim_session / "ours-all-s0.json")
    assert (row["policy"], row["burst"], row["completed"], row["failed"]) == ("ours", "all-s0", 6, 0)
    assert all(r.output_tokens == 128 for r in result.records) and math.isinf(row["rate"])
    assert row["p99_ttft_ms"] == result.summary.p99_ttft_ms and row["output_tok_s"] == result.summary.output_throughput
    # the stats line at drain holds the burst's totals: every token once, plus what was recomputed
    assert row["tokens_computed"] == 6 * (200 + 128 - 1) + row["tokens_recomputed"]
    assert row["victims"] >= 1 and row["preemptions"] >= row["victims"]
    assert (sim_session / "ours-all-s0.metrics").is_file() and (sim_session / "ours-all-s0.txt").is_file()


def test_the_replay_of_a_run_counts_ttft_from_the_clients_send(sim_session):
    result = RunResult.load(sim_session / "ours-all-s0.json")
    shifted = as_client_sees(result, 0.5)
    assert [r.ttft_s for r in shifted.records] == [r.ttft_s + 0.5 for r in result.records]
    [versus] = compare_folder(sim_session, 64, "h200", 1, max_model_len=512)
    assert versus.run == "ours-all-s0" and versus.requests == 6 and versus.p99_ttft_real_ms == result.summary.p99_ttft_ms
    assert format_prediction([versus]).splitlines()[2].startswith(f"| ours-all-s0 | {versus.p99_ttft_sim_ms:.0f} |")


def test_the_gpu_scripts_have_help_and_refuse_bad_input_in_one_line(tmp_path):
    import subprocess
    import sys

    from vllm_cfs.realgpu.session import REPO

    script = REPO / "benchmarks" / "gpu" / "real_burst.sh"
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.startswith("Usage: benchmarks/gpu/real_burst.sh RUNS_DIR")
    assert subprocess.run(["bash", str(script)], capture_output=True, text=True).returncode == 2
    for name in ("bundle.py", "session.py", "versus_sim.py"):
        helped = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / name), "--help"],
                                capture_output=True, text=True)
        assert helped.returncode == 0 and "usage:" in helped.stdout, name
    missing = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "versus_sim.py"), str(tmp_path),
                              "--gpu-blocks", "1028"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "summary.json" in missing.stderr
