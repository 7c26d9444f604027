"""Scheduling policies as plain functions over request state: how requests rank, and who yields.

Kept apart from vLLM's V0 plumbing (vllm_cfs.scheduler, vllm_cfs.fair) so that a policy can move
to another engine: a function here reads a request's priority, arrival time and generated tokens,
and nothing else. A smaller key runs first; a running request with a larger key is a victim.
"""

from __future__ import annotations

from typing import Sequence, Tuple

from vllm.sequence import SequenceGroup

RankKey = Tuple[int, int, float]


def vruntime(seq_group: SequenceGroup) -> int:
    """Tokens generated so far: the CFS notion of how much GPU time a request has had."""
    return max(seq.get_output_len() for seq in seq_group.seqs)


def cfs_key(seq_group: SequenceGroup) -> RankKey:
    """The assignment's CFS: user priority first, then fewest tokens generated, then earliest arrival."""
    return seq_group.priority, vruntime(seq_group), seq_group.arrival_time


def first_token_key(seq_group: SequenceGroup) -> RankKey:
    """First token first, then first come first served: a request with no token yet outranks every
    request that has one; among those, the earliest arrival runs first."""
    return seq_group.priority, min(vruntime(seq_group), 1), seq_group.arrival_time


# A victim stalls until room frees, seconds under a burst (about 130 decode steps on ShareGPT at 5
# req/s): a request with at least this many tokens less to go than the longest one absorbs that
# without ending later than the whole workload would anyway.
STALL_SLACK_TOKENS = 128


def eviction_key(seq_group: SequenceGroup, longest_remaining: int, slack_tokens: int = STALL_SLACK_TOKENS) -> tuple:
    """First token first's eviction order, the victim last: the latest arrival among the requests
    whose stall cannot delay the last finish (``slack_tokens`` fewer tokens to go than the
    longest request), and only when there is none, the latest arrival of the others."""
    has_slack = remaining_tokens(seq_group) <= longest_remaining - slack_tokens
    return seq_group.priority, min(vruntime(seq_group), 1), has_slack, seq_group.arrival_time


def stall_cost_key(seq_group: SequenceGroup, steps_since_first_token: int) -> tuple:
    """First token first's swap-in order, smallest first: the swapped request whose time per
    output token a further step of waiting hurts most. Were it to run from now on, its TPOT in
    steps would be (steps since its first token + tokens left) / (output tokens - 1): the longest
    stalled first, and a short reply before a long one stalled as long."""
    outputs = seq_group.sampling_params.max_tokens
    projected_tpot = (steps_since_first_token + remaining_tokens(seq_group)) / max(1, outputs - 1)
    return seq_group.priority, -projected_tpot, seq_group.arrival_time


def ahead_by_a_time_slice(running_key: RankKey, contender_key: RankKey, contender_is_new: bool,
                          min_granularity: int) -> bool:
    """CFS: a running request yields to a new arrival that ranks before it, and to a swapped one
    only when it is at least ``min_granularity`` tokens ahead (no two groups trading the GPU)."""
    if running_key <= contender_key:
        return False
    if contender_is_new or running_key[0] != contender_key[0]:
        return True
    return running_key[1] - contender_key[1] >= min_granularity


def yields_to_new_arrivals_only(running_key: RankKey, contender_key: RankKey, contender_is_new: bool) -> bool:
    """First token first: only a request still waiting for its first token takes a running
    request's room; a swapped request waits for free room, so no stream is evicted twice for the
    same newcomer and nothing thrashes."""
    return contender_is_new and running_key > contender_key


def remaining_tokens(seq_group: SequenceGroup) -> int:
    """Tokens left before max_tokens: all a request can still ask of the GPU (EOS may end it sooner)."""
    return seq_group.sampling_params.max_tokens - vruntime(seq_group)


def room_frees_within(patience_tokens: int, needed: Tuple[int, int], free: Tuple[int, int],
                      running: Sequence[Tuple[int, int, int]]) -> bool:
    """Whether requests finishing within ``patience_tokens`` steps free the room a newcomer needs.

    Room is (GPU blocks, sequence slots); ``running`` holds (remaining tokens, blocks, slots) per
    running request. Waiting that long costs the newcomer a few decode steps of TTFT and saves a
    swap-out and a swap-in of a victim.
    """
    finishing = [(blocks, seqs) for left, blocks, seqs in running if left <= patience_tokens]
    return (free[0] + sum(b for b, _ in finishing) >= needed[0]
            and free[1] + sum(s for _, s in finishing) >= needed[1])
