"""CPU time of one ``schedule()`` call, for scheduler classes driven side by side on one trace.

Every request arrives at step 0 with a long output, so the system holds all of them for the
whole measurement: some running, the rest waiting or swapped. Each scheduler gets its own
``TraceDriver`` on the same trace; after a warm-up, the drivers take their measured steps in
turn (one step each, the order alternating from step to step), so that whatever else runs on
the machine weighs on all of them alike. Each ``schedule()`` is timed with the process CPU
clock (``TraceDriver.last_schedule_cpu_ns``).

A profiled run also reports the share of ``schedule()`` time spent looking up physical block
ids for the swap mappings: the block manager's calls to its allocator's
``get_physical_block_id``, whichever class implements it (vLLM's sorts the device's whole block
set on every call; ``vllm_cfs.v0.block_lookup`` reads a table), and the functions with the most
time of their own inside ``schedule()``.
"""

from __future__ import annotations

import cProfile
import pstats
import random
import statistics
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Type

from vllm.core.scheduler import Scheduler

from vllm_cfs.lab.trace import Pools, TraceDriver, TraceRequest, make_scheduler

LOOKUP_NAME = "get_physical_block_id"
LOOKUP_CALLER = "core/block_manager.py"  # SelfAttnBlockSpaceManager.swap_in / swap_out


@dataclass
class Timing:
    median_us: float
    mean_us: float
    # Per step, CPU time over the sequences it scheduled: the policies keep batches of
    # different sizes, and a larger batch costs more to schedule.
    median_us_per_seq: float
    mean_batch: float
    # The same over the steps that swapped no block, whose cost is the batch's alone.
    no_swap_steps: int
    no_swap_median_us_per_seq: float
    no_swap_mean_batch: float
    # Profiled runs only: the share of schedule() time in the swap block-id lookup, and the
    # functions with the most time of their own, as (share of schedule() time, name).
    lookup_share: Optional[float] = None
    top_own_time: Optional[List[Tuple[float, str]]] = None


def burst_trace(num_requests: int, seed: int) -> List[TraceRequest]:
    """All requests at step 0, prompts of 32-256 tokens, outputs longer than any measurement."""
    rng = random.Random(seed)
    return [TraceRequest(f"r{i}", 0, prompt_len=rng.randint(32, 256), max_tokens=100_000)
            for i in range(num_requests)]


def burst_pools(num_requests: int, max_num_seqs: int = 256) -> Pools:
    """GPU room for about half of the prompts, so that preemption and swapping happen. A small
    ``max_num_seqs`` caps both policies' batches alike, whatever their KV blocks would hold."""
    return Pools(num_gpu_blocks=max(16, num_requests * 8 // 2), num_cpu_blocks=num_requests * 64,
                 max_num_seqs=max_num_seqs, max_num_batched_tokens=4096)


def _schedule_time(stats: dict) -> float:
    return sum(cumtime for (path, _, name), (_, _, _, cumtime, _) in stats.items()
               if path.endswith("core/scheduler.py") and name == "schedule")


def lookup_share(profile: cProfile.Profile) -> float:
    """Time in the block manager's block-id lookups over the time in ``Scheduler.schedule``."""
    stats = pstats.Stats(profile).stats
    lookup = sum(cumtime
                 for (_, _, name), (_, _, _, _, callers) in stats.items() if name == LOOKUP_NAME
                 for (path, _, _), (_, _, _, cumtime) in callers.items()
                 if path.endswith(LOOKUP_CALLER))
    total = _schedule_time(stats)
    return lookup / total if total else 0.0


def top_own_time(profile: cProfile.Profile, count: int) -> List[Tuple[float, str]]:
    """The ``count`` functions with the most time of their own, as shares of schedule() time."""
    stats = pstats.Stats(profile).stats
    total = _schedule_time(stats) or 1.0
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return [(own / total, f"{path.rsplit('site-packages/', 1)[-1]}:{line} {name}")
            for (path, line, name), (_, _, own, _, _) in ranked]


def time_side_by_side(scheduler_classes: Sequence[Type[Scheduler]], trace: Sequence[TraceRequest],
                      pools: Pools, warmup: int, steps: int, profile: bool = False,
                      top: int = 5) -> List[Timing]:
    """One ``Timing`` per class, their measured steps interleaved (see the module docstring)."""
    drivers = [TraceDriver(make_scheduler(cls, pools), trace) for cls in scheduler_classes]
    for driver in drivers:
        for _ in range(warmup):
            driver.run_step()
    profilers = [cProfile.Profile() if profile else None for _ in drivers]
    for driver, profiler in zip(drivers, profilers):
        driver.schedule_profiler = profiler
    samples: List[List[float]] = [[] for _ in drivers]
    batches: List[List[int]] = [[] for _ in drivers]
    swapped: List[List[bool]] = [[] for _ in drivers]
    order = list(range(len(drivers)))
    for _ in range(steps):
        for i in order:
            driver = drivers[i]
            outputs = driver.run_step()
            samples[i].append(driver.last_schedule_cpu_ns / 1000)
            batches[i].append(len(outputs.scheduled_seq_groups))
            swapped[i].append(bool(outputs.blocks_to_swap_out or outputs.blocks_to_swap_in))
        order.reverse()
    timings = []
    for micros, batch, swaps, profiler in zip(samples, batches, swapped, profilers):
        per_seq = [us / max(1, n) for us, n in zip(micros, batch)]
        calm = [(us, n) for us, n, swap in zip(per_seq, batch, swaps) if not swap] or [(0.0, 0)]
        timings.append(Timing(
            statistics.median(micros), statistics.mean(micros), statistics.median(per_seq),
            statistics.mean(batch), len(swaps) - sum(swaps),
            statistics.median(us for us, _ in calm), statistics.mean(n for _, n in calm),
            lookup_share(profiler) if profiler else None,
            top_own_time(profiler, top) if profiler else None))
    return timings
