"""CPU time of one ``schedule()`` call: vLLM's FCFS vs CFSScheduler, side by side on one trace.

Every request arrives at step 0 with a long output, so the system holds all of them for the
whole measurement: some running, the rest waiting or swapped. After a warm-up, each policy's
``schedule()`` is timed with the process CPU clock. Printed per request count: the median and
the mean (which includes the rarer CFS steps and their swap bookkeeping) over the measured
steps, and the median per scheduled sequence with the mean batch size, since the two policies
keep batches of different sizes. ``--profile`` also says how much of each policy's time goes to
vLLM's block-id lookup during swaps (``NaiveBlockAllocator.get_physical_block_id``, which sorts
the whole block pool on every call), the cost that grows with the swapping CFS does.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
from dataclasses import dataclass

from vllm_cfs.lab.trace import Pools, TraceDriver, TraceRequest, make_scheduler


@dataclass
class Timing:
    median_us: float
    mean_us: float
    # Per step, CPU time over the sequences it scheduled: the policies keep batches of
    # different sizes, and a larger batch costs more to schedule.
    median_us_per_seq: float
    mean_batch: float
    # Share of the measured steps' time in vLLM's swap block-id lookup (--profile only).
    lookup_share: float | None = None


LOOKUP = ("naive_block.py", "get_physical_block_id")


def lookup_share(profile: cProfile.Profile) -> float:
    """Cumulative time in the block-id lookup over the time in ``Scheduler.schedule``."""
    stats = pstats.Stats(profile).stats
    lookup = sum(cumtime for (path, _, name), (_, _, _, cumtime, _) in stats.items()
                 if path.endswith(LOOKUP[0]) and name == LOOKUP[1])
    total = sum(cumtime for (path, _, name), (_, _, _, cumtime, _) in stats.items()
                if path.endswith("core/scheduler.py") and name == "schedule")
    return lookup / total if total else 0.0


def build_trace(num_requests: int, seed: int) -> list[TraceRequest]:
    rng = random.Random(seed)
    return [TraceRequest(f"r{i}", 0, prompt_len=rng.randint(32, 256), max_tokens=100_000)
            for i in range(num_requests)]


def time_policy(scheduler_cls, trace, pools: Pools, warmup: int, steps: int,
                profile: bool = False) -> Timing:
    driver = TraceDriver(make_scheduler(scheduler_cls, pools), trace)
    for _ in range(warmup):
        driver.run_step()
    samples, per_seq, batch = [], [], []
    profiler = cProfile.Profile() if profile else None
    for _ in range(steps):
        outputs = profiler.runcall(driver.run_step) if profiler else driver.run_step()
        micros = driver.last_schedule_cpu_ns / 1000
        samples.append(micros)
        batch.append(len(outputs.scheduled_seq_groups))
        per_seq.append(micros / max(1, batch[-1]))
    return Timing(statistics.median(samples), statistics.mean(samples), statistics.median(per_seq),
                  statistics.mean(batch), lookup_share(profiler) if profiler else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[64, 256, 1024],
                        help="requests in the system (default: 64 256 1024)")
    parser.add_argument("--interval", type=int, default=10, help="CFS_INTERVAL for CFS (default 10)")
    parser.add_argument("--warmup", type=int, default=40, help="unmeasured steps first (default 40)")
    parser.add_argument("--steps", type=int, default=200, help="measured steps (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="also print the share of time in vLLM's swap block-id lookup "
                             "(a separate profiled run; its timings are not the table's)")
    args = parser.parse_args(argv)
    if args.interval < 1 or args.steps < 1 or args.warmup < 0 or min(args.requests) < 1:
        parser.error("--interval, --steps and --requests must be positive, --warmup >= 0")

    os.environ["CFS_INTERVAL"] = str(args.interval)
    from vllm.core.scheduler import Scheduler

    from vllm_cfs.scheduler import CFSScheduler

    print(f"schedule() CPU time, median / mean over {args.steps} steps after {args.warmup} "
          f"warm-up steps; CFS_INTERVAL={args.interval}; no GPU involved")
    print(f"{'requests':>8} {'fcfs med us':>12} {'cfs med us':>11} {'ratio':>6} "
          f"{'fcfs mean us':>13} {'cfs mean us':>12} {'ratio':>6} "
          f"{'fcfs us/seq':>12} {'cfs us/seq':>11} {'ratio':>6} {'fcfs batch':>11} {'cfs batch':>10}")
    ratios = {}
    for n in args.requests:
        trace = build_trace(n, args.seed)
        # GPU room for about half of the prompts, so that preemption and swapping happen.
        pools = Pools(num_gpu_blocks=max(16, n * 8 // 2), num_cpu_blocks=n * 64,
                      max_num_seqs=256, max_num_batched_tokens=4096)
        fcfs = time_policy(Scheduler, trace, pools, args.warmup, args.steps)
        cfs = time_policy(CFSScheduler, trace, pools, args.warmup, args.steps)
        ratios[n] = cfs.median_us / fcfs.median_us
        print(f"{n:>8} {fcfs.median_us:>12.1f} {cfs.median_us:>11.1f} {ratios[n]:>6.2f} "
              f"{fcfs.mean_us:>13.1f} {cfs.mean_us:>12.1f} {cfs.mean_us / fcfs.mean_us:>6.2f} "
              f"{fcfs.median_us_per_seq:>12.1f} {cfs.median_us_per_seq:>11.1f} "
              f"{cfs.median_us_per_seq / fcfs.median_us_per_seq:>6.2f} "
              f"{fcfs.mean_batch:>11.1f} {cfs.mean_batch:>10.1f}")
        if args.profile:
            shares = [time_policy(cls, trace, pools, args.warmup, args.steps, profile=True).lookup_share
                      for cls in (Scheduler, CFSScheduler)]
            print(f"{'':>8} share of time in vLLM's {LOOKUP[1]} (profiled run): "
                  f"fcfs {shares[0]:.0%}, cfs {shares[1]:.0%}")
    if 256 in ratios:
        print(f"cfs/fcfs schedule() time ratio at 256 requests: {ratios[256]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
