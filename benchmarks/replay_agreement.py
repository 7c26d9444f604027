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
from vllm_cfs.lab.agreement import LIVE_SETTINGS, compare, live_and_replayed
from vllm_cfs.lab.policies import BY_KEY
from vllm_cfs.lab.sweep import WORKLOADS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-prompts", type=int, help="default: the workload's own count")
    live_policies = [p.key for p in BY_KEY.values() if set(p.settings) <= LIVE_SETTINGS and not p.unlimited_kv
                     and p.priorities is None]
    parser.add_argument("--policies", nargs="+", default=["fcfs", "cfs-10", "ours"], choices=live_policies,
                        metavar="POLICY", help=f"policies of the lab that a server runs as started here: "
                                               f"{', '.join(live_policies)} (default: fcfs cfs-10 ours)")
    args = parser.parse_args()
    spec = WORKLOADS[args.workload]
    config = dataclasses.replace(spec.config, seed=args.seed, num_prompts=args.num_prompts or spec.config.num_prompts)
    print(f"workload {args.workload} seed {args.seed}: {spec.description}; simulated 2 x A100-40GB, "
          "server with the real clock against the virtual-time replay")
    for key in args.policies:
        settings = BY_KEY[key].settings
        pair = live_and_replayed(lambda tokenizer: build_workload(config, tokenizer), settings.get("scheduler_cls"),
                                 settings.get("cfs_interval"), measure_host=True)
        print(f"{key}, replay with the modeled host: {compare(pair.live, pair.replayed).describe()}")
        print(f"{key}, replay with this machine's host time: "
              f"{compare(pair.live, pair.replayed_measured_host).describe()}", flush=True)


if __name__ == "__main__":
    main()
