"""CPU time of one ``schedule()`` call: vLLM's own FCFS vs CFSScheduler, side by side on one trace.

The FCFS side is unmodified upstream, ``vllm.core.scheduler.Scheduler``. Both schedulers are
driven through the same trace (every request at step 0, long outputs) and their measured steps
interleaved (``vllm_cfs.lab.schedule_cost``). Printed per request count: the median and the mean
(which includes the rarer CFS steps and their swap bookkeeping) over the measured steps, and the
median per scheduled sequence with the mean batch size, since the two policies keep batches of
different sizes; then the same over the steps that swapped no block. ``--profile`` adds, from a
separate profiled run, the share of each scheduler's time in the block-id lookup of its swap
mappings and, for CFS, the functions with the most time of their own.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[64, 256, 1024],
                        help="requests in the system (default: 64 256 1024)")
    parser.add_argument("--interval", type=int, default=10, help="CFS_INTERVAL for CFS (default 10)")
    parser.add_argument("--warmup", type=int, default=40, help="unmeasured steps first (default 40)")
    parser.add_argument("--steps", type=int, default=200, help="measured steps (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-num-seqs", type=int, default=256,
                        help="vLLM's max_num_seqs for both (default 256); e.g. 48 holds both policies "
                             "to the same batch, which KV room alone does not (CFS's rotation keeps "
                             "sequences shorter, so more fit)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where the time goes (a separate profiled run; its "
                             "timings are not the table's)")
    args = parser.parse_args(argv)
    if args.interval < 1 or args.steps < 1 or args.warmup < 0 or min(args.requests) < 1 or args.max_num_seqs < 1:
        parser.error("--interval, --steps, --requests and --max-num-seqs must be positive, --warmup >= 0")

    os.environ["CFS_INTERVAL"] = str(args.interval)
    from vllm.core.scheduler import Scheduler

    from vllm_cfs.lab.schedule_cost import burst_pools, burst_trace, time_side_by_side
    from vllm_cfs.v0.scheduler import CFSScheduler

    print(f"schedule() CPU time, median / mean over {args.steps} steps after {args.warmup} "
          f"warm-up steps; CFS_INTERVAL={args.interval}; max_num_seqs={args.max_num_seqs}; fcfs = vLLM's own Scheduler, "
          f"steps interleaved with cfs; no GPU involved")
    print(f"{'requests':>8} {'fcfs med us':>12} {'cfs med us':>11} {'ratio':>6} "
          f"{'fcfs mean us':>13} {'cfs mean us':>12} {'ratio':>6} "
          f"{'fcfs us/seq':>12} {'cfs us/seq':>11} {'ratio':>6} {'fcfs batch':>11} {'cfs batch':>10}")
    ratios, per_seq = {}, {}
    for n in args.requests:
        trace, pools = burst_trace(n, args.seed), burst_pools(n, args.max_num_seqs)
        fcfs, cfs = time_side_by_side([Scheduler, CFSScheduler], trace, pools,
                                      args.warmup, args.steps)
        ratios[n] = cfs.median_us / fcfs.median_us
        per_seq[n] = (cfs.median_us_per_seq / fcfs.median_us_per_seq, fcfs.mean_batch, cfs.mean_batch)
        print(f"{n:>8} {fcfs.median_us:>12.1f} {cfs.median_us:>11.1f} {ratios[n]:>6.2f} "
              f"{fcfs.mean_us:>13.1f} {cfs.mean_us:>12.1f} {cfs.mean_us / fcfs.mean_us:>6.2f} "
              f"{fcfs.median_us_per_seq:>12.1f} {cfs.median_us_per_seq:>11.1f} "
              f"{cfs.median_us_per_seq / fcfs.median_us_per_seq:>6.2f} "
              f"{fcfs.mean_batch:>11.1f} {cfs.mean_batch:>10.1f}")
        print(f"{'':>8} steps that swapped nothing: fcfs {fcfs.no_swap_steps} steps, "
              f"{fcfs.no_swap_median_us_per_seq:.1f} us/seq, batch {fcfs.no_swap_mean_batch:.1f}; "
              f"cfs {cfs.no_swap_steps} steps, {cfs.no_swap_median_us_per_seq:.1f} us/seq, "
              f"batch {cfs.no_swap_mean_batch:.1f}")
        if args.profile:
            fcfs, cfs = time_side_by_side([Scheduler, CFSScheduler], trace, pools,
                                          args.warmup, args.steps, profile=True)
            print(f"{'':>8} share of time in the swap block-id lookup (profiled run): "
                  f"fcfs {fcfs.lookup_share:.0%}, cfs {cfs.lookup_share:.0%}")
            print(f"{'':>8} cfs, most time of their own: " + "; ".join(
                f"{share:.0%} {name}" for share, name in cfs.top_own_time))
    if 256 in ratios:
        capped = "" if args.max_num_seqs == 256 else f", max_num_seqs {args.max_num_seqs}"
        print(f"cfs/fcfs schedule() time ratio at 256 requests{capped}: {ratios[256]:.2f}")
        ratio, fcfs_batch, cfs_batch = per_seq[256]
        print(f"cfs/fcfs schedule() time per scheduled sequence at 256 requests{capped}: {ratio:.2f} "
              f"(mean batch: fcfs {fcfs_batch:.1f}, cfs {cfs_batch:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
