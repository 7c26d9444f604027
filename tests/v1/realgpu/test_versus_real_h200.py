"""The V1 simulated GPU against runs measured on a real H200 (docs/real-gpu/, 2026-12-03).

CFS-10, all 50 requests at once on 1028 blocks: 248 victims, each recomputed. vLLM's async
scheduling (on in the real server) plans each step before the last one's tokens are known, which
changes who the victims are and when they come back: replayed with the synchronous loop the output
rate was 13.9% off the real one, with async scheduling modeled it is within the 10% goal.
(CFS-10 has no KV connector, so the policy replayed is the one that ran; ours has changed since.)
"""

from pathlib import Path

import pytest

from vllm_cfs.realgpu.versus_sim import compare_folder

REAL = Path(__file__).resolve().parents[3] / "docs" / "real-gpu" / "h200-1028-blocks"


@pytest.fixture(scope="module")
def cfs10_all_at_once():
    [versus] = compare_folder(REAL, 1028, "h200-vllm-v1", 1, only=["cfs-10-all-s3"])
    return versus


def test_the_replay_meets_the_goal_on_a_real_h200_run(cfs10_all_at_once):
    v = cfs10_all_at_once
    assert v.requests == 50
    assert v.median_ttft_error <= 0.10 and v.p99_ttft_error <= 0.10 and v.output_tok_s_error <= 0.10


def test_the_replay_stalls_the_victims_as_long_as_the_real_h200_did(cfs10_all_at_once):
    v = cfs10_all_at_once
    assert v.p99_itl_real_ms > 5000  # the measured stall
    assert abs(v.p99_itl_sim_ms - v.p99_itl_real_ms) / v.p99_itl_real_ms <= 0.15


RATE6 = REAL.parent / "h200-1028-blocks-rate6"


@pytest.mark.parametrize("run", ["fcfs-rate6-s6", "ours-rate6-s6"])
def test_the_replay_meets_the_goal_at_a_rate_it_was_not_fitted_at(run):
    # 6 req/s, twice the reference: the profile was fitted at 3 req/s and all at once. Ours here is
    # the policy that ran (guard and sit-out, 011586d), its victims' KV through CPU offloading.
    [v] = compare_folder(RATE6, 1028, "h200-vllm-v1", 1, only=[run])
    assert v.requests == 50
    assert v.median_ttft_error <= 0.10 and v.p99_ttft_error <= 0.10 and v.output_tok_s_error <= 0.10


SIT_OUT_RATE3 = REAL.parent / "h200-1028-blocks-sit-out-rate3"


def test_the_replay_preempts_as_often_as_the_real_h200_did():
    # Ours at 3 req/s, seed 2, every victim the policy's: 16 on the real H200. Before policy.growth
    # the replay took 51, 35 of them in two steps that preempted the whole running list: a decode
    # short of a block this step, and freed blocks back only the next (async scheduling with CPU
    # offloading), so that no tail victim could help.
    [v] = compare_folder(SIT_OUT_RATE3, 1028, "h200-vllm-v1", 1, only=["ours-rate3-s2"])
    assert v.preemptions_real == 16
    assert abs(v.preemptions_sim - v.preemptions_real) <= 4
