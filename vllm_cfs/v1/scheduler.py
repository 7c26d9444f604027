"""The policies on vLLM V1's scheduler: the assignment's CFS and our FairScheduler.

Both subclass ``vllm.v1.core.sched.async_scheduler.AsyncScheduler``: with async scheduling on
(vLLM's default wherever the executor supports it) the engine builds an AsyncScheduler, and with
it off an AsyncScheduler decides as the plain Scheduler does (its output placeholders are added
and taken back within each step), so one base serves both.

V1 preempts by recompute only: a victim's KV blocks are freed (with prefix caching on they stay
in the cache until reused, and its resume may hit them), it goes back to the waiting queue with
``num_computed_tokens = 0``, and it prefills prompt and output so far again when room frees.

Upstream's ``schedule()`` is kept whole. Before it runs, a policy orders the running list (upstream
preempts from its tail when decodes run out of blocks) and the waiting queue (upstream admits from
its head), and preempts the victims it chose through upstream's own ``_preempt_request``. Those
victims are added to the step's ``preempted_req_ids``, so the workers drop their state and a KV
connector flushes their stores exactly as for upstream's own preemptions. Where vLLM returns a
preempted request's blocks a step late (async scheduling with a KV connector), the policies also
take victims a step ahead for the running requests' growth, so that upstream never has to, and make
admissions leave room for the next step's growth (vLLM's own watermark, raised). A victim sits out
the step that preempted it, as upstream's own do.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Callable, Iterable

from vllm.logger import init_logger
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.request_queue import SchedulingPolicy
from vllm.v1.request import Request, RequestStatus

from vllm_cfs.policy import (FinishedReplies, Growth, admission_headroom, ahead_by_a_time_slice, cfs_key,
                             eviction_key, first_token_key, growth_victims, room_frees_within, stall_cost_key,
                             tokens_left, yields_to_new_arrivals_only)
from vllm_cfs.settings import CFSConfigError, read_cfs_interval, read_min_granularity, read_patience_tokens
from vllm_cfs.v1.adapter import request_state
from vllm_cfs.v1.recompute import RecomputeLedger

# Under vLLM's logger, so that `vllm serve` prints our lines with its own, in its format.
logger = init_logger(f"vllm.{__name__}")

# The cadence of vLLM's own stats line, so the two read side by side in the server log.
STATS_LOG_PERIOD_S = 5.0


@dataclasses.dataclass
class PolicyStats:
    """Cumulative counters, readable as ``scheduler.policy_stats`` and logged periodically."""

    policy_steps: int = 0  # steps in which the policy looked for victims (CFS steps, Fair's evictions)
    victims: int = 0  # requests the policy preempted (upstream's own preemptions are not counted here)
    victim_blocks: int = 0  # GPU blocks those victims held
    # Every token the engine was asked to compute, and those a request had computed before (its
    # recompute after a preemption, upstream's or ours: the recompute tax, vllm_cfs.v1.recompute).
    tokens_computed: int = 0
    tokens_recomputed: int = 0


class _PolicyScheduler(AsyncScheduler):
    """What both policies share: victims preempted before upstream's step, and the stats line."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.policy != SchedulingPolicy.FCFS:
            raise CFSConfigError(f"{type(self).__name__} ranks requests itself (priority first): "
                                 "start vLLM with --scheduling-policy fcfs")
        self.policy_stats = PolicyStats()
        self._base_watermark_blocks = self.kv_cache_manager.watermark_blocks
        self._recompute = RecomputeLedger()
        self._steps = 0
        self.victim_ids: set[str] = set()  # this step's policy victims
        self._stats_logged = PolicyStats()
        self._stats_logged_at = time.monotonic()
        logger.info("%s", self.describe())

    def describe(self) -> str:
        raise NotImplementedError

    def schedule(self, throttle_prefills: bool = False) -> SchedulerOutput:
        """Overridden to preempt the policy's victims and order the queues before upstream's step."""
        self._steps += 1
        self._reserve_growth_headroom()
        victims = self._choose_victims()
        victims += self._victims_for_growth(victims)
        now = time.monotonic()
        for victim in victims:
            self.policy_stats.victim_blocks += self._blocks_held(victim)
            self.running.remove(victim)
            self._preempt_request(victim, now)
        self.policy_stats.victims += len(victims)
        self.victim_ids = {victim.request_id for victim in victims}
        self._order_waiting()
        output = self._schedule_without(victims, throttle_prefills)
        self._maybe_log_stats()
        return output

    def _schedule_without(self, victims: list[Request], throttle_prefills: bool) -> SchedulerOutput:
        """Upstream's step with this step's victims out of the waiting queue, then back where they stood.

        Upstream admits nobody in a step where it preempts; ours admit newcomers, and a victim taken
        back in its own step would only recompute what it just gave up. Under async scheduling it
        also breaks vLLM's books: its in-flight token comes back beside the readmission's, and when it
        is a victim again the next step, AsyncScheduler finds more tokens than output placeholders
        (the engine died so on a real H200, 2026-12-03).
        """
        if not victims:
            return super().schedule(throttle_prefills)
        order = list(self.waiting)
        self.waiting.remove_requests(victims)
        output = super().schedule(throttle_prefills)
        left = list(self.waiting)
        was_waiting = {id(r) for r in order}
        still_waiting = {id(r) for r in left} | {id(r) for r in victims}
        preempted_by_upstream = [r for r in left if id(r) not in was_waiting]
        self.waiting.remove_requests(left)
        for request in preempted_by_upstream + [r for r in order if id(r) in still_waiting]:
            self.waiting.add_request(request)
        return output

    def _build_kv_connector_meta(self, connector, scheduler_output: SchedulerOutput):
        """Overridden so that a KV connector sees the policy's victims among the step's preempted."""
        self._report_victims(scheduler_output)
        return super()._build_kv_connector_meta(connector, scheduler_output)

    def _update_after_schedule(self, scheduler_output: SchedulerOutput) -> None:
        """Overridden so that the workers see the policy's victims among the step's preempted, and
        to count the step's recomputed tokens while each request's computed count is still the
        step's start."""
        self._report_victims(scheduler_output)
        self._count_computed(scheduler_output)
        super()._update_after_schedule(scheduler_output)

    def update_from_output(self, scheduler_output: SchedulerOutput, model_runner_output):
        """Overridden to log the stats line when the scheduler drains: a burst's totals in the log."""
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        for request_id in scheduler_output.finished_req_ids:
            self._recompute.forget(request_id)
        if not self.has_requests():
            self._log_stats()
        return outputs

    # --- what a policy decides ---

    def _choose_victims(self) -> list[Request]:
        """Running requests to preempt before this step; may also reorder ``self.running``."""
        raise NotImplementedError

    def _waiting_key(self, request: Request):
        """The waiting queue's order, the head first."""
        raise NotImplementedError

    def _reorders_waiting(self) -> bool:
        """Whether this step sorts the waiting queue by ``_waiting_key`` (else upstream's order stands)."""
        return True

    def _victims_for_growth(self, chosen: list[Request]) -> list[Request]:
        """Running requests to preempt so that the running ones' KV growth finds free blocks this
        step and the next (policy.growth), where vLLM defers freeing (async scheduling with a KV
        connector, as with CPU offloading): there upstream's schedule(), finding no free block for a
        decode, preempts the whole tail of the running list in one step."""
        if not self.defer_block_free:
            return []
        running = [r for r in self.running if r not in chosen]
        returning = self._blocks_returning() + sum(map(self._blocks_held, chosen))
        picked = growth_victims([self._growth(r) for r in running], self._num_free_blocks(), returning)
        return [running[i] for i in picked]

    def _reserve_growth_headroom(self) -> None:
        """Where vLLM defers freeing, raises the KV manager's watermark (the free blocks upstream's
        admissions, and ours, must leave) by what the running requests' next decodes need."""
        if self.defer_block_free:
            headroom = admission_headroom([self._growth(r) for r in self.running], self._blocks_returning())
            self.kv_cache_manager.watermark_blocks = self._base_watermark_blocks + headroom

    # --- helpers ---

    def _growth(self, request: Request) -> Growth:
        return Growth(self._blocks_held(request), self._blocks_needed(request, 0), self._blocks_needed(request, 1))

    def _blocks_returning(self) -> int:
        """Blocks of preempted requests that return to the free pool once their in-flight step is done."""
        return sum(len(blocks) for _, blocks in self.deferred_frees)

    def _blocks_needed(self, request: Request, extra_steps: int) -> int:
        """GPU blocks a running request must add for this step's tokens and ``extra_steps`` more decodes."""
        new = request.num_tokens_with_spec + request.num_output_placeholders - request.num_computed_tokens
        tokens = request.num_computed_tokens + min(new, self.max_num_scheduled_tokens) + extra_steps
        return max(0, math.ceil(min(tokens, self.max_model_len) / self.block_size) - self._blocks_held(request))

    def _order_waiting(self) -> None:
        if not self._reorders_waiting() or len(self.waiting) < 2:
            return
        ordered = sorted(self.waiting, key=self._waiting_key)
        self.waiting.remove_requests(ordered)
        for request in ordered:
            self.waiting.add_request(request)

    def _report_victims(self, scheduler_output: SchedulerOutput) -> None:
        if self.victim_ids:
            scheduler_output.preempted_req_ids = (scheduler_output.preempted_req_ids or set()) | self.victim_ids

    def _blocks_held(self, request: Request) -> int:
        return sum(len(ids) for ids in self.kv_cache_manager.get_block_ids(request.request_id))

    def _blocks_to_admit(self, request: Request) -> int:
        """GPU blocks an admission needs free: upstream admits a request only when its whole
        sequence fits (``scheduler_reserve_full_isl``), above the watermark. Prefix-cache hits on
        free blocks leave the free pool too when touched, so they do not lower the need."""
        tokens = min(request.num_tokens, self.max_model_len)
        if not self.scheduler_reserve_full_isl:
            tokens = min(tokens, self.max_num_scheduled_tokens)
        return math.ceil(tokens / self.block_size) + self.kv_cache_manager.watermark_blocks

    def _num_free_blocks(self) -> int:
        return self.kv_cache_manager.block_pool.get_num_free_blocks()

    def _budget_after_running(self) -> int:
        """Tokens of this step's budget left once every running request has its share, as upstream
        schedules the running list first: what admissions can still have."""
        wanted = sum(r.num_tokens_with_spec + r.num_output_placeholders - r.num_computed_tokens for r in self.running)
        return self.max_num_scheduled_tokens - wanted

    def _victims_for(self, contenders: Iterable[Request], yields: Callable[[Request, Request], bool]) -> list[Request]:
        """Running requests, taken from the tail of ``self.running``, whose room lets contenders in.

        Contenders are visited in order; each needs its whole sequence's blocks free and a running
        slot, and a share of the step's token budget (an admission that could not run this step
        would evict for nothing). Victims are taken while the tail ``yields`` to the contender; a
        contender that cannot fit even then ends the search, and the victims tentatively chosen for
        it keep running.
        """
        by_key = list(self.running)
        free_blocks = self._num_free_blocks()
        free_slots = self.max_num_running_reqs - len(by_key)
        budget = self._budget_after_running()
        victims: list[Request] = []
        for contender in contenders:
            if budget <= 0:
                break
            blocks = self._blocks_to_admit(contender)
            if blocks >= self.kv_cache_manager.block_pool.num_gpu_blocks:
                continue  # can never fit
            tentative: list[Request] = []
            while (free_blocks < blocks or free_slots < 1) and by_key and yields(by_key[-1], contender):
                victim = by_key.pop()
                tentative.append(victim)
                free_blocks += self._blocks_held(victim)
                free_slots += 1
                budget += victim.num_tokens_with_spec + victim.num_output_placeholders - victim.num_computed_tokens
            if free_blocks < blocks or free_slots < 1:
                by_key.extend(reversed(tentative))
                break
            victims.extend(tentative)
            free_blocks -= blocks
            free_slots -= 1
            budget -= contender.num_tokens - contender.num_computed_tokens
        return victims

    def _count_computed(self, scheduler_output: SchedulerOutput) -> None:
        for request_id, tokens in scheduler_output.num_scheduled_tokens.items():
            self._recompute.count(request_id, self.requests[request_id].num_computed_tokens, tokens)
        self.policy_stats.tokens_computed = self._recompute.tokens_computed
        self.policy_stats.tokens_recomputed = self._recompute.tokens_recomputed

    def _maybe_log_stats(self) -> None:
        if time.monotonic() - self._stats_logged_at >= STATS_LOG_PERIOD_S:
            self._log_stats()

    def _log_stats(self) -> None:
        if self.policy_stats == self._stats_logged:
            return
        self._stats_logged_at = time.monotonic()
        self._stats_logged = dataclasses.replace(self.policy_stats)
        logger.info("%s stats: %s", type(self).__name__,
                    ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.policy_stats).items()))


class CFSScheduler(_PolicyScheduler):
    """vLLM V1 scheduler with a CFS step every ``CFS_INTERVAL`` steps (0: exactly upstream's).

    In a CFS step the waiting requests, new and preempted, are contenders in vruntime order (the
    tokens they have generated, after the user's priority), and the running requests with the
    largest vruntime yield their room to them: a new arrival always, a preempted request only when
    the running one is ``CFS_MIN_GRANULARITY`` tokens ahead (Linux CFS's minimum granularity: no
    two groups trading the GPU at every CFS step). Other steps are upstream's own.
    """

    def __init__(self, *args, **kwargs) -> None:
        # Read before the parent logs describe().
        self.cfs_interval = read_cfs_interval()
        self.min_granularity = read_min_granularity(self.cfs_interval)
        super().__init__(*args, **kwargs)

    def describe(self) -> str:
        if self.cfs_interval == 0:
            return "CFS scheduler (vLLM V1): CFS_INTERVAL=0, vLLM's own scheduling only"
        return (f"CFS scheduler (vLLM V1): a CFS step every {self.cfs_interval} scheduling steps, minimum "
                f"granularity {self.min_granularity} tokens, victims preempted by recompute")

    def schedule(self, throttle_prefills: bool = False) -> SchedulerOutput:
        """Overridden: with CFS_INTERVAL=0 upstream's step untouched."""
        if self.cfs_interval == 0:
            output = AsyncScheduler.schedule(self, throttle_prefills)
            self._maybe_log_stats()
            return output
        return super().schedule(throttle_prefills)

    def _is_cfs_step(self) -> bool:
        return self._steps % self.cfs_interval == 0

    def _choose_victims(self) -> list[Request]:
        if not self._is_cfs_step():
            return []
        self.policy_stats.policy_steps += 1
        self.running.sort(key=self._rank)

        def yields(running: Request, contender: Request) -> bool:
            return ahead_by_a_time_slice(self._rank(running), self._rank(contender), contender.num_output_tokens == 0,
                                         self.min_granularity)

        return self._victims_for(sorted(self.waiting, key=self._rank), yields)

    def _waiting_key(self, request: Request):
        return self._rank(request)

    def _reorders_waiting(self) -> bool:
        # Between CFS steps upstream's order stands (its own preempted requests at the head).
        return self._is_cfs_step()

    @staticmethod
    def _rank(request: Request):
        return cfs_key(request_state(request))


class FairScheduler(_PolicyScheduler):
    """vLLM V1 scheduler: first token first, then first come first served (ignores CFS_INTERVAL).

    A request with no token yet outranks every request that has one. A newcomer that cannot be
    admitted waits up to ``FAIR_PATIENCE_TOKENS`` steps for requests about to finish to free its
    room, then takes the room of the latest arrival among the running requests that absorb a stall
    (``eviction_key``: under ignore_eos, those with much less to go than the longest, whose stall
    would end the workload later; at EOS, those with many tokens so far to spread the stall over).
    Tokens left are exact only under ignore_eos, else guessed from the replies finished so far.
    Requests with their first token run to completion; a preempted one never evicts, and comes back when room frees,
    the stream whose time per output token the stall hurts most first (``stall_cost_key``).
    """

    def __init__(self, *args, **kwargs) -> None:
        self.patience_tokens = read_patience_tokens()
        # The lengths of the replies finished so far, and each live request's expected tokens
        # left (exact under ignore_eos), refreshed every step: max_tokens is only a cap.
        self.finished_replies = FinishedReplies()
        self._tokens_left: dict[str, float] = {}
        self._longest_left = 0.0
        # Request id -> the step a newcomer first held back at the head of the queue (patience is a
        # budget per newcomer) and the step each live request was first seen with a token.
        self._held_back_since: dict[str, int] = {}
        self._first_token_step: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    def describe(self) -> str:
        return ("Fair scheduler (vLLM V1): first token first (a new arrival takes the room of the latest "
                f"arrival, after waiting up to {self.patience_tokens} steps for a finishing request's), "
                "then first come first served; victims preempted by recompute")

    def _choose_victims(self) -> list[Request]:
        live = list(itertools.chain(self.running, self.waiting))
        self._tokens_left = {r.request_id: tokens_left(request_state(r), self.finished_replies) for r in live}
        self._longest_left = max(self._tokens_left.values(), default=0)
        known = self._first_token_step
        self._first_token_step = {r.request_id: known.get(r.request_id, self._steps)
                                  for r in live if r.num_output_tokens >= 1}
        self.running.sort(key=self._eviction_key)
        newcomers = sorted((r for r in self.waiting if r.num_output_tokens == 0), key=self._waiting_key)
        waiting_ids = {r.request_id for r in newcomers}
        self._held_back_since = {rid: s for rid, s in self._held_back_since.items() if rid in waiting_ids}
        if not newcomers or self._keeps_patience(newcomers[0]):
            return []
        self.policy_stats.policy_steps += 1

        def yields(running: Request, contender: Request) -> bool:
            return yields_to_new_arrivals_only(first_token_key(request_state(running)),
                                               first_token_key(request_state(contender)), True)

        return self._victims_for(newcomers, yields)

    def _waiting_key(self, request: Request):
        state = request_state(request)
        if state.generated_tokens == 0:
            return first_token_key(state)
        stalled = self._steps - self._first_token_step.get(request.request_id, self._steps)
        return (state.priority, 1) + stall_cost_key(state, self._left(request), stalled)[1:]

    def _eviction_key(self, request: Request):
        return eviction_key(request_state(request), self._left(request), self._longest_left)

    def _left(self, request: Request) -> float:
        """Its expected tokens left, as this step began (a request that joined since: worked out now)."""
        left = self._tokens_left.get(request.request_id)
        return tokens_left(request_state(request), self.finished_replies) if left is None else left

    def _free_request(self, request: Request, *args, **kwargs):
        """Overridden to note how long each finished reply was (ended at EOS or its cap)."""
        ended = request.status in (RequestStatus.FINISHED_STOPPED, RequestStatus.FINISHED_LENGTH_CAPPED)
        if ended and request.sampling_params is not None and not request.sampling_params.ignore_eos:
            self.finished_replies.record(request.num_output_tokens)
        return super()._free_request(request, *args, **kwargs)

    def _keeps_patience(self, newcomer: Request) -> bool:
        """Whether the head newcomer waits this step for a finishing request's room (at most
        FAIR_PATIENCE_TOKENS steps in all) instead of evicting; true too when it fits now."""
        since = self._held_back_since.get(newcomer.request_id, self._steps)
        running = [(self._left(r), self._blocks_held(r), 1) for r in self.running]
        needed = (self._blocks_to_admit(newcomer), 1)
        free = (self._num_free_blocks(), self.max_num_running_reqs - len(self.running))
        if self._steps - since >= self.patience_tokens or not room_frees_within(self.patience_tokens, needed, free,
                                                                                running):
            return False
        self._held_back_since[newcomer.request_id] = since
        return True

