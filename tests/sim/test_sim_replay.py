"""Virtual-time replay through the real V0 engine: deterministic, and a checker of the scheduler."""

import dataclasses
import random
import time

import pytest
from vllm.core.scheduler import Scheduler

from vllm_cfs.results import RunResult
from vllm_cfs.settings import DEFAULT_STAGING_BLOCKS
from vllm_cfs.sim.profile import load_profile
from vllm_cfs.sim.replay import ReplayConfig, ReplayRequest, replay, replay_many, to_run_result
from vllm_cfs.swap import WORKER_CLS


def burst(n=40, rate=4.0, seed=0):
    """More KV than the GPU holds, so that schedulers must preempt: ~2.1x the 1028 blocks."""
    rng = random.Random(seed)
    return [
        ReplayRequest(i / rate, tuple(rng.randrange(3, 32000) for _ in range(rng.randint(400, 900))), rng.randint(100, 300))
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def runs():
    requests = burst()
    cfs = ReplayConfig(scheduler_cls="vllm_cfs.CFSScheduler", cfs_interval=10)
    fcfs = ReplayConfig()
    staged = ReplayConfig(scheduler_cls="vllm_cfs.CFSScheduler", cfs_interval=10, worker_cls=WORKER_CLS)
    return requests, replay_many([(requests, cfs), (requests, cfs), (requests, fcfs), (requests, staged)])


def test_replay_is_deterministic(runs):
    _, (first, second, _, _) = runs
    assert first == second


def test_the_staged_swap_worker_costs_blocks_and_saves_time(runs):
    requests, (cfs, _, _, staged) = runs
    assert staged.gpu_blocks == cfs.gpu_blocks - DEFAULT_STAGING_BLOCKS  # its staging buffer
    assert [t.output_tokens for t in staged.requests] == [r.max_tokens for r in requests]
    assert staged.blocks_swapped_out > 0
    finish = max(t.finish_s for t in staged.requests)
    assert finish < max(t.finish_s for t in cfs.requests)  # same work, cheaper swaps


def test_every_request_completes_with_its_tokens(runs):
    requests, results = runs
    for result in results:
        assert [t.output_tokens for t in result.requests] == [r.max_tokens for r in requests]
        assert [t.prompt_tokens for t in result.requests] == [len(r.prompt_token_ids) for r in requests]
        for t in result.requests:
            assert t.arrival_s <= t.first_token_s <= t.finish_s


def test_kv_samples_show_the_pressure(runs):
    _, (cfs, _, fcfs, _) = runs
    assert (cfs.gpu_blocks, cfs.cpu_blocks) == (1028, 10922)
    assert len(cfs.kv_samples) <= cfs.steps
    assert max(s.gpu_kv_usage for s in fcfs.kv_samples) > 0.9
    assert max(s.swapped for s in cfs.kv_samples) > 0  # CFS swapped requests out...
    assert cfs.kv_samples[-1].swapped == 0 and cfs.kv_samples[-1].running == 0  # ...and back in


def test_replay_speaks_the_client_results_schema(runs):
    requests, (cfs, _, fcfs, _) = runs
    for result in (cfs, fcfs):
        run = RunResult.from_json(to_run_result(result, requests, {"label": "replay"}).to_json())
        assert run.setup["label"] == "replay" and "simulated a100-40gb" in run.setup["gpu"]
        assert [r.index for r in run.records] == list(range(len(requests)))
        assert run.summary.completed == len(requests) and run.summary.failed == 0
        assert run.summary.total_output_tokens == sum(r.max_tokens for r in requests)
        slowest = max(result.requests, key=lambda t: t.ttft_s)
        assert run.summary.p99_ttft_ms <= slowest.ttft_s * 1000
        assert run.summary.p99_ttft_ms > sorted(t.ttft_s for t in result.requests)[-3] * 1000
    # Under this pressure CFS trades TPOT for TTFT, as the live runs do.
    cfs_run, fcfs_run = to_run_result(cfs, requests), to_run_result(fcfs, requests)
    assert cfs_run.summary.p99_ttft_ms < fcfs_run.summary.p99_ttft_ms
    assert cfs_run.summary.mean_tpot_ms > fcfs_run.summary.mean_tpot_ms


def test_every_token_has_its_time(runs):
    requests, results = runs
    for result in results:
        run = to_run_result(result, requests)
        for t, record in zip(result.requests, run.records):
            assert len(t.token_times_s) == t.output_tokens
            assert (t.token_times_s[0], t.token_times_s[-1]) == (t.first_token_s, t.finish_s)
            assert list(t.token_times_s) == sorted(t.token_times_s)
            # V0 makes one token a step per request: a gap for every token after the first, as the
            # client counts them, and TTFT plus the gaps is the whole request.
            assert len(record.itl_s) == record.output_tokens - 1 and min(record.itl_s) > 0
            assert record.ttft_s + sum(record.itl_s) == pytest.approx(record.e2e_s, abs=1e-9)
        assert run.summary.p99_itl_ms >= run.summary.median_itl_ms > 0


def test_swaps_and_preemptions_are_counted_per_step(runs):
    _, (cfs, _, fcfs, _) = runs
    for result in (cfs, fcfs):
        assert result.blocks_swapped_out == sum(s.swapped_out_blocks for s in result.kv_samples)
        assert result.blocks_swapped_in == sum(s.swapped_in_blocks for s in result.kv_samples)
        assert result.preemptions == sum(s.preempted for s in result.kv_samples)
        assert result.blocks_swapped_in == result.blocks_swapped_out  # everyone came back
        assert sum(s.duration_s for s in result.kv_samples) <= result.kv_samples[-1].time_s
        assert all(s.batch > 0 or s.swapped_out_blocks for s in result.kv_samples)
    assert cfs.blocks_swapped_out > fcfs.blocks_swapped_out > 0
    assert cfs.preemptions > fcfs.preemptions > 0


class ForgetfulSwapInScheduler(Scheduler):
    """A broken scheduler: it brings swapped requests back without copying their KV to the GPU."""

    def _swap_in(self, seq_group, blocks_to_swap_in):
        super()._swap_in(seq_group, [])


def test_checker_catches_a_scheduler_that_forgets_to_swap_in():
    config = ReplayConfig(scheduler_cls=f"{__name__}.{ForgetfulSwapInScheduler.__name__}")
    with pytest.raises(Exception, match=r"request \d+ seq \d+ reads GPU block \d+ .* its KV is not on the GPU"):
        replay(burst(n=30, rate=100.0, seed=1), config)


class SlowScheduler(Scheduler):
    """vLLM's scheduler, taking 10 ms of host time more per step (well above the profile's 4 ms)."""

    def schedule(self):
        time.sleep(SLOW_SCHEDULE_S)
        return super().schedule()


SLOW_SCHEDULE_S = 0.010


def test_measured_host_time_is_charged_and_modeled_host_time_is_not():
    requests = [dataclasses.replace(r, arrival_s=0.0) for r in burst(n=8, seed=2)]  # no arrival races
    slow = ReplayConfig(scheduler_cls=f"{__name__}.{SlowScheduler.__name__}")
    plain, slow_modeled, slow_measured = replay_many(
        [(requests, ReplayConfig()), (requests, slow), (requests, dataclasses.replace(slow, host_time="measured"))])
    assert slow_modeled.requests == plain.requests  # the modeled host ignores the host's real time
    assert [s.batch for s in slow_measured.kv_samples] == [s.batch for s in plain.kv_samples]
    overhead = load_profile(slow.profile).step_overhead_s  # credited against the host's time
    for modeled, measured in list(zip(plain.kv_samples, slow_measured.kv_samples))[1:]:
        assert measured.duration_s >= modeled.duration_s + SLOW_SCHEDULE_S - overhead
    assert to_run_result(slow_measured, requests).setup["gpu"].endswith("this machine's host time measured)")


def test_a_replay_config_names_its_host_time():
    with pytest.raises(ValueError, match="host_time='wall': use one of modeled, measured"):
        ReplayConfig(host_time="wall")


def test_engine_refuses_a_model_that_does_not_fit():
    # CodeLlama-34B on one A100-40GB: 62.85 GiB of weights in 35.63 GiB. vLLM's engine start fails with the numbers.
    with pytest.raises(Exception, match=r"does not fit on the simulated GPU: usable 35\.63 GiB - weights 62\.85 GiB"):
        replay(burst(n=1), ReplayConfig(tensor_parallel_size=1))
