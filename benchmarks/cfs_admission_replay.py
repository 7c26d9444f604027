"""New arrivals vs swapped victims, in seconds: CFSScheduler against the variant that keeps
upstream's rule (no prefill while anything is swapped), on the simulated reference setup.

Virtual-time replay through vLLM's real V0 engine (simulated 2 x A100-40GB, CFS_INTERVAL=10) of
the default burst: random 1024-token prompts, 128 output tokens, 50 requests at 3 req/s.
"""

import argparse

from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.lab.sweep import workload_requests
from vllm_cfs.sim.model_dir import codellama_34b_dir
from vllm_cfs.sim.replay import ReplayConfig, replay_many, to_run_result

POLICIES = ("vllm_cfs.CFSScheduler", "vllm_cfs.lab.variants.CFSHeldBySwapped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="workload seeds (default 0 1)")
    args = parser.parse_args()
    tokenizer = load_tokenizer(codellama_34b_dir())
    print(f"{'seed':>4} {'policy':<42} {'mean TTFT':>10} {'P99 TTFT':>9} {'mean TPOT':>10} {'P99 TPOT':>9}")
    for seed in args.seeds:
        requests = workload_requests("reference", seed, tokenizer)
        jobs = [(requests, ReplayConfig(scheduler_cls=policy, cfs_interval=10)) for policy in POLICIES]
        for policy, result in zip(POLICIES, replay_many(jobs)):
            s = to_run_result(result, requests).summary
            print(f"{seed:>4} {policy:<42} {s.mean_ttft_ms:>8.0f}ms {s.p99_ttft_ms:>7.0f}ms "
                  f"{s.mean_tpot_ms:>8.1f}ms {s.p99_tpot_ms:>7.1f}ms", flush=True)


if __name__ == "__main__":
    main()
