"""Property-based tests: CFSScheduler on real vLLM objects through random traces and faults.

Hypothesis draws a whole scenario (pools, interval, preemption mode, minimum granularity,
requests with n samples, aborts) and the ``TraceDriver`` plays the engine's token loop; a
failing scenario shrinks to a minimal trace. See docs/reliability.md for what is covered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from vllm_cfs.lab.trace import BLOCK_SIZE, Pools, TraceDriver, TraceRequest, make_scheduler
from vllm_cfs.v0.fair import FairScheduler
from vllm_cfs.v0.scheduler import CFSScheduler

from scheduler_invariants import SchedulerChecker

# Each example replays a trace of up to a few hundred steps with every invariant checked at
# every step; 500 keep the file within about a minute on two busy cores. `make test` draws the
# same traces at every run (a suite that passed yesterday passes today); a search for new ones:
# RELIABILITY_EXPLORE=1 RELIABILITY_EXAMPLES=5000 pytest tests/reliability/test_scheduler_properties.py
EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "500"))
SAME_TRACES_EVERY_RUN = not os.environ.get("RELIABILITY_EXPLORE")
FAIR_EXAMPLES = max(1, EXAMPLES * 2 // 5)
QUEUES = ("waiting", "running", "swapped", "any")


@dataclass(frozen=True)
class Abort:
    """From scheduling step ``step`` on, abort one request as soon as ``queue`` holds one."""

    step: int
    queue: str
    pick: int


@dataclass(frozen=True)
class Scenario:
    pools: Pools
    interval: int
    min_granularity: Optional[int]
    requests: Tuple[TraceRequest, ...]
    aborts: Tuple[Abort, ...]
    # FairScheduler's FAIR_PATIENCE_TOKENS; None: the scenario runs CFSScheduler.
    fair_patience: Optional[int] = None

    @property
    def head_wait_bound(self) -> Optional[int]:
        """Steps a request may head the waiting queue with no token (see the test's docstring)."""
        if self.fair_patience is not None:
            return self.fair_patience + 2
        return self.interval or None

    @property
    def prompt_limit(self) -> int:
        return min(self.pools.max_model_len, self.pools.max_num_batched_tokens)

    def expect_ignored(self, request: TraceRequest) -> bool:
        """Upstream's admission: a prompt over the limit, or one the GPU can never hold."""
        watermark = int(0.01 * self.pools.num_gpu_blocks)
        blocks = -(-request.prompt_len // BLOCK_SIZE)
        return (request.prompt_len > self.prompt_limit
                or blocks > self.pools.num_gpu_blocks - watermark)


@st.composite
def scenarios(draw, fair: bool = False) -> Scenario:
    max_model_len = draw(st.sampled_from([64, 128, 256]))
    num_gpu_blocks = draw(st.integers(3, 40))
    max_num_seqs = draw(st.integers(1, 8))
    # None is vLLM's automatic choice: recompute for single-sequence groups.
    preemption_mode = draw(st.sampled_from(["swap", "swap", "recompute", None]))
    interval = draw(st.integers(0, 40))
    min_granularity = draw(st.none() | st.integers(0, 40))
    # A request that fits its whole life in the GPU pool finishes; one whose prompt exceeds the
    # limit is ignored at admission. (A request that outgrows the whole pool mid-way is ignored
    # by upstream too, with a partial output: the API server refuses those, so none are drawn.)
    fits = min(max_model_len, num_gpu_blocks * BLOCK_SIZE)
    requests = []
    for i in range(draw(st.integers(1, 24))):
        arrival = draw(st.integers(0, 40))
        n = draw(st.sampled_from([1, 1, 1, 2, 3]))
        if draw(st.integers(0, 15)) == 0:
            prompt_len, max_tokens = draw(st.integers(max_model_len + 1, max_model_len + 40)), 4
        else:
            prompt_len = draw(st.integers(1, fits - 1))
            max_tokens = draw(st.integers(1, min(80, fits - prompt_len)))
        requests.append(TraceRequest(f"r{i}", arrival, prompt_len, max_tokens, n=n))
    aborts = draw(st.lists(st.builds(Abort, st.integers(0, 120), st.sampled_from(QUEUES),
                                     st.integers(0, 9)), max_size=4))
    # From none at all (every swap preemption falls back to recompute) to plenty.
    num_cpu_blocks = draw(st.integers(0, 48))
    pools = Pools(num_gpu_blocks=num_gpu_blocks, num_cpu_blocks=num_cpu_blocks,
                  max_num_seqs=max_num_seqs, max_model_len=max_model_len,
                  max_num_batched_tokens=max_model_len, preemption_mode=preemption_mode)
    fair_patience = draw(st.integers(0, 10)) if fair else None
    return Scenario(pools, interval, min_granularity, tuple(requests), tuple(aborts), fair_patience)


def pick_abort(driver: TraceDriver, abort: Abort) -> Optional[str]:
    """The trace request to abort: one with a sample in the named queue, or any that arrived."""
    if abort.queue == "any":
        candidates = sorted(driver.samples)
    else:
        in_queue = {g.request_id for g in getattr(driver.scheduler, abort.queue)}
        candidates = sorted(rid for rid, samples in driver.samples.items()
                            if in_queue.intersection(samples))
    return candidates[abort.pick % len(candidates)] if candidates else None


def step_cap(scenario: Scenario) -> int:
    """A generous liveness bound: every token of every sample, recomputed many times over."""
    tokens = sum(r.n * (r.prompt_len + r.max_tokens) for r in scenario.requests)
    return 200 + 20 * tokens


def run_scenario(scenario: Scenario, monkeypatch) -> Tuple[TraceDriver, SchedulerChecker, List[str]]:
    monkeypatch.setenv("CFS_INTERVAL", str(scenario.interval))
    if scenario.min_granularity is None:
        monkeypatch.delenv("CFS_MIN_GRANULARITY", raising=False)
    else:
        monkeypatch.setenv("CFS_MIN_GRANULARITY", str(scenario.min_granularity))
    if scenario.fair_patience is None:
        scheduler_cls = CFSScheduler
    else:
        scheduler_cls = FairScheduler
        monkeypatch.setenv("FAIR_PATIENCE_TOKENS", str(scenario.fair_patience))
    driver = TraceDriver(make_scheduler(scheduler_cls, scenario.pools), scenario.requests)
    checker = SchedulerChecker(driver, head_wait_bound=scenario.head_wait_bound)
    aborts = sorted(scenario.aborts, key=lambda a: a.step)
    aborted: List[str] = []
    cap = step_cap(scenario)
    while not driver.done:
        for abort in [a for a in aborts if a.step <= driver.step]:
            victim = pick_abort(driver, abort)
            if victim is None:
                continue  # armed: fires at the first step that finds its queue non-empty
            aborts.remove(abort)
            note(f"abort {victim} before step {driver.step}")
            event("abort while swapped" if any(
                g.request_id in driver.samples[victim] for g in driver.scheduler.swapped)
                else "abort while waiting or running")
            driver.abort(victim)
            aborted.append(victim)
            checker.after_step()  # an abort must leave the queues and pools consistent too
        outputs = driver.run_step()
        if scenario.pools.preemption_mode != "swap":
            assert not outputs.blocks_to_swap_out and not outputs.blocks_to_swap_in
        checker.after_step()
        assert driver.step < cap, f"not finished after {cap} steps: livelock"
    checker.at_end()
    stats = driver.scheduler.cfs_stats
    event("swapped out" if checker.swap_out_blocks else "no swap")
    if stats.swap_space_full_fallbacks:
        event("CPU swap space exhausted: recompute fallback")
    if any(r.n > 1 for r in scenario.requests):
        event("n > 1")
    if any(o.ignored for o in driver.outcomes.values()):
        event("prompt ignored")
    return driver, checker, aborted


@settings(max_examples=EXAMPLES, deadline=None, derandomize=SAME_TRACES_EVERY_RUN,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_random_traces_keep_every_invariant(scenario, monkeypatch):
    """Queues, block pools and outcomes stay right under random traces, aborts and tiny pools.

    After every step and every abort: each live request is in exactly one of waiting, running
    and swapped, with the matching sequence status; GPU and CPU pools balance (free + held =
    total, held read from the live sequences' block tables, no block shared, no table without
    an owner); running sequences hold GPU blocks for all their computed tokens. At every step,
    as the worker sees it: each scheduled sequence has GPU blocks for all its tokens, and no
    GPU block is both swapped in and swapped out. At the end: every block is free; each sample
    of a request that was not aborted either finished with exactly max_tokens, or (prompt over
    the limit, or more blocks than the GPU has) was ignored with no output.

    Waiting bound (CFS_INTERVAL = N >= 1, all requests of equal priority): a request that has
    generated no token yet and is at the head of the waiting queue after step k is prefilled
    or ignored by step k + N. Why: the CFS step, which comes within N steps, visits contenders
    smallest (priority, vruntime, arrival) first; a head request with vruntime 0 is first (it
    ranks before every running and swapped request, which have generated tokens, and before
    every waiting one behind it), new arrivals yield to no granularity, so it may evict every
    running request; if its prompt fits the pool and the token budget it is admitted, else
    upstream's admission ignores it. With N = 0 (upstream FCFS, run to completion) the policy
    gives no such bound: only liveness (every trace finishes within a step cap) is asserted.
    """
    check_outcomes(scenario, *run_scenario(scenario, monkeypatch))


@settings(max_examples=FAIR_EXAMPLES, deadline=None, derandomize=SAME_TRACES_EVERY_RUN,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scenario=scenarios(fair=True))
def test_fair_scheduler_keeps_every_invariant(scenario, monkeypatch):
    """The same traces and checks for FairScheduler (CFS_INTERVAL is drawn but ignored by it).

    Waiting bound: FairScheduler acts at every step that finds a request waiting. A head request
    with no token outranks every request that has one, so it may evict any running request of
    its priority; it holds back only while requests finishing within FAIR_PATIENCE_TOKENS steps
    would free its room, so it is prefilled or ignored within patience + 2 steps.
    """
    check_outcomes(scenario, *run_scenario(scenario, monkeypatch))


def check_outcomes(scenario: Scenario, driver: TraceDriver, checker: SchedulerChecker, aborted: List[str]) -> None:
    note(f"steps={driver.step} longest head wait={checker.longest_head_wait} "
         f"swapped out={checker.swap_out_blocks} blocks, max swapped={checker.max_swapped}")
    for request in scenario.requests:
        samples = driver.samples[request.request_id]
        assert len(samples) == request.n
        for sample_id in samples:
            outcome = driver.outcomes[sample_id]
            if outcome.aborted:
                assert request.request_id in aborted
                assert outcome.output_tokens < request.max_tokens
            elif scenario.expect_ignored(request):
                assert outcome.ignored and outcome.output_tokens == 0, sample_id
            else:
                assert not outcome.ignored, f"{sample_id} ignored"
                assert outcome.output_tokens == request.max_tokens, sample_id
                assert outcome.finish_step is not None
