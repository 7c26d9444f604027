"""Virtual-time replay through vLLM's real V1 engine on the simulated GPU (one child process for the module)."""

import random

import pytest

from vllm_cfs.sim.replay import ReplayRequest, to_run_result
from vllm_cfs.sim.v1.replay import V1ReplayConfig, replay_many

SCARCE = dict(num_gpu_blocks_override=120, max_model_len=1024)  # ~3 of the burst's requests at full length


def burst(n=16, rate=8.0, seed=0):
    """Distinct random prompts (no request can hit another's prefix), evenly spaced arrivals."""
    rng = random.Random(seed)
    prompts = [tuple(rng.randrange(3, 32000) for _ in range(rng.randint(300, 700))) for _ in range(n)]
    return [ReplayRequest(i / rate, prompt, rng.randint(20, 60)) for i, prompt in enumerate(prompts)]


@pytest.fixture(scope="module")
def runs():
    requests = burst()
    long_prompt = [ReplayRequest(0.0, tuple(range(100, 1100)), 8)]
    eos_requests = [ReplayRequest(0.0, tuple(range(100, 400)), max_tokens=64, reply_tokens=9),
                    ReplayRequest(0.0, tuple(range(500, 800)), max_tokens=12, reply_tokens=40),
                    ReplayRequest(0.1, tuple(range(900, 1200)), max_tokens=20)]  # ignore_eos: exactly max_tokens
    pipelined = dict(async_scheduling=True)
    jobs = {
        "default": (requests, V1ReplayConfig()),
        "again": (requests, V1ReplayConfig()),
        "scarce": (requests, V1ReplayConfig(**SCARCE)),
        "scarce, no prefix caching": (requests, V1ReplayConfig(enable_prefix_caching=False, **SCARCE)),
        "scarce, offloading": (requests, V1ReplayConfig(enable_prefix_caching=False, kv_offloading_size=2, **SCARCE)),
        "scarce, offloading again": (requests, V1ReplayConfig(enable_prefix_caching=False, kv_offloading_size=2,
                                                              **SCARCE)),
        "small chunks": (long_prompt, V1ReplayConfig(max_num_batched_tokens=256)),
        "v0's batch": (long_prompt, V1ReplayConfig(max_num_batched_tokens=16384)),
        "eos": (eos_requests, V1ReplayConfig()),
        "eos, async": (eos_requests, V1ReplayConfig(**pipelined)),
        "alone": (long_prompt, V1ReplayConfig()),
        "alone, async": (long_prompt, V1ReplayConfig(**pipelined)),
        "scarce, offloading, async": (requests, V1ReplayConfig(enable_prefix_caching=False, kv_offloading_size=2,
                                                               **SCARCE, **pipelined)),
        "scarce, ours, async": (requests, V1ReplayConfig(scheduler_cls="vllm_cfs.v1.FairScheduler",
                                                         enable_prefix_caching=False, kv_offloading_size=2,
                                                         **SCARCE, **pipelined)),
    }
    results = replay_many(list(jobs.values()))
    return {name: (job[0], result) for (name, job), result in zip(jobs.items(), results)}


def test_the_memory_plan_gives_v0s_blocks_for_v0s_batch(runs):
    # Same plan as V0 (weights 31.43 GiB, activations, 1 GiB overhead of 35.63 GiB usable per
    # A100-40GB at 0.9): V0 profiled 16384 tokens (1028 blocks); V1 serves 2048-token chunks,
    # whose smaller activation peak leaves KV memory for 2022.
    assert runs["v0's batch"][1].gpu_blocks == 1028
    assert runs["default"][1].gpu_blocks == 2022
    assert runs["scarce"][1].gpu_blocks == 120


def test_every_request_completes_with_its_tokens(runs):
    for requests, result in runs.values():
        assert [t.output_tokens for t in result.requests] == [min(r.max_tokens, r.reply_tokens or r.max_tokens)
                                                              for r in requests]
        assert [t.prompt_tokens for t in result.requests] == [len(r.prompt_token_ids) for r in requests]
        for t in result.requests:
            assert t.arrival_s < t.first_token_s <= t.finish_s


def test_replay_is_deterministic(runs):
    assert runs["default"][1] == runs["again"][1]
    assert runs["scarce, offloading"][1] == runs["scarce, offloading again"][1]


def test_kv_blocks_all_free_again_at_the_end(runs):
    for _, result in runs.values():
        assert result.kv_samples[-1].gpu_kv_usage == 0.0
        assert (result.kv_samples[-1].running, result.kv_samples[-1].waiting) == (0, 0)


def test_no_recompute_tax_with_blocks_to_spare(runs):
    requests, result = runs["default"]
    assert max(s.gpu_kv_usage for s in result.kv_samples) < 1
    assert (result.preemptions, result.tokens_recomputed, result.recompute_tax) == (0, 0, 0.0)
    # Each request computes its prompt and every output token but the last (never fed back).
    assert result.tokens_computed == sum(len(r.prompt_token_ids) + r.max_tokens - 1 for r in requests)


@pytest.mark.parametrize("name", ["scarce", "scarce, no prefix caching", "scarce, offloading"])
def test_scarce_blocks_preempt_and_the_gpu_pays_the_recompute_tax(runs, name):
    requests, result = runs[name]
    assert max(s.gpu_kv_usage for s in result.kv_samples) == 1.0
    assert result.preemptions == sum(s.preempted for s in result.kv_samples) > 0
    assert result.tokens_recomputed > 0
    assert 0 < result.recompute_tax < 1
    # Every position once, plus what was computed again (prompts share no prefix, so no request
    # is spared a first computation by another's cached blocks).
    first_time = sum(len(r.prompt_token_ids) + r.max_tokens - 1 for r in requests)
    assert result.tokens_computed == first_time + result.tokens_recomputed


def test_prefix_caching_spares_part_of_the_recompute(runs):
    # A preempted request finds its own freed blocks still cached and recomputes only the rest.
    cached, uncached = runs["scarce"][1], runs["scarce, no prefix caching"][1]
    assert cached.tokens_recomputed < uncached.tokens_recomputed


def test_offloading_brings_kv_back_instead_of_recomputing_it(runs):
    # vLLM's native CPU offloading stores computed blocks to host memory; a preempted request
    # loads what it finds there, and the loaded tokens are neither scheduled nor recomputed.
    plain, offloading = runs["scarce, no prefix caching"][1], runs["scarce, offloading"][1]
    assert offloading.blocks_swapped_out > 0  # blocks stored to host memory
    assert offloading.blocks_swapped_in > 0  # and loaded back
    assert offloading.tokens_recomputed < plain.tokens_recomputed


def test_a_prompt_in_chunks_samples_only_at_its_end(runs):
    (request,), result = runs["small chunks"]
    timing, = result.requests
    # 1000 prompt tokens in chunks of 256: four prefill steps, the first token at the end of the fourth.
    prefill_steps = [s for s in result.kv_samples if s.time_s <= timing.first_token_s]
    assert len(prefill_steps) == 4
    assert timing.output_tokens == 8
    assert result.tokens_computed == 1000 + 7


def test_results_in_the_clients_schema(runs):
    requests, result = runs["scarce"]
    run = to_run_result(result, requests)
    assert run.setup["gpu"] == "simulated a100-40gb x2 (virtual-time replay, vLLM V1)"
    assert run.setup["preemption_mode"] == "recompute"
    assert (run.setup["tokens_computed"], run.setup["tokens_recomputed"]) == (result.tokens_computed,
                                                                             result.tokens_recomputed)
    assert run.summary.completed == len(requests)


def test_replies_end_at_eos_or_at_their_cap(runs):
    requests, result = runs["eos"]
    assert [(t.output_tokens, t.finish_reason) for t in result.requests] == [(9, "stop"), (12, "length"), (20, "length")]
    assert [r.ended_at_eos for r in to_run_result(result, requests).records] == [True, False, False]


def test_async_scheduling_times_a_lone_request_as_the_synchronous_loop(runs):
    # Alone, the GPU runs its steps back to back either way; only what the scheduler knows differs.
    (sync,), (pipelined,) = runs["alone"][1].requests, runs["alone, async"][1].requests
    assert pipelined.token_times_s == sync.token_times_s and len(sync.token_times_s) == 8


def test_async_scheduling_plans_a_step_past_an_eos_it_has_not_seen(runs):
    # The next step is planned while the GPU samples the last, so the reply that ends at EOS
    # has one more token computed that nobody sees; the replies that end at their cap do not.
    sync, pipelined = runs["eos"][1], runs["eos, async"][1]
    assert ([(t.output_tokens, t.finish_reason) for t in pipelined.requests]
            == [(t.output_tokens, t.finish_reason) for t in sync.requests])
    assert pipelined.tokens_computed == sync.tokens_computed + 1


def test_async_scheduling_with_offloading_preempts_and_loads_back(runs):
    result = runs["scarce, offloading, async"][1]
    assert result.preemptions > 0 and result.blocks_swapped_out > 0 and result.blocks_swapped_in > 0


def test_async_scheduling_is_not_for_the_measured_host_time():
    with pytest.raises(ValueError, match="async scheduling hides"):
        V1ReplayConfig(async_scheduling=True, host_time="measured")


def test_under_async_scheduling_with_offloading_only_the_policy_preempts(runs):
    # There vLLM returns a preempted request's blocks a step late, so a decode that finds no free
    # block makes upstream preempt the whole tail of the running list; FairScheduler takes its
    # victims a step ahead instead (_victims_for_growth), and upstream never has to.
    result = runs["scarce, ours, async"][1]
    assert result.preemptions == result.policy_victims > 0
    assert runs["scarce, offloading, async"][1].policy_victims is None  # vLLM's own scheduler
