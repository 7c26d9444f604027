"""First token first, then first come first served: a fair scheduler that keeps FCFS's throughput.

The assignment's CFS evicts the requests that generated the most tokens, which with fixed output
lengths are the ones closest to finishing, and brings back whoever has the fewest tokens: every
request is swapped in and out again and again, so TTFT falls but TPOT, inter-token gaps and
throughput pay for it (docs/policies.md). This policy keeps what CFS gets right, that no new arrival
waits behind a full GPU for its first token, and nothing else:

* A request that has no token yet outranks every request that has one
  (``vllm_cfs.policy.first_token_key``); it takes the room of the running request that arrived
  last among those that absorb a stall, which is swapped out (``eviction_key``): under ignore_eos,
  those with much less to go than the longest (the longest's stall would delay the last finish and
  cost throughput: usually the previous newcomer yields, right after its first token); where
  replies end at EOS, those that have streamed many tokens already (a stall spread over them adds
  little to their time per output token, and nobody knows which reply finishes last).
* Requests that have their first token run to completion. A swapped request never evicts a
  running one; it comes back when room frees up, the one whose time per output token the stall
  hurts most first (``stall_cost_key``: the longest stalled, short replies before long ones).
  Each swapped stream stalls once, not at every CFS step, and nothing thrashes.

max_tokens is a reply's length only under ignore_eos; otherwise it is a cap, and the tokens a
request has left are a guess from the replies this server has finished so far
(``vllm_cfs.policy.tokens_left``), the only length a real scheduler can know of.

It reuses CFSScheduler's machinery (victim search, swap-space fallback, counters, the
abort-while-swapped guard); only the ranking, who yields, and when to act differ.
"""

from __future__ import annotations

import itertools
from collections import deque

from vllm.core.scheduler import SchedulerOutputs
from vllm.sequence import SequenceGroup, SequenceStatus

from vllm_cfs.policy import (FinishedReplies, eviction_key, first_token_key, room_frees_within, stall_cost_key,
                             tokens_left, yields_to_new_arrivals_only)
from vllm_cfs.settings import read_patience_tokens
from vllm_cfs.v0.adapter import request_state, vruntime
from vllm_cfs.v0.scheduler import CFSScheduler


class FairScheduler(CFSScheduler):
    """vLLM V0 scheduler: first token first, then first come first served (ignores CFS_INTERVAL)."""

    policy_key = staticmethod(first_token_key)

    def __init__(self, *args, **kwargs) -> None:
        # Read before the parent logs describe(): a newcomer waits this many decode steps for a
        # finishing request's room before it evicts one (FAIR_PATIENCE_TOKENS).
        self.patience_tokens = read_patience_tokens()
        # The lengths of the replies finished so far, and each live request's expected tokens
        # left (exact under ignore_eos), refreshed every step: max_tokens is only a cap.
        self.finished_replies = FinishedReplies()
        self._tokens_left: dict[str, float] = {}
        self._longest_left = 0.0
        # Request id -> the step a newcomer first held back at the head of the queue: patience is
        # a budget per newcomer, not per finishing request (one that was to finish may be
        # preempted instead, and the wait would start over).
        self._held_back_since: dict[str, int] = {}
        # Request id -> the first step it was seen running with its first token (swap-in order).
        self._first_token_step: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    @property
    def preempts(self) -> bool:
        return True

    def describe(self) -> str:
        return ("Fair scheduler: first token first (a new arrival takes the room of the latest "
                f"arrival, after waiting up to {self.patience_tokens} steps for a finishing request's), "
                "then first come first served")

    def _scheduled_step(self) -> SchedulerOutputs:
        """Overridden: act whenever a request waits to be admitted, else upstream's step."""
        # Upstream's steps admit from the head of the waiting queue, preempt the tail of the
        # running queue when decodes need blocks, and swap in from the head of the swapped queue:
        # newcomers first, the victim out, and back in the stream that stalled worst.
        self._steps += 1
        self._tokens_left = {g.request_id: tokens_left(self.request_state(g), self.finished_replies)
                             for g in itertools.chain(self.waiting, self.running, self.swapped)}
        self._longest_left = max(self._tokens_left.values(), default=0)
        self._note_first_tokens()
        self.waiting = deque(sorted(self.waiting, key=self.rank_key))
        self.running = deque(sorted(self.running, key=self._eviction_key))
        self.swapped = deque(sorted(self.swapped, key=self._swap_in_key))
        if not self.waiting:
            return super(CFSScheduler, self)._schedule()
        if self._keeps_patience(self.waiting[0]):
            return self._schedule_fair(preempt=False)
        self.cfs_stats.cfs_steps += 1
        return self._schedule_fair(preempt=True)

    def request_state(self, seq_group: SequenceGroup):
        """What the policy knows of a request (the lab's oracle knows more: vllm_cfs.lab.oracle)."""
        return request_state(seq_group)

    def _note_first_tokens(self) -> None:
        """Remembers the step each live request was first seen with a token (steps, not clock
        time: the replay and the live server count steps alike)."""
        known = self._first_token_step
        self._first_token_step = {g.request_id: known.get(g.request_id, self._steps)
                                  for g in itertools.chain(self.running, self.swapped) if vruntime(g) >= 1}

    def _swap_in_key(self, seq_group: SequenceGroup):
        """The swapped queue's order: the stream whose TPOT the stall hurts most first."""
        stalled = self._steps - self._first_token_step.get(seq_group.request_id, self._steps)
        return stall_cost_key(self.request_state(seq_group), self._left(seq_group), stalled)

    def _keeps_patience(self, newcomer: SequenceGroup) -> bool:
        """Whether the head newcomer waits this step for a finishing request's room (at most
        FAIR_PATIENCE_TOKENS steps in all) instead of evicting."""
        waiting = {g.request_id for g in self.waiting}
        self._held_back_since = {rid: step for rid, step in self._held_back_since.items() if rid in waiting}
        since = self._held_back_since.get(newcomer.request_id, self._steps)
        if self._steps - since >= self.patience_tokens or not self._room_frees_soon(newcomer):
            return False
        self._held_back_since[newcomer.request_id] = since
        return True

    def _room_frees_soon(self, newcomer: SequenceGroup) -> bool:
        running = [(self._left(g), self._gpu_blocks_held(g), g.get_max_num_running_seqs())
                   for g in self.running]
        needed = (self._gpu_blocks_to_admit(newcomer) + self.block_manager.watermark_blocks,
                  newcomer.get_max_num_running_seqs())
        free = (self.block_manager.get_num_free_gpu_blocks(),
                self.scheduler_config.max_num_seqs - sum(seqs for _, _, seqs in running))
        return room_frees_within(self.patience_tokens, needed, free, running)

    def _eviction_key(self, seq_group: SequenceGroup):
        """Overridden: the latest arrival yields, unless it is the one whose stall ends the workload later."""
        return eviction_key(self.request_state(seq_group), self._left(seq_group), self._longest_left)

    def _left(self, seq_group: SequenceGroup) -> float:
        """Its expected tokens left, as this step began (a request that joined since: worked out now)."""
        left = self._tokens_left.get(seq_group.request_id)
        return tokens_left(self.request_state(seq_group), self.finished_replies) if left is None else left

    def _free_finished_seq_group(self, seq_group: SequenceGroup) -> None:
        """Overridden to note how long each finished reply was (ended at EOS or its cap)."""
        if seq_group.is_finished() and not seq_group.sampling_params.ignore_eos:
            ended = [seq.get_output_len() for seq in seq_group.get_seqs()
                     if seq.status in (SequenceStatus.FINISHED_STOPPED, SequenceStatus.FINISHED_LENGTH_CAPPED)]
            if ended:
                self.finished_replies.record(max(ended))
        super()._free_finished_seq_group(seq_group)

    def _should_yield(self, running: SequenceGroup, contender: SequenceGroup, contender_key) -> bool:
        """Overridden: only a request waiting for admission takes a running request's room."""
        return yields_to_new_arrivals_only(self.rank_key(running), contender_key, contender.is_prefill())
