"""Who yields: whether a running request gives its room to a contender, and whether room frees soon."""

from __future__ import annotations

from typing import Sequence, Tuple

from vllm_cfs.policy.ranking import RankKey


def ahead_by_a_time_slice(running_key: RankKey, contender_key: RankKey, contender_is_new: bool,
                          min_granularity: int) -> bool:
    """CFS: a running request yields to a new arrival that ranks before it, and to a preempted one
    only when it is at least ``min_granularity`` tokens ahead (no two groups trading the GPU)."""
    if running_key <= contender_key:
        return False
    if contender_is_new or running_key[0] != contender_key[0]:
        return True
    return running_key[1] - contender_key[1] >= min_granularity


def yields_to_new_arrivals_only(running_key: RankKey, contender_key: RankKey, contender_is_new: bool) -> bool:
    """First token first: only a request still waiting for its first token takes a running
    request's room; a preempted request waits for free room, so no stream is evicted twice for the
    same newcomer and nothing thrashes."""
    return contender_is_new and running_key > contender_key


def room_frees_within(patience_tokens: int, needed: Tuple[int, int], free: Tuple[int, int],
                      running: Sequence[Tuple[int, int, int]]) -> bool:
    """Whether requests finishing within ``patience_tokens`` steps free the room a newcomer needs.

    Room is (GPU blocks, sequence slots); ``running`` holds (remaining tokens, blocks, slots) per
    running request. Waiting that long costs the newcomer a few decode steps of TTFT and saves a
    preemption (and a swap-out and swap-in, or a recompute) of a victim.
    """
    finishing = [(blocks, seqs) for left, blocks, seqs in running if left <= patience_tokens]
    return (free[0] + sum(b for b, _ in finishing) >= needed[0]
            and free[1] + sum(s for _, s in finishing) >= needed[1])
