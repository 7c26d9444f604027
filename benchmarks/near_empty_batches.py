"""How often a policy leaves the GPU nearly empty while requests sit swapped out on the CPU
(the issue's `Running: 3 reqs, Swapped: 47 reqs, GPU KV 20.7%`), in the virtual-time replay.

For each replay: the requests that fit in GPU memory at their full length; the steps after which
fewer than a fraction of them were running while at least one request was swapped out, and their
share of the busy virtual time; of those, the steps that swapped victims out and swapped nothing
in. Simulated GPU (2 x A100-40GB, CodeLlama-34B).

    python benchmarks/near_empty_batches.py --policies cfs-10 ours --workloads reference all-at-once
"""

import argparse

from vllm_cfs.lab.occupancy import near_empty, requests_that_fit
from vllm_cfs.lab.policies import select
from vllm_cfs.lab.sweep import GPU_LABEL, WORKLOADS, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["fcfs", "cfs-10", "ours"])
    parser.add_argument("--workloads", nargs="+", default=["reference", "all-at-once"], choices=list(WORKLOADS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.25, 0.5],
                        help="a batch is near-empty below this fraction of the requests that fit (default: 0.25 0.5)")
    args = parser.parse_args()
    runs = run_sweep(select(args.policies), args.workloads, args.seeds, progress=True)
    print(f"{GPU_LABEL}; near-empty: fewer running than the fraction of the requests that fit, while any is swapped")
    print(f"{'workload':<12} {'seed':>4} {'policy':<10} {'fit':>4} {'fraction':>8} {'steps':>6} {'of':>5} "
          f"{'time %':>7} {'evicting':>8} {'time %':>7} {'min GPU KV % (swapped>0)':>25}")
    for run in runs:
        samples = run.replay.kv_samples
        fits = requests_that_fit(run.requests, run.replay.gpu_blocks)
        low = min((s.gpu_kv_usage for s in samples if s.swapped), default=float("nan"))
        for fraction in args.fractions:
            e = near_empty(samples, fits, fraction)
            print(f"{run.workload:<12} {run.seed:>4} {run.policy.key:<10} {fits:>4} {fraction:>8.2f} {e.steps:>6} "
                  f"{e.busy_steps:>5} {100 * e.time_share:>7.1f} {e.evicting_steps:>8} {100 * e.evicting_time_share:>7.1f} "
                  f"{100 * low:>25.1f}", flush=True)


if __name__ == "__main__":
    main()
