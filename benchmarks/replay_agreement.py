"""The virtual-time replay against the real-time simulated server, on one workload: per-request TTFT
differences and the P99s of both (vllm_cfs.lab.agreement). Starts one `vllm serve` per policy.

    python benchmarks/replay_agreement.py                 # the reference burst, FCFS and CFS-10
    python benchmarks/replay_agreement.py --cfs-intervals 0 --num-prompts 20
"""

import argparse
import dataclasses

from vllm_cfs.bench.workload import build_workload
from vllm_cfs.lab.agreement import compare, live_and_replayed
from vllm_cfs.lab.sweep import WORKLOADS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-prompts", type=int, help="default: the workload's own count")
    parser.add_argument("--cfs-intervals", type=int, nargs="+", default=[0, 10],
                        help="0 is vLLM's FCFS scheduler, N>0 CFSScheduler with CFS_INTERVAL=N (default: 0 10)")
    args = parser.parse_args()
    spec = WORKLOADS[args.workload]
    config = dataclasses.replace(spec.config, seed=args.seed, num_prompts=args.num_prompts or spec.config.num_prompts)
    print(f"workload {args.workload} seed {args.seed}: {spec.description}; simulated 2 x A100-40GB, "
          "server with the real clock against the virtual-time replay")
    for interval in args.cfs_intervals:
        scheduler = ("vllm_cfs.CFSScheduler", interval) if interval else (None, None)
        pair = live_and_replayed(lambda tokenizer: build_workload(config, tokenizer), *scheduler)
        print(f"{'fcfs' if not interval else f'cfs-{interval}'}: {compare(pair.live, pair.replayed).describe()}",
              flush=True)


if __name__ == "__main__":
    main()
