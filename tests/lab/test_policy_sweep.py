"""The policy sweep: its table says what the replays say, the ideal bound is one, and the CLI.

Virtual time throughout: every figure checked here is determined by the inputs, none by the
machine. The sweep runs 20 requests of the reference kind all at once (1440 KV blocks of demand
for 1028), which makes FCFS wait for memory and swap, in one replay process for the module.
"""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vllm_cfs.results import RunResult
from vllm_cfs.lab.plots import sweep_plots
from vllm_cfs.lab.policies import OURS, blocks_for_all, select
from vllm_cfs.settings import DEFAULT_STAGING_BLOCKS
from vllm_cfs.lab.sweep import COLUMNS, quick_line, run_sweep, write_runs, write_table

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "policy_sweep.py"
QUICK_LINE = re.compile(r"ours vs fcfs: throughput ratio \d+\.\d\d; P99 TTFT ours \d+ ms, cfs10 \d+ ms, ideal \d+ ms; "
                        r"P99 TPOT ours \d+ ms, fcfs \d+ ms; P99 ITL ours \d+ ms")


@pytest.fixture(scope="module")
def runs():
    policies = select(["fcfs", "priority", "chunked-prefill", "cfs-10", "ideal", "ours"])
    return {run.policy.key: run for run in run_sweep(policies, ["all-at-once"], [0], num_prompts=20)}


def test_rows_agree_with_the_results_they_summarize(runs):
    for run in runs.values():
        row, records = run.row, run.result.records
        assert len(records) == row.requests == 20 and all(r.success for r in records)
        ttft = [r.ttft_s * 1000 for r in records]
        assert row.p99_ttft_ms == pytest.approx(np.percentile(ttft, 99), rel=1e-12)
        assert row.mean_ttft_ms == pytest.approx(np.mean(ttft), rel=1e-12)
        assert row.p99_tpot_ms == pytest.approx(np.percentile([r.tpot_s * 1000 for r in records], 99), rel=1e-12)
        assert row.p99_itl_ms == pytest.approx(np.percentile([g * 1000 for r in records for g in r.itl_s], 99), rel=1e-12)
        last_finish = max(r.issue_offset_s + r.e2e_s for r in records)
        assert row.output_tok_s == pytest.approx(sum(r.output_tokens for r in records) / last_finish, rel=1e-12)
        assert (row.blocks_swapped_out, row.blocks_swapped_in, row.preemptions) == (
            run.replay.blocks_swapped_out, run.replay.blocks_swapped_in, run.replay.preemptions)
        assert (row.key, row.workload, row.seed) == (run.policy.key, "all-at-once", 0)


def test_inter_token_gaps_and_ttft_add_up_to_each_request(runs):
    for run in runs.values():
        for record, timing in zip(run.result.records, run.replay.requests):
            assert len(record.itl_s) == record.output_tokens - 1
            assert record.ttft_s + sum(record.itl_s) == pytest.approx(record.e2e_s, abs=1e-9)
            assert record.e2e_s == pytest.approx(timing.finish_s - timing.arrival_s, abs=1e-12)


def test_the_ideal_bound_never_swaps_and_never_waits_for_memory(runs):
    ideal, fcfs = runs["ideal"], runs["fcfs"]
    assert ideal.replay.gpu_blocks >= blocks_for_all(ideal.requests) > fcfs.replay.gpu_blocks
    assert (ideal.row.blocks_swapped_out, ideal.row.blocks_swapped_in, ideal.row.preemptions) == (0, 0, 0)

    def waits_for_memory(sample, gpu_blocks):
        return sample.waiting_blocks > (1 - sample.gpu_kv_usage) * gpu_blocks

    assert not any(s.swapped or waits_for_memory(s, ideal.replay.gpu_blocks) for s in ideal.replay.kv_samples)
    # The same check bites on FCFS with the modeled memory: it waits and it swaps.
    assert any(waits_for_memory(s, fcfs.replay.gpu_blocks) for s in fcfs.replay.kv_samples)
    assert fcfs.row.blocks_swapped_out > 0
    assert ideal.row.p99_ttft_ms < fcfs.row.p99_ttft_ms and ideal.row.output_tok_s > fcfs.row.output_tok_s


def test_each_policy_runs_what_it_says(runs):
    priority = runs["priority"]
    assert priority.replay.config.scheduling_policy == "priority"
    assert sorted(r.priority for r in priority.requests) == list(range(20))  # the last arrival most urgent
    assert priority.row.preemptions > 0 and priority.row.blocks_swapped_out == 0  # by recompute
    chunked = runs["chunked-prefill"].replay
    assert chunked.config.enable_chunked_prefill and max(s.duration_s for s in chunked.kv_samples) < 0.6
    assert max(s.duration_s for s in runs["fcfs"].replay.kv_samples) > 2  # 15 whole prompts in one step
    ours, cfs10 = runs["ours"], runs["cfs-10"]
    assert {k: getattr(ours.replay.config, k) for k in OURS} == dict(OURS)
    assert ours.row.blocks_swapped_out < cfs10.row.blocks_swapped_out  # each swapped stream stalls once


def test_table_files_and_plots(runs, tmp_path):
    rows = [run.row for run in runs.values()]
    csv_path, json_path = write_table(rows, tmp_path, about={"date": "2026-11-29"})
    with csv_path.open() as f:
        read = list(csv.DictReader(f))
    assert tuple(read[0]) == COLUMNS and len(read) == len(rows)
    for line, row in zip(read, rows):
        assert line["key"] == row.key and float(line["p99_itl_ms"]) == pytest.approx(row.p99_itl_ms, rel=1e-5)
    document = json.loads(json_path.read_text())
    assert "simulated GPU" in document["gpu"] and document["date"] == "2026-11-29"
    assert [r["p99_ttft_ms"] for r in document["rows"]] == [r.p99_ttft_ms for r in rows]
    saved = [RunResult.load(p) for p in write_runs(runs.values(), tmp_path / "runs")]
    assert [s.summary.p99_ttft_ms for s in saved] == [r.p99_ttft_ms for r in rows]
    plots = sweep_plots(list(runs.values()), tmp_path / "img")
    assert [p.name for p in plots] == ["policies-tradeoff-all-at-once.png", "policies-ttft-all-at-once-seed0.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots)


def test_quick_line_names_ours_fcfs_cfs10_and_the_ideal_bound(runs):
    line = quick_line([run.row for run in runs.values()], workload="all-at-once")
    assert QUICK_LINE.fullmatch(line), line
    assert f"ideal {runs['ideal'].row.p99_ttft_ms:.0f} ms" in line


def script(*args, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_quick_run_ends_with_the_one_line_per_swap_path(tmp_path):
    out = tmp_path / "quick"
    done = script("--quick", "--swap", "both", "--num-prompts", "6", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    per_block, staged = done.stdout.strip().splitlines()[-2:]
    assert QUICK_LINE.fullmatch(per_block), done.stdout
    assert staged.endswith(" (staged swap)") and QUICK_LINE.fullmatch(staged[: -len(" (staged swap)")])
    with (out / "policies-sweep.csv").open() as f:
        rows = {r["key"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["fcfs", "fcfs+staged", "cfs-10", "cfs-10+staged", "ideal", "ideal+staged", "ours",
                          "ours+staged"]
    assert {r["requests"] for r in rows.values()} == {"6"}
    assert f"P99 TTFT ours {float(rows['ours']['p99_ttft_ms']):.0f} ms" in per_block
    assert f"P99 TTFT ours {float(rows['ours+staged']['p99_ttft_ms']):.0f} ms" in staged
    for key in ("fcfs", "cfs-10", "ours"):  # the staging buffer's blocks come out of the KV cache
        assert int(rows[key + "+staged"]["gpu_blocks"]) == int(rows[key]["gpu_blocks"]) - DEFAULT_STAGING_BLOCKS
    assert len(list((out / "runs").glob("*.json"))) == 8 and len(list((out / "img").glob("*.png"))) == 2


def test_quick_on_replies_that_end_at_eos_adds_the_oracles_ttft(tmp_path):
    out = tmp_path / "quick-eos"
    done = script("--quick", "--workload", "heavy-tail", "--num-prompts", "8", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    with (out / "policies-sweep.csv").open() as f:
        rows = {r["key"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["fcfs", "cfs-10", "ideal", "ours", "oracle"]
    head, oracle = last.split("; oracle P99 TTFT ")
    assert QUICK_LINE.fullmatch(head), last
    assert oracle == f"{float(rows['oracle']['p99_ttft_ms']):.0f} ms"
    records = [r for path in (out / "runs").glob("*.json") for r in RunResult.load(path).records]
    assert {r.expected_output_tokens for r in records} == {1024}  # the cap, not the reply's length
    assert any(r.ended_at_eos for r in records) and all(r.ended_at_eos or r.ended_at_cap for r in records)


def test_help_lists_policies_and_workloads():
    done = script("--help", timeout=60)
    assert done.returncode == 0
    for name in ("fcfs", "priority", "chunked-prefill", "cfs-40", "cfs-mg1000-10", "ideal", "ours", "reference",
                 "all-at-once", "sharegpt", "humaneval", "sharegpt-eos", "heavy-tail", "oracle", "--quick", "--out",
                 "simulated GPU"):
        assert name in done.stdout


@pytest.mark.parametrize("args, says", [
    (["--policies", "lifo"], "unknown policy 'lifo'"),
    (["--workloads", "bursty"], "unknown workload 'bursty'"),
    (["--seeds", "-1"], "seeds must be whole numbers >= 0"),
    (["--num-prompts", "0"], "the number of prompts must be at least 1"),
    (["--quick", "--policies", "fcfs"], "--quick picks its own policies"),
    (["--quick", "--workloads", "reference", "sharegpt-eos"], "--quick replays one workload"),
    (["--quick", "--workloads", "bursty"], "unknown workload 'bursty'"),
    (["--seeds", "one"], "invalid int value: 'one'"),
    (["--swap", "fast"], "argument --swap: invalid choice: 'fast'"),
    (["--async-scheduling"], "--async-scheduling is vLLM V1's"),
])
def test_bad_input_is_one_line(args, says):
    done = script(*args, "--no-progress", timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("policy_sweep.py: error: ") and says in done.stderr


def test_out_must_be_a_folder(tmp_path):
    taken = tmp_path / "file"
    taken.write_text("")
    done = script("--out", str(taken), timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is a file, not a folder" in done.stderr
