"""`hw2/run_all.sh --engine v1` end to end on the simulated GPU (the ``experiment`` fixture): what
each step leaves behind, the table against the client's results and the servers' /metrics, the
plots against the logs, and what answers.txt and the report say about the engine."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from v1_hw2_scripts import BURST_ENV, HW2, REPO, run_script

from vllm_cfs.analysis.answers_v1 import V0_CHOICES
from vllm_cfs.analysis.pipeline import analyze
from vllm_cfs.analysis.prometheus import PREEMPTIONS, read_metrics
from vllm_cfs.analysis.report import setup_lines
from vllm_cfs.analysis.server_log import read_server_log
from vllm_cfs.experiment.environment import read_env
from vllm_cfs.lab.cli import V1_REFERENCE_GPU_BLOCKS
from vllm_cfs.results import RunResult, percentile

TASK32_PLOTS = ["gpu_kv.png", "pareto.png", "preemptions.png", "tpot.png", "ttft.png", "waiting.png"]
COMPARED = (("FCFS (interval 0)", "results_3.2", "p0_r1", "server_p0.log"),
            ("CFS interval 10", "results_3.2", "p10_r1", "server_p10.log"),
            ("Fair (FairScheduler)", "results_fair", "fair_r1", "server_fair.log"))


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_every_step_writes_its_folder(experiment):
    assert _names(experiment.task31) == ["env.txt", "gpu_kv.png", "model_config.json", "p0_r1.json", "p0_r1.metrics",
                                         "p0_r1.txt", "tpot.png", "ttft.png", "vllm_server.log"]
    assert _names(experiment.task32) == sorted(
        ["env.txt", "model_config.json", "server_p0.log", "server_p10.log", *TASK32_PLOTS,
         *(f"p{i}_r1.{ext}" for i in (0, 10) for ext in ("json", "metrics", "txt"))])
    assert _names(experiment.fair) == ["env.txt", "fair_r1.json", "fair_r1.metrics", "fair_r1.txt",
                                       "model_config.json", "policies.png", "server_fair.log"]
    assert {"answers.txt", "report.pdf"} <= set(_names(experiment.out))
    for folder, run in ((experiment.task31, "p0_r1"), (experiment.task32, "p10_r1"), (experiment.fair, "fair_r1")):
        result = RunResult.load(folder / f"{run}.json")
        assert result.summary.completed == int(BURST_ENV["NUM_PROMPTS"]) and result.summary.failed == 0
        assert result.setup["gpu"] == "simulated GPU (a100-40gb x2)"
        # Every V1 run is salted apart from the runs before it on its server (sweep.sh).
        point = run.rsplit("_", 1)[0]
        assert result.setup["cache_salt"] == f"hw2-{point}-r1"
    assert "step 4 of 4: plots, answers, report" in experiment.process.stderr


def test_no_server_outlives_the_experiment(experiment):
    groups = [int(g) for g in re.findall(r"process group (\d+)\)", experiment.process.stderr)]
    assert len(groups) == 4  # task 3.1, intervals 0 and 10, Fair
    for group in groups:
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)


def test_env_txt_says_engine_v1_its_vllm_and_the_simulated_gpu(experiment):
    for folder in (experiment.task31, experiment.task32, experiment.fair):
        env = read_env(folder / "env.txt")
        assert (env["engine"], env["vllm"], env["gpu"]) == ("v1", "0.24.0", "simulated GPU (a100-40gb x2)")
        assert env["preemption_mode"] == "recompute (vLLM V1 has no swap)"
        assert env["gpu_blocks"] == "1028 GPU blocks per GPU, V0's budget (--num-gpu-blocks-override 1028)"
        assert not {"swap_space_gib", "swap", "worker_cls"} & set(env)
    assert read_env(experiment.task32 / "env.txt")["intervals"] == "0 10"
    assert read_env(experiment.fair / "env.txt")["scheduler"] == "vllm_cfs.FairScheduler"


@pytest.mark.parametrize("folder, log, scheduler, describe", [
    ("results_3.1", "vllm_server.log", "vllm_cfs.CFSScheduler", "CFS_INTERVAL=0, vLLM's own scheduling only"),
    ("results_3.2", "server_p10.log", "vllm_cfs.CFSScheduler", "a CFS step every 10 scheduling steps"),
    ("results_fair", "server_fair.log", "vllm_cfs.FairScheduler", "Fair scheduler (vLLM V1): first token first"),
])
def test_each_server_ran_vllm_v1_with_our_scheduler_and_no_swap_flags(experiment, folder, log, scheduler, describe):
    text = (experiment.out / folder / log).read_text()
    (args,) = re.findall(r"non-default args: (\{.*\})$", text, re.M)
    assert f"'scheduler_cls': '{scheduler}'" in args and "'tensor_parallel_size': 2" in args
    assert "swap" not in args and "preemption" not in args and "worker_cls" not in args
    assert describe in text
    parsed = read_server_log(experiment.out / folder / log)
    assert parsed.engine_name == "V1" and parsed.engine.vllm_version == "0.24.0"
    assert parsed.simulated.profile == "a100-40gb"
    # V0's KV budget, the V1 lab's, not V1's own plan (2562 blocks on this simulated GPU): the
    # simulated GPU's block line and vLLM's size line both show it.
    assert f"'num_gpu_blocks_override': {V1_REFERENCE_GPU_BLOCKS}" in args
    assert parsed.blocks.gpu_blocks == V1_REFERENCE_GPU_BLOCKS == 1028
    assert parsed.kv_cache_tokens == 1028 * 16
    assert "on vLLM V1, preemption by recompute, 1028 GPU blocks (V0's budget); log appended to" in text


def _metrics_count(folder, run) -> int:
    return round(read_metrics(folder / f"{run}.metrics")[PREEMPTIONS])


TABLE_ROW = re.compile(r"^\s+(FCFS|CFS|Fair)\s+(\d+|-)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$",
                       re.M)


def test_the_table_holds_the_clients_figures_and_the_metrics_preemptions(experiment):
    text = (experiment.out / "answers.txt").read_text()
    assert ("every run of a scheduler repeats the same prompts (one seed), each with a cache salt of its own "
            "(vLLM's cache_salt, set by hw2/sweep.sh), so a run hits only its own blocks") in text
    rows = TABLE_ROW.findall(text)
    assert [(name, interval) for name, interval, *_ in rows] == [("FCFS", "0"), ("CFS", "10"), ("Fair", "-")], text
    for (_, _, runs, ttft, tpot, itl, throughput, preemptions), (_, folder, run, _) in zip(rows, COMPARED):
        result = RunResult.load(experiment.out / folder / f"{run}.json")
        assert int(runs) == 1
        assert float(ttft) == pytest.approx(percentile([r.ttft_s * 1000 for r in result.records], 99), abs=0.05)
        assert float(tpot) == pytest.approx(percentile([r.tpot_s * 1000 for r in result.records], 99), abs=0.05)
        assert float(itl) == pytest.approx(percentile([g * 1000 for r in result.records for g in r.itl_s], 99),
                                           abs=0.05)
        assert float(throughput) == pytest.approx(result.summary.output_throughput, abs=0.05)
        # Run 1 of a server: its count is the counter itself (nothing ran on that server before).
        assert int(preemptions) == _metrics_count(experiment.out / folder, run)
    # CFS and Fair make room for the two requests that do not fit: by preempting (recompute). Our
    # schedulers' own count of victims, logged every 5 s, never runs ahead of vLLM's counter.
    for _, folder, run, log in COMPARED[1:]:
        victims = read_server_log(experiment.out / folder / log).for_run(1).cfs
        count = _metrics_count(experiment.out / folder, run)
        assert count > 0
        assert not victims or victims[-1].get("victims") <= count


def test_answers_say_every_figure_is_v1_on_the_simulated_gpu_and_the_mcqs_are_v0s(experiment):
    text = (experiment.out / "answers.txt").read_text()
    assert text.splitlines()[0] == ("hw2 answers on vLLM V1 (0.24.0): every figure below comes from vLLM V1 (0.24.0) "
                                    "on the simulated GPU (a100-40gb x2)")
    assert "KV budget: 1028 GPU blocks per GPU, V0's budget (--num-gpu-blocks-override 1028)" in text.splitlines()
    assert "MCQ answers: V0's, not measured here. Their evidence comes from the V0 run (`make hw2`" in text
    chosen = re.findall(r"^Section (\S+(?: \(sweep\))?), MCQ (\d), answer \((\w)\)", text, re.M)
    assert [(section, int(number), choice) for section, number, choice in chosen] == \
        [(q.section, q.number, choice) for q, choice in V0_CHOICES.items()]
    assert [c for *_, c in chosen] == ["c", "d", "b", "a", "b", "a"]
    # V1's own measurements: the KV cache as its start-up lines give it.
    log = read_server_log(experiment.task31 / "vllm_server.log")
    assert (f"GPU KV cache: {log.kv_cache_tokens:,} tokens per GPU (vLLM's start-up line) = "
            f"{log.blocks.gpu_blocks} blocks of 16 tokens") in text
    # No swap on V1: nothing in answers.txt speaks of CPU KV or swapped requests as measured.
    assert "CPU KV" not in text and "Swapped" not in text


@pytest.fixture(scope="module")
def outputs(experiment, tmp_path_factory):
    """The same analysis in this process, for the plots' data (run_all.sh ran it as a command)."""
    return analyze(experiment.task31, experiment.task32, tmp_path_factory.mktemp("again"), fair_dir=experiment.fair)


def _plot(outputs, name):
    return next(p for p in outputs.plots if p.path.name == name and p.path.parent.name == "results_3.2")


def test_the_plots_are_v1s_and_say_so(outputs, experiment):
    names = sorted(f"{p.path.parent.name}/{p.path.name}" for p in outputs.plots)
    assert names == sorted(["results_3.1/ttft.png", "results_3.1/tpot.png", "results_3.1/gpu_kv.png",
                            *(f"results_3.2/{n}" for n in TASK32_PLOTS), "results_fair/policies.png"])
    for plot in outputs.plots:
        assert plot.footnote.startswith("simulated GPU (a100-40gb x2); vLLM V1 (0.24.0);")
        assert plot.footnote.endswith("recompute preemption")
        assert plot.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The answers in process are the ones run_all.sh wrote.
    assert outputs.answers_path.read_text() == (experiment.out / "answers.txt").read_text()


def test_preemptions_plot_holds_each_runs_metrics_count(outputs, experiment):
    plot = _plot(outputs, "preemptions.png")
    assert plot.style == "bars" and plot.categories == ("FCFS", "CFS-10", "Fair")
    (series,) = plot.series
    assert series.y == tuple(float(_metrics_count(experiment.out / folder, run)) for _, folder, run, _ in COMPARED)


@pytest.mark.parametrize("name, field", [("gpu_kv.png", "gpu_kv_pct"), ("waiting.png", "pending")])
def test_time_series_hold_the_v1_stats_lines(outputs, experiment, name, field):
    series = {s.label: s for s in _plot(outputs, name).series}
    assert set(series) == {label for label, *_ in COMPARED}
    for label, folder, _, log in COMPARED:
        samples = read_server_log(experiment.out / folder / log).for_run(1).stats
        assert series[label].y == tuple(float(getattr(s, field)) for s in samples)
    assert _plot(outputs, "waiting.png").ylabel == "waiting requests"


def test_report_says_which_engine_its_figures_come_from(outputs, experiment):
    data = (experiment.out / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF-")
    lines = setup_lines(outputs.study)
    assert lines[0] == ("vllm-cfs hw2 report: CFS scheduling and our FairScheduler vs vLLM's FCFS on vLLM V1 (0.24.0) "
                        "under a burst")
    assert any(line.startswith("ENGINE: vLLM V1 (0.24.0). Every plot, table and measurement") for line in lines)
    assert "  engine: v1" in lines and "  vllm: 0.24.0" in lines
    assert "  gpu_blocks: 1028 GPU blocks per GPU, V0's budget (--num-gpu-blocks-override 1028)" in lines
    assert any("FairScheduler (vllm_cfs/v1/scheduler.py" in line for line in lines)


def test_analyze_refuses_a_staged_swap_comparison_on_v1_in_one_line(experiment):
    process = subprocess.run([str(REPO / ".venv-v1" / "bin" / "python"), str(HW2 / "analyze.py"),
                              str(experiment.task31), str(experiment.task32), "--staged", str(experiment.task32)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert len(process.stderr.strip().splitlines()) == 1
    assert process.stderr.startswith("analyze.py: error: ") and "vLLM V1 has no swap" in process.stderr


V0_PYTHON = str(REPO / ".venv" / "bin" / "python")


@pytest.mark.parametrize("script, args, env, message", [
    ("run_all.sh", ["--engine", "v2"], {}, "--engine must be v0 or v1, got 'v2'"),
    ("run_all.sh", ["--engine", "v1", "--staged-swap"], {}, "--staged-swap needs --engine v0: vLLM V1 has no swap"),
    ("sweep.sh", ["--engine", "v1", "--swap", "staged"], {}, "--swap staged needs --engine v0: vLLM V1 has no swap"),
    ("server.sh", ["--engine", "v1", "--swap", "staged"], {}, "--swap staged needs --engine v0: vLLM V1 has no swap"),
    ("server.sh", ["--engine", "v1"], {"PYTHON": "/nonexistent/python"}, "has no vLLM; run `make venv-v1`"),
    pytest.param("run_all.sh", ["--engine", "v1"], {"PYTHON": V0_PYTHON}, "has vLLM 0.9.0 (V0); run `make venv-v1`",
                 marks=pytest.mark.skipif(not os.path.exists(V0_PYTHON), reason="no V0 venv (.venv) here")),
])
def test_scripts_refuse_what_v1_cannot_do_in_one_line(script, args, env, message, tmp_path):
    where = "--log" if script == "server.sh" else "--out"
    process = run_script(str(HW2 / script), *args, where, str(tmp_path / "r"), env=env)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [process.stderr.strip()]
    assert process.stderr.startswith(f"{script}: error: ") and message in process.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("script", ["run_all.sh", "sweep.sh", "server.sh"])
def test_help_documents_the_engine(script):
    text = run_script(str(HW2 / script), "--help").stdout
    assert text.startswith(f"Usage: hw2/{script} [--engine v0|v1]") or "--engine E" in text
    assert "v1: vLLM V1" in text


def dry_run_make(*args):
    """`make -n` as a user types it: outside `make test`, whose MAKELEVEL would add directory lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=env).stdout.splitlines()


def test_make_hw2_engine_v1_builds_only_the_v1_venv_and_passes_the_engine():
    lines = dry_run_make("hw2", "ENGINE=v1")
    assert lines[-1].strip() == "bash hw2/run_all.sh --engine v1"
    assert not any(re.search(r"\s\.venv(/|\s|$)", line) for line in lines)  # V0's venv is not touched
    other = dry_run_make("hw2", "ENGINE=v2")
    assert [line.strip() for line in other] == ["bash hw2/run_all.sh --engine v2"]  # which refuses it
