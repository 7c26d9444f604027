"""A Completely-Fair-Scheduler policy for vLLM 0.9.0's V0 scheduler.

Every ``CFS_INTERVAL``-th scheduling step is a *CFS step*: requests are ranked by their vruntime
(the number of tokens they have generated so far, after the user's priority), and waiting or
swapped requests with a smaller vruntime take GPU KV blocks from the running requests with the
largest one. Those victims are swapped out to CPU memory (``--preemption-mode swap``) and come
back by swap-in, smallest vruntime first. All other steps are vLLM's own default step.

Two choices, both measured with ``benchmarks/cfs_admission.py`` (see docs/scheduler.md):

* Swapped victims vs new prefills. Upstream's default step admits no prefill while anything is
  swapped, so after the first CFS step a new arrival would wait for the next CFS step even when
  its blocks are free. Here a new arrival may prefill in any step while victims are swapped: it
  has generated nothing, so it is the fairest request in the system.
* Minimum granularity (``CFS_MIN_GRANULARITY`` tokens, default: the interval). As in Linux's
  CFS, a running request yields to a *swapped* one only when it is ahead by at least this many
  tokens; otherwise two groups of requests would trade the GPU at every CFS step and most of
  the KV cache would cross the host link each time. New arrivals are not subject to it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import List, Optional, Set, Tuple

from vllm.core.scheduler import (
    PreemptionMode,
    Scheduler,
    SchedulerOutputs,
    SchedulerRunningOutputs,
    SchedulerSwappedInOutputs,
    SchedulingBudget,
)
from vllm.logger import init_logger
from vllm.sequence import Sequence, SequenceGroup, SequenceStatus

from vllm_cfs.policy import ahead_by_a_time_slice, cfs_key
from vllm_cfs.settings import CFSConfigError, read_cfs_interval, read_min_granularity
from vllm_cfs.v0.adapter import request_state
from vllm_cfs.v0.block_lookup import with_indexed_lookup
from vllm_cfs.v0.block_pools import blocks_on_cpu, return_to_gpu_pool

# Under vLLM's logger, so that `vllm serve` prints our lines with its own, in its format; a
# logger outside the "vllm" tree has no handler there and its INFO lines are lost.
logger = init_logger(f"vllm.{__name__}")

# Same cadence as vLLM's own V0 stats line, so the two read side by side in the server log.
STATS_LOG_PERIOD_S = 5.0

BlockMapping = List[Tuple[int, int]]


@dataclass
class CFSStats:
    """Cumulative counters, readable as ``scheduler.cfs_stats`` and logged periodically."""

    cfs_steps: int = 0
    preempted_by_swap: int = 0
    preempted_by_recompute: int = 0
    # Swap preemptions turned into recompute because CPU swap space was full.
    swap_space_full_fallbacks: int = 0
    blocks_swapped_out: int = 0
    blocks_swapped_in: int = 0


class CFSScheduler(Scheduler):
    """vLLM V0 scheduler with a CFS step every ``CFS_INTERVAL`` steps (0 = upstream FCFS)."""

    # Let new arrivals prefill in default steps even while victims sit in the swapped queue.
    prefill_while_swapped = True
    # The policy (vllm_cfs.policy): how requests rank, smallest first.
    policy_key = staticmethod(cfs_key)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Every CFS step swaps: vLLM's block manager sorts a whole block pool per swapped block.
        self.block_manager = with_indexed_lookup(self.block_manager)
        self.cfs_interval = read_cfs_interval()
        self.min_granularity = read_min_granularity(self.cfs_interval)
        if self.preempts:
            self._refuse_unsupported_features()
        self.cfs_stats = CFSStats()
        self._steps = 0
        self._stats_logged = CFSStats()
        self._stats_logged_at = time.monotonic()
        logger.info("%s", self.describe())

    @property
    def preempts(self) -> bool:
        """Whether this policy ever preempts on its own (CFS_INTERVAL=0 is upstream's FCFS)."""
        return self.cfs_interval > 0

    def describe(self) -> str:
        if not self.preempts:
            return "CFS scheduler: CFS_INTERVAL=0, vLLM's default FCFS only"
        return (f"CFS scheduler: a CFS step every {self.cfs_interval} scheduling steps, minimum "
                f"granularity {self.min_granularity} tokens")

    def _refuse_unsupported_features(self) -> None:
        config = self.scheduler_config
        if config.chunked_prefill_enabled:
            raise CFSConfigError(
                "CFS scheduling needs whole-prompt prefills: start vLLM with "
                "--no-enable-chunked-prefill (or set CFS_INTERVAL=0)")
        if config.is_multi_step:
            raise CFSConfigError(
                "CFS_INTERVAL counts single scheduling steps: multi-step scheduling "
                f"(--num-scheduler-steps {config.num_scheduler_steps}) is not supported with CFS")

    # ------------------------------------------------------------------ overrides

    def _schedule(self) -> SchedulerOutputs:
        """Overridden to pick the CFS step, an admission step or upstream's step, and to count."""
        outputs = self._scheduled_step()
        self.cfs_stats.blocks_swapped_out += len(outputs.blocks_to_swap_out)
        self.cfs_stats.blocks_swapped_in += len(outputs.blocks_to_swap_in)
        self._maybe_log_stats()
        return outputs

    def _scheduled_step(self) -> SchedulerOutputs:
        """The interval rule: a CFS step every ``CFS_INTERVAL`` steps, upstream's step otherwise."""
        if self.cfs_interval == 0:
            return super()._schedule()
        self._steps += 1
        if self._steps % self.cfs_interval == 0:
            self.cfs_stats.cfs_steps += 1
            return self._schedule_fair(preempt=True)
        if self.prefill_while_swapped and self.swapped and self.waiting:
            return self._schedule_fair(preempt=False)
        return super()._schedule()

    def _preempt(self, seq_group: SequenceGroup, blocks_to_swap_out: BlockMapping) -> PreemptionMode:
        """Overridden to recompute a victim when CPU swap space is full (upstream kills the engine)."""
        if self._would_swap(seq_group) and not self.block_manager.can_swap_out(seq_group):
            if self.cfs_stats.swap_space_full_fallbacks == 0:
                logger.warning("CPU swap space is full: preempting by recompute instead of swap "
                               "(counted as swap_space_full_fallbacks in the CFS stats line)")
            self.cfs_stats.swap_space_full_fallbacks += 1
            self.cfs_stats.preempted_by_recompute += 1
            self.num_cumulative_preemption += 1
            self._preempt_by_recompute(seq_group)
            return PreemptionMode.RECOMPUTE
        mode = super()._preempt(seq_group, blocks_to_swap_out)
        if mode == PreemptionMode.SWAP:
            self.cfs_stats.preempted_by_swap += 1
        else:
            self.cfs_stats.preempted_by_recompute += 1
        return mode

    def free_seq(self, seq: Sequence) -> None:
        """Overridden because vLLM 0.9.0 files a swapped-out request's block objects in the wrong pool."""
        swapped_out = blocks_on_cpu(self.block_manager, seq)
        super().free_seq(seq)
        return_to_gpu_pool(self.block_manager, swapped_out)

    # ------------------------------------------------------------------ the CFS step

    def _schedule_fair(self, preempt: bool) -> SchedulerOutputs:
        """One step that admits in vruntime order; with ``preempt`` it first evicts victims."""
        budget = SchedulingBudget(
            token_budget=self.scheduler_config.max_num_batched_tokens,
            max_num_seqs=self.scheduler_config.max_num_seqs,
        )
        for seq_group in self.running:
            budget.add_num_seqs(seq_group.request_id, seq_group.get_max_num_running_seqs())
        loras = self._running_loras()

        victims_swapped: List[SequenceGroup] = []
        victims_recomputed: List[SequenceGroup] = []
        victim_swap_out: BlockMapping = []
        if preempt:
            self._preempt_unfair(budget, victim_swap_out, victims_swapped, victims_recomputed)

        prefills = self._schedule_prefills(budget, loras, enable_chunking=False)
        running = SchedulerRunningOutputs.create_empty()
        swapped_in = SchedulerSwappedInOutputs.create_empty()
        if not prefills.seq_groups:
            running = self._schedule_running(budget, loras, enable_chunking=False)
            # vLLM's worker swaps in before it swaps out: a block freed by this step's swap-out
            # must not receive a swap-in in the same step, so swap-ins wait for the next step.
            if not (running.preempted or running.swapped_out or victim_swap_out):
                swapped_in = self._schedule_swapped(budget, loras)

        self.waiting.extendleft(running.preempted)
        self.waiting.extend(victims_recomputed)
        self.running.extend(s.seq_group for s in prefills.seq_groups)
        self.running.extend(running.decode_seq_groups_list)
        self.running.extend(s.seq_group for s in swapped_in.decode_seq_groups)
        self.swapped.extend(running.swapped_out)
        self.swapped.extend(victims_swapped)
        if preempt:
            self.swapped = deque(sorted(self.swapped, key=self.rank_key))

        if prefills.seq_groups:
            scheduled = list(prefills.seq_groups)
        else:
            scheduled = list(running.decode_seq_groups) + list(swapped_in.decode_seq_groups)
        return SchedulerOutputs(
            scheduled_seq_groups=scheduled,
            num_prefill_groups=len(prefills.seq_groups),
            num_batched_tokens=budget.num_batched_tokens + budget.num_cached_tokens,
            blocks_to_swap_in=swapped_in.blocks_to_swap_in,
            blocks_to_swap_out=victim_swap_out + list(running.blocks_to_swap_out),
            blocks_to_copy=list(running.blocks_to_copy) + swapped_in.blocks_to_copy,
            ignored_seq_groups=prefills.ignored_seq_groups + swapped_in.infeasible_seq_groups,
            num_lookahead_slots=running.num_lookahead_slots,
            running_queue_size=len(self.running),
            preempted=(len(running.preempted) + len(running.swapped_out)
                       + len(victims_swapped) + len(victims_recomputed)),
        )

    def _preempt_unfair(self, budget: SchedulingBudget, blocks_to_swap_out: BlockMapping,
                        victims_swapped: List[SequenceGroup],
                        victims_recomputed: List[SequenceGroup]) -> None:
        """Evicts the largest-vruntime running requests while a fairer request needs their room.

        Contenders (waiting and swapped requests) are visited smallest vruntime first. Each one
        claims free GPU blocks and a sequence slot (a waiting one also this step's prefill token
        budget, so that no request is evicted for a prefill that could not run now); when they do
        not suffice, running requests that yield to it (``_should_yield``) are chosen as victims,
        largest ``_eviction_key`` first. A contender that cannot fit even then ends the search,
        and the victims tentatively chosen for it keep running.
        """
        by_key = sorted(self.running, key=self._eviction_key)
        free_blocks = self.block_manager.get_num_free_gpu_blocks()
        watermark = self.block_manager.watermark_blocks
        usable_blocks = self.block_manager.num_total_gpu_blocks - watermark
        free_seqs = self.scheduler_config.max_num_seqs - budget.num_curr_seqs
        free_prefill_tokens = budget.remaining_token_budget()
        victims: List[SequenceGroup] = []

        for contender in sorted(itertools.chain(self.waiting, self.swapped), key=self.rank_key):
            blocks = self._gpu_blocks_to_admit(contender)
            if blocks > usable_blocks:
                continue  # can never fit; upstream's admission rejects it
            if contender.is_prefill():
                prompt_tokens = contender.first_seq.get_len()
                if prompt_tokens > self._get_prompt_limit(contender):
                    continue  # upstream's admission rejects it
                if prompt_tokens > free_prefill_tokens:
                    break
                free_prefill_tokens -= prompt_tokens
            seqs = contender.get_max_num_running_seqs()
            key = self.rank_key(contender)
            tentative: List[SequenceGroup] = []
            while ((free_blocks - blocks < watermark or free_seqs < seqs)
                   and by_key and self._should_yield(by_key[-1], contender, key)):
                victim = by_key.pop()
                tentative.append(victim)
                free_blocks += self._gpu_blocks_held(victim)
                free_seqs += victim.get_max_num_running_seqs()
            if free_blocks - blocks < watermark or free_seqs < seqs:
                by_key.extend(reversed(tentative))
                break
            victims.extend(tentative)
            free_blocks -= blocks
            free_seqs -= seqs

        self.running = deque(by_key)
        for victim in victims:
            budget.subtract_num_seqs(victim.request_id, victim.get_max_num_running_seqs())
            if self.use_async_output_proc:
                # Its last step's output may still be in flight; it may even finish there.
                self.output_proc_callback(request_id=victim.request_id)
                if victim.is_finished():
                    self._free_finished_seq_group(victim)
                    continue
            if self._preempt(victim, blocks_to_swap_out) == PreemptionMode.SWAP:
                victims_swapped.append(victim)
            else:
                victims_recomputed.append(victim)
        # Prefills must be admitted in the order the contenders were counted in: upstream puts
        # requests it preempts by recompute at the head of the queue, and admitted first they
        # would take the room counted for a fairer contender, a new arrival included.
        self.waiting = deque(sorted(self.waiting, key=self.rank_key))

    # ------------------------------------------------------------------ helpers

    def rank_key(self, seq_group: SequenceGroup):
        """The policy's rank of a request, smallest first."""
        return self.policy_key(request_state(seq_group))

    def _eviction_key(self, seq_group: SequenceGroup):
        """The order victims are taken in, the last first: the rank, unless a policy says otherwise."""
        return self.rank_key(seq_group)

    def _should_yield(self, running: SequenceGroup, contender: SequenceGroup, contender_key) -> bool:
        """A running request yields to a contender that ranks before it by a whole time slice."""
        return ahead_by_a_time_slice(self.rank_key(running), contender_key, contender.is_prefill(),
                                     self.min_granularity)

    def _would_swap(self, seq_group: SequenceGroup) -> bool:
        mode = self.user_specified_preemption_mode
        if mode is None:
            return seq_group.get_max_num_running_seqs() > 1
        return mode == "swap"

    def _gpu_blocks_held(self, seq_group: SequenceGroup) -> int:
        return sum(len(self.block_manager.get_block_table(seq))
                   for seq in seq_group.get_seqs(status=SequenceStatus.RUNNING))

    def _gpu_blocks_to_admit(self, seq_group: SequenceGroup) -> int:
        """Blocks a contender takes: its whole KV, plus room for the next token if it decodes."""
        block_size = self.cache_config.block_size
        if seq_group.is_prefill():
            return sum(math.ceil(seq.get_len() / block_size)
                       for seq in seq_group.get_seqs(status=SequenceStatus.WAITING))
        return sum(math.ceil((seq.get_len() + 1) / block_size)
                   for seq in seq_group.get_seqs(status=SequenceStatus.SWAPPED))

    def _running_loras(self) -> Optional[Set[int]]:
        if not self.lora_enabled:
            return None
        return {g.lora_int_id for g in self.running if g.lora_int_id > 0}

    def _maybe_log_stats(self) -> None:
        now = time.monotonic()
        if now - self._stats_logged_at < STATS_LOG_PERIOD_S or self.cfs_stats == self._stats_logged:
            return
        self._stats_logged_at = now
        self._stats_logged = CFSStats(**asdict(self.cfs_stats))
        logger.info("CFS stats: %s", ", ".join(f"{k}={v}" for k, v in asdict(self.cfs_stats).items()))
