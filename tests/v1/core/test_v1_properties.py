"""Property-based tests: the V1 policies on vLLM V1's real scheduler through random traces and aborts.

Hypothesis draws a whole scenario (pool, batch limits, prefix caching, policy and its setting,
requests, aborts); the V1 TraceDriver plays the engine. After every step and every abort: each
live request is in exactly one of running and waiting, with a matching status; the block pool
balances (free + held by live requests = usable, with no block held twice unless shared through
the prefix cache); a preempted request holds no blocks and has nothing computed; the policy's
victims are among the step's preempted. At the end: every block is free again and each request
finished with all its tokens or was aborted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from vllm.v1.request import RequestStatus

from vllm_cfs.lab.traces import TraceRequest
from vllm_cfs.v1.scheduler import CFSScheduler, FairScheduler
from vllm_cfs.v1.trace import BLOCK_SIZE, Pools, TraceDriver, make_scheduler

# The same traces at every run of `make test`; a search for new ones:
# RELIABILITY_EXPLORE=1 RELIABILITY_EXAMPLES=2000 pytest tests/v1/core/test_v1_properties.py
EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "300"))
SAME_TRACES_EVERY_RUN = not os.environ.get("RELIABILITY_EXPLORE")


@dataclass(frozen=True)
class Abort:
    step: int
    queue: str  # "running", "waiting" or "preempted" (a waiting request with tokens)
    pick: int


@dataclass(frozen=True)
class Scenario:
    pools: Pools
    policy: str  # "fair" or "cfs"
    setting: int  # FAIR_PATIENCE_TOKENS or CFS_INTERVAL
    requests: Tuple[TraceRequest, ...]
    aborts: Tuple[Abort, ...]


@st.composite
def scenarios(draw) -> Scenario:
    num_gpu_blocks = draw(st.integers(6, 60))
    max_model_len = draw(st.sampled_from([64, 128, 256]))
    # A request whose whole life fits in the pool finishes; none is drawn that outgrows it.
    fits = min(max_model_len, (num_gpu_blocks - 1) * BLOCK_SIZE)
    requests = []
    for i in range(draw(st.integers(1, 20))):
        prompt_len = draw(st.integers(1, fits - 1))
        max_tokens = draw(st.integers(1, min(60, fits - prompt_len)))
        requests.append(TraceRequest(f"r{i}", draw(st.integers(0, 40)), prompt_len, max_tokens))
    aborts = draw(st.lists(st.builds(Abort, st.integers(0, 120), st.sampled_from(["running", "waiting", "preempted"]),
                                     st.integers(0, 9)), max_size=3))
    pools = Pools(num_gpu_blocks=num_gpu_blocks, max_num_seqs=draw(st.integers(1, 8)), max_model_len=max_model_len,
                  max_num_batched_tokens=draw(st.sampled_from([32, 64, 2048])),
                  enable_prefix_caching=draw(st.booleans()))
    policy = draw(st.sampled_from(["fair", "cfs"]))
    setting = draw(st.integers(0, 10)) if policy == "fair" else draw(st.integers(0, 20))
    return Scenario(pools, policy, setting, tuple(requests), tuple(aborts))


def pick_abort(driver: TraceDriver, abort: Abort) -> Optional[str]:
    scheduler = driver.scheduler
    if abort.queue == "running":
        candidates = [r.request_id for r in scheduler.running]
    elif abort.queue == "waiting":
        candidates = [r.request_id for r in scheduler.waiting]
    else:
        candidates = [r.request_id for r in scheduler.waiting if r.status == RequestStatus.PREEMPTED]
    candidates.sort()
    return candidates[abort.pick % len(candidates)] if candidates else None


def check_queues_and_blocks(driver: TraceDriver) -> None:
    scheduler = driver.scheduler
    running = [r.request_id for r in scheduler.running]
    waiting = [r.request_id for r in scheduler.waiting]
    assert len(set(running)) == len(running) and not set(running) & set(waiting)
    live = set(running) | set(waiting)
    assert live == {rid for rid, r in scheduler.requests.items() if not r.is_finished()}
    assert all(scheduler.requests[rid].status == RequestStatus.RUNNING for rid in running)
    for request in scheduler.waiting:
        assert request.status in (RequestStatus.WAITING, RequestStatus.PREEMPTED)
        if request.status == RequestStatus.PREEMPTED:
            assert request.num_computed_tokens == 0
            assert not any(scheduler.kv_cache_manager.get_block_ids(request.request_id))
    pool = scheduler.kv_cache_manager.block_pool
    held = [block for rid in running for block in scheduler.kv_cache_manager.get_block_ids(rid)[0]]
    if not scheduler.cache_config.enable_prefix_caching:
        assert len(held) == len(set(held))  # without a prefix cache no block is shared
    assert pool.get_num_free_blocks() + len(set(held)) == pool.num_gpu_blocks - 1  # one null block


def run_scenario(scenario: Scenario, monkeypatch) -> TraceDriver:
    if scenario.policy == "fair":
        monkeypatch.setenv("FAIR_PATIENCE_TOKENS", str(scenario.setting))
        scheduler_cls = FairScheduler
    else:
        monkeypatch.setenv("CFS_INTERVAL", str(scenario.setting))
        monkeypatch.delenv("CFS_MIN_GRANULARITY", raising=False)
        scheduler_cls = CFSScheduler
    driver = TraceDriver(make_scheduler(scheduler_cls, scenario.pools), scenario.requests)
    victims_preempted = []
    driver.on_schedule = lambda out: victims_preempted.append(
        set(getattr(driver.scheduler, "victim_ids", ())) <= set(out.preempted_req_ids or ()))
    aborts = sorted(scenario.aborts, key=lambda a: a.step)
    cap = 200 + 20 * sum(r.prompt_len + r.max_tokens for r in scenario.requests)
    while not driver.done:
        for abort in [a for a in aborts if a.step <= driver.step]:
            victim = pick_abort(driver, abort)
            if victim is None:
                continue
            aborts.remove(abort)
            note(f"abort {victim} ({abort.queue}) before step {driver.step}")
            event(f"abort while {abort.queue}")
            driver.abort(victim)
            check_queues_and_blocks(driver)
        driver.run_step()
        check_queues_and_blocks(driver)
        assert driver.step < cap, f"not finished after {cap} steps: livelock"
    assert all(victims_preempted)
    return driver


@settings(max_examples=EXAMPLES, deadline=None, derandomize=SAME_TRACES_EVERY_RUN,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_random_traces_keep_every_invariant(scenario, monkeypatch):
    driver = run_scenario(scenario, monkeypatch)
    pool = driver.scheduler.kv_cache_manager.block_pool
    assert pool.get_num_free_blocks() == pool.num_gpu_blocks - 1
    for request in scenario.requests:
        outcome = driver.outcomes[request.request_id]
        assert outcome.aborted or outcome.output_tokens == request.max_tokens, outcome
    event(f"{scenario.policy}: {'victims' if driver.scheduler.policy_stats.victims else 'no victim'}")
    # The scheduler's own ledger (what the server logs) counts what the engine was asked to compute.
    stats = driver.scheduler.policy_stats
    assert (stats.tokens_computed, stats.tokens_recomputed) == (driver.recompute.tokens_computed,
                                                                driver.recompute.tokens_recomputed)
    if driver.recompute.tokens_recomputed:
        event("recomputed tokens")
