"""Study of two CFSScheduler design choices on one set of traces, in scheduling steps.

1. Letting new arrivals prefill while victims are swapped (ours) vs upstream's rule of no
   prefill while anything is swapped ("held").
2. Minimum granularity: how far ahead (tokens) a running request must be before it yields its
   GPU blocks to a swapped one; 0 is the literal assignment rule.

The scheduler is vLLM's real V0 scheduler driven by ``vllm_cfs.lab.trace``: one token per
scheduled sequence per step, no GPU. TTFT and TPOT are therefore in steps, not seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics

from vllm_cfs.lab.trace import Pools, TraceDriver, make_scheduler, random_trace


def run(scheduler_cls, seeds, args):
    """One variant over the seeds' traces: TTFT and TPOT in steps, blocks swapped out, steps."""
    ttft, tpot, swapped_out, steps = [], [], 0, 0
    for seed in seeds:
        rng = random.Random(seed)
        trace = random_trace(rng, args.requests, max_arrival_step=args.arrival_window,
                             prompt_lens=(50, 400), max_tokens=(50, 400))
        pools = Pools(num_gpu_blocks=args.gpu_blocks, num_cpu_blocks=args.cpu_blocks)
        driver = TraceDriver(make_scheduler(scheduler_cls, pools), trace)
        outcomes = driver.run()
        ttft += [o.ttft_steps for o in outcomes.values()]
        tpot += [(o.finish_step - o.first_token_step) / (o.output_tokens - 1)
                 for o in outcomes.values() if o.output_tokens > 1]
        swapped_out += driver.scheduler.cfs_stats.blocks_swapped_out
        steps += driver.step
    ttft.sort()
    return {
        "mean TTFT": statistics.mean(ttft),
        "p99 TTFT": ttft[round(0.99 * (len(ttft) - 1))],
        "mean TPOT": statistics.mean(tpot),
        "blocks out/trace": swapped_out / len(seeds),
        "steps/trace": steps / len(seeds),
    }


def main(argv=None) -> int:
    """benchmarks/cfs_admission.py: one table line per (admission, granularity) variant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5, help="traces per variant (default 5)")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--arrival-window", type=int, default=300,
                        help="arrivals are uniform over this many steps (default 300)")
    parser.add_argument("--gpu-blocks", type=int, default=200)
    parser.add_argument("--cpu-blocks", type=int, default=4000)
    args = parser.parse_args(argv)
    if min(args.interval, args.seeds, args.requests, args.gpu_blocks, args.cpu_blocks) < 1:
        parser.error("all numbers must be positive")

    os.environ["CFS_INTERVAL"] = str(args.interval)
    from vllm_cfs.lab.variants import CFSHeldBySwapped
    from vllm_cfs.v0.scheduler import CFSScheduler

    variants = []
    for granularity in (0, args.interval, 2 * args.interval, 4 * args.interval):
        variants.append(("held", CFSHeldBySwapped, granularity))
        variants.append(("ours", CFSScheduler, granularity))
    print(f"{args.seeds} traces x {args.requests} requests, CFS_INTERVAL={args.interval}, "
          f"{args.gpu_blocks} GPU / {args.cpu_blocks} CPU blocks; times in scheduling steps")
    header = None
    for admission, cls, granularity in variants:
        os.environ["CFS_MIN_GRANULARITY"] = str(granularity)
        result = run(cls, range(args.seeds), args)
        if header is None:
            header = list(result)
            print(f"{'admission':<10}{'granularity':>12}" + "".join(f"{h:>17}" for h in header))
        print(f"{admission:<10}{granularity:>12}" + "".join(f"{result[h]:>17.2f}" for h in header))
    return 0

