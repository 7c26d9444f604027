"""FairScheduler (first token first, then first come first served) on real vLLM scheduler objects."""

import dataclasses

import pytest

from vllm_cfs.v0.fair import FairScheduler
from vllm_cfs.lab.trace import Pools, TraceDriver, TraceRequest, make_scheduler
from vllm_cfs.policy import first_token_key, room_frees_within, stall_cost_key, tokens_left, yields_to_new_arrivals_only
from vllm_cfs.v0.adapter import request_state, vruntime

# Four requests of 10 blocks fill 40 of 42 GPU blocks: a fifth cannot be admitted without a victim.
POOLS = Pools(num_gpu_blocks=42, num_cpu_blocks=400)
PROMPT = 150  # 10 blocks with the first tokens


@pytest.fixture
def fair(monkeypatch):
    def build(patience: int = 0, pools: Pools = POOLS) -> FairScheduler:
        monkeypatch.setenv("FAIR_PATIENCE_TOKENS", str(patience))
        monkeypatch.setenv("CFS_INTERVAL", "0")  # ignored by FairScheduler
        return make_scheduler(FairScheduler, pools)

    return build


def step_until(driver, condition, limit=2000):
    while not condition():
        assert driver.step < limit
        driver.run_step()


def test_a_newcomer_gets_its_first_token_at_once_and_the_latest_arrival_yields(fair):
    runners = [TraceRequest(f"run{i}", i, PROMPT, max_tokens=100) for i in range(4)]
    newcomer = TraceRequest("new", 8, PROMPT, max_tokens=100)
    driver = TraceDriver(fair(), runners + [newcomer])
    step_until(driver, lambda: driver.step > newcomer.arrival_step)

    assert driver.outcomes["new"].ttft_steps == 0  # prefilled in the step it arrived in
    assert [g.request_id for g in driver.scheduler.swapped] == ["run3"]  # the latest arrival

    outcomes = driver.run()
    assert all(o.output_tokens == 100 for o in outcomes.values())
    assert driver.scheduler.block_manager.get_num_free_gpu_blocks() == POOLS.num_gpu_blocks


def test_the_request_with_the_most_work_left_is_not_the_victim(fair):
    # run3 arrived last but has 300 tokens more to go than anyone: stalling it would end the whole
    # trace later, so the latest arrival among the others (run2) yields to the newcomer.
    runners = [TraceRequest(f"run{i}", i, PROMPT, max_tokens=400 if i == 3 else 100) for i in range(4)]
    newcomer = TraceRequest("new", 8, PROMPT, max_tokens=100)
    driver = TraceDriver(fair(), runners + [newcomer])
    step_until(driver, lambda: driver.step > newcomer.arrival_step)

    assert driver.outcomes["new"].ttft_steps == 0
    assert [g.request_id for g in driver.scheduler.swapped] == ["run2"]
    outcomes = driver.run()
    assert [outcomes[r.request_id].output_tokens for r in runners] == [100, 100, 100, 400]


def test_swapped_requests_come_back_in_arrival_order_and_never_evict(fair):
    # Eight requests arrive one a step while four fit: each newcomer evicts the latest arrival,
    # so requests with their first token wait swapped, and come back first come first served.
    trace = [TraceRequest(f"r{i}", i, PROMPT, max_tokens=60) for i in range(8)]
    driver = TraceDriver(fair(), trace)
    swapped_in = []
    while not driver.done:
        before = {g.request_id for g in driver.scheduler.swapped}
        driver.run_step()
        swapped_in += sorted(before - {g.request_id for g in driver.scheduler.swapped},
                             key=lambda rid: int(rid[1:]))
    assert all(o.first_token_step == o.arrival_step for o in driver.outcomes.values())
    assert all(o.output_tokens == 60 for o in driver.outcomes.values())
    assert swapped_in and swapped_in == sorted(swapped_in, key=lambda rid: int(rid[1:]))


def test_patience_waits_for_a_finishing_request_instead_of_evicting(fair):
    # At step 26 four runners hold 44 of 50 blocks; run0 finishes 4 steps later and frees 12.
    pools = Pools(num_gpu_blocks=50, num_cpu_blocks=400)
    trace = [TraceRequest(f"run{i}", 0, PROMPT, max_tokens=30 + 20 * i) for i in range(4)]
    trace.append(TraceRequest("new", 26, PROMPT, max_tokens=10))
    for patience, evictions, ttft_steps in ((8, 0, range(1, 9)), (0, 1, range(0, 1))):
        driver = TraceDriver(fair(patience, pools), trace)
        step_until(driver, lambda: driver.outcomes.get("new") and driver.outcomes["new"].first_token_step)
        assert driver.scheduler.cfs_stats.preempted_by_swap == evictions
        assert driver.outcomes["new"].ttft_steps in ttft_steps
        outcomes = driver.run()
        assert [outcomes[r.request_id].output_tokens for r in trace] == [r.max_tokens for r in trace]


def test_the_policy_functions():
    assert yields_to_new_arrivals_only((0, 1, 5.0), (0, 0, 9.0), contender_is_new=True)
    assert not yields_to_new_arrivals_only((0, 1, 5.0), (0, 1, 1.0), contender_is_new=False)
    assert not yields_to_new_arrivals_only((0, 1, 5.0), (1, 0, 9.0), contender_is_new=True)  # lower priority
    running = [(3, 10, 1), (9, 50, 1)]  # (tokens left, blocks, sequence slots)
    assert room_frees_within(4, needed=(12, 1), free=(2, 0), running=running)
    assert not room_frees_within(2, needed=(12, 1), free=(2, 0), running=running)
    assert not room_frees_within(4, needed=(12, 2), free=(2, 0), running=running)  # one slot frees


def test_first_token_key_ranks_newcomers_then_arrival(fair):
    driver = TraceDriver(fair(), [TraceRequest("a", 0, 20, 5), TraceRequest("b", 1, 20, 5)])
    driver.run_step()
    driver.run_step()
    a, b = driver.groups["a"], driver.groups["b"]
    assert vruntime(a) >= 1 and vruntime(b) >= 1
    assert first_token_key(request_state(a)) < first_token_key(request_state(b))  # both started: the earlier arrival first


def test_swap_in_order_puts_the_worst_stalled_stream_first(fair):
    driver = TraceDriver(fair(), [TraceRequest("short", 0, 20, 10), TraceRequest("long", 0, 20, 200)])
    driver.run_step()
    driver.run_step()
    short, long = driver.groups["short"], driver.groups["long"]
    assert vruntime(short) == vruntime(long) >= 1
    # Stalled as long, a short reply's time per token suffers more: it comes back first.
    short, long = request_state(short), request_state(long)
    assert short.ignore_eos and long.ignore_eos  # the trace's lengths are exact: tokens left too
    assert stall_cost_key(short, short.remaining_tokens, 40) < stall_cost_key(long, long.remaining_tokens, 40)
    # Of the same request, the longer stalled comes back first.
    assert stall_cost_key(long, long.remaining_tokens, 50) < stall_cost_key(long, long.remaining_tokens, 10)


def test_replies_that_end_at_eos_teach_the_scheduler_their_lengths(fair):
    trace = [TraceRequest(f"r{i}", 2 * i, PROMPT, max_tokens=512, reply_tokens=12 + 5 * i) for i in range(10)]
    trace.append(TraceRequest("capped", 0, PROMPT, max_tokens=30, reply_tokens=400))
    trace.append(TraceRequest("exact", 0, PROMPT, max_tokens=20))  # ignore_eos: not a reply length
    driver = TraceDriver(fair(), trace)
    outcomes = driver.run()
    assert [outcomes[f"r{i}"].output_tokens for i in range(10)] == [12 + 5 * i for i in range(10)]
    assert outcomes["capped"].output_tokens == 30 and outcomes["exact"].output_tokens == 20
    replies = driver.scheduler.finished_replies
    assert len(replies) == 11  # ten at EOS, one at its cap; the ignore_eos one says nothing
    # A 512-token cap, yet it expects a new reply to be about as long as those it saw end.
    newcomer = dataclasses.replace(request_state(driver.groups["r0"]), generated_tokens=0)
    assert not newcomer.ignore_eos and newcomer.max_tokens == 512
    assert tokens_left(newcomer, replies) == pytest.approx((sum(12 + 5 * i for i in range(10)) + 30) / 11)
