"""The V1 policy lab: policies and victim paths through the V1 replay, its table and its CLI.

Virtual time: every figure checked is determined by the inputs. 20 reference requests all at once
(1440 KV blocks at full length) on 600 blocks make vLLM V1's own scheduler queue and preempt.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_cfs.lab.policies import V1_OURS, VICTIM_PATHS, select, with_victim_paths
from vllm_cfs.lab.sweep import quick_line_v1, run_sweep
from vllm_cfs.sim.v1.replay import V1ReplayConfig

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "policy_sweep.py"
QUICK_LINE_V1 = re.compile(r"ours vs fcfs: throughput ratio \d+\.\d\d; P99 TTFT ours \d+ ms, fcfs \d+ ms, ideal \d+ ms; "
                           r"P99 TPOT ours \d+ ms, fcfs \d+ ms; P99 ITL ours \d+ ms, fcfs \d+ ms")


@pytest.fixture(scope="module")
def runs():
    policies = with_victim_paths(select(["fcfs", "cfs-10", "ours", "ideal"], "v1"), list(VICTIM_PATHS))
    base = V1ReplayConfig(num_gpu_blocks_override=600, max_model_len=4096)
    return {run.policy.key: run for run in run_sweep(policies, ["all-at-once"], [0], num_prompts=20, base=base)}


def test_every_request_completes_on_every_policy_and_path(runs):
    assert set(runs) == {f"{k}+{p}" for k in ("fcfs", "cfs-10", "ours") for p in VICTIM_PATHS} | {"ideal"}
    for run in runs.values():
        assert run.row.requests == 20 and all(r.success and r.output_tokens == 128 for r in run.result.records)
        assert run.row.recompute_tax == pytest.approx(run.replay.recompute_tax)


def test_the_ideal_bound_never_preempts_and_vllm_waits_for_memory(runs):
    ideal, fcfs = runs["ideal"].row, runs["fcfs+prefix-cache"].row
    assert ideal.preemptions == 0 and ideal.recompute_tax == 0
    assert ideal.p99_ttft_ms < fcfs.p99_ttft_ms


def test_ours_serves_first_tokens_sooner_than_vllm(runs):
    for path in VICTIM_PATHS:
        assert runs[f"ours+{path}"].row.p99_ttft_ms < runs[f"fcfs+{path}"].row.p99_ttft_ms / 2


def test_offloading_spares_the_victims_their_recompute(runs):
    recompute, offload = runs["ours+recompute"].row, runs["ours+offload"].row
    assert recompute.preemptions > 0 and recompute.recompute_tax > 0.1
    assert offload.recompute_tax < recompute.recompute_tax / 10
    assert offload.output_tok_s > recompute.output_tok_s
    assert runs["ours+offload"].replay.blocks_swapped_in > 0  # resumes loaded KV from host memory


def test_ours_on_v1_is_fair_with_cpu_offloading():
    (ours,) = select(["ours"], "v1")
    assert dict(ours.settings) == dict(V1_OURS) and V1_OURS["scheduler_cls"] == "vllm_cfs.v1.FairScheduler"
    assert V1_OURS["kv_offloading_size"] > 0


def test_the_quick_line_names_all_four_figures(runs):
    rows = [run.row for run in runs.values()]
    line = quick_line_v1([r for r in rows], workload="all-at-once", suffix="+offload")
    assert QUICK_LINE_V1.fullmatch(line)


def test_cli_refuses_v0_only_options_in_one_line():
    for args, message in ((["--engine", "v1", "--swap", "staged"], "does not swap"),
                          (["--engine", "v0"], "the vLLM installed here runs v1")):
        proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
