"""KV growth where a preempted request's blocks come back a step late: the victims it takes, the
headroom an admission must leave.

Under vLLM V1's async scheduling with a KV connector (CPU offloading), a preempted request's
blocks return to the free pool only once its in-flight step is done. A running request that finds
no free block this step can then be helped only by preempting a request that needs a block this
step (its need goes with it); vLLM's own scheduler preempts from the tail of the running list until
the need is met, and with every freed block a step late that is the whole list. Blocks freed now
do help the next step, so a shortfall one step ahead is met by victims from the tail.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence


@dataclasses.dataclass(frozen=True, slots=True)
class Growth:
    """A running request's KV blocks: those it holds, and those it must add this step and by the next."""

    held: int
    this_step: int
    by_next_step: int  # this step's blocks and the next decode's


def growth_victims(running: Sequence[Growth], free_now: int, returning: int) -> list[int]:
    """Indices into ``running`` (head first, the tail the victim end) of the requests to preempt so
    that this step's growth and the next one's find free blocks, ``returning`` of them freed a step
    late. This step's shortfall is met by the needy alone, tail first (at most one victim per
    missing block); the next step's by any request, tail first."""
    need_now = sum(g.this_step for g in running)
    need_next = sum(g.by_next_step for g in running)
    victims: list[int] = []
    taken: set[int] = set()

    def take(i: int) -> None:
        nonlocal need_now, need_next, returning
        victims.append(i)
        taken.add(i)
        need_now -= running[i].this_step
        need_next -= running[i].by_next_step
        returning += running[i].held

    for i in reversed(range(len(running))):
        if need_now <= free_now:
            break
        if running[i].this_step > 0:
            take(i)
    for i in reversed(range(len(running))):
        if free_now + returning >= need_next:
            break
        if i not in taken:
            take(i)
    return victims


def admission_headroom(running: Sequence[Growth], returning: int) -> int:
    """Free blocks an admission must leave so that the next step's decodes find theirs: the running
    requests' growth past this step and the newcomer's own first decode, less the blocks returning
    by then. Admitted into the last free blocks, a newcomer leaves the next step a shortfall that only
    preemptions can meet."""
    growth = sum(g.by_next_step - g.this_step for g in running) + 1
    return max(0, growth - returning)
