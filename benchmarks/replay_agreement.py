"""The virtual-time replay against the real-time simulated server, on one workload, per policy.

Prints the per-request TTFT differences and the P99s of both (vllm_cfs.lab.agreement). Starts
one `vllm serve` per policy.

    python benchmarks/replay_agreement.py                 # the reference burst: FCFS, CFS-10 and ours
    python benchmarks/replay_agreement.py --policies fcfs --num-prompts 20

Each policy is compared twice: against the replay with the profile's modeled host (the fixed
per-step overhead), and against the replay charging this machine's measured host time between
steps (ReplayConfig.host_time="measured", run after the server has stopped).
"""

import argparse
import dataclasses

from vllm_cfs.bench.workload import build_workload
from vllm_cfs.lab.agreement import compare, live_and_replayed, runs_live
from vllm_cfs.lab.policies import BY_KEY
from vllm_cfs.lab.sweep import WORKLOADS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-prompts", type=int, help="default: the workload's own count")
    live_policies = [key for key, policy in BY_KEY.items() if runs_live(policy)]
    parser.add_argument("--policies", nargs="+", default=["fcfs", "cfs-10", "ours"], choices=live_policies,
                        metavar="POLICY", help=f"policies of the lab that a server runs as started here: "
                                               f"{', '.join(live_policies)} (default: fcfs cfs-10 ours)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="live runs per policy (default 1); from 2 on, each later live run is also compared "
                             "with the first: how close the live server is to itself")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    spec = WORKLOADS[args.workload]
    config = dataclasses.replace(spec.config, seed=args.seed, num_prompts=args.num_prompts or spec.config.num_prompts)
    print(f"workload {args.workload} seed {args.seed}: {spec.description}; simulated 2 x A100-40GB, "
          "server with the real clock against the virtual-time replay")
    for key in args.policies:
        settings = BY_KEY[key].settings
        first_live = None
        for run in range(1, args.repeat + 1):
            pair = live_and_replayed(lambda tokenizer: build_workload(config, tokenizer),
                                     settings.get("scheduler_cls"), settings.get("cfs_interval"), measure_host=True)
            name = key if args.repeat == 1 else f"{key} run {run}"
            print(f"{name}, replay with the modeled host: {compare(pair.live, pair.replayed).describe()}")
            print(f"{name}, replay with this machine's host time: "
                  f"{compare(pair.live, pair.replayed_measured_host).describe()}", flush=True)
            if first_live is None:
                first_live = pair.live
            else:
                print(f"{name}, live against live run 1: "
                      f"{compare(pair.live, first_live).describe((f'run {run}', 'run 1'))}", flush=True)


if __name__ == "__main__":
    main()
