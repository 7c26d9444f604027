"""CFSScheduler against one of its variants (vllm_cfs.lab.variants), in seconds, on a simulated GPU.

Virtual-time replay through vLLM's real V0 engine (simulated 2 x A100-40GB) of the default burst:
random 1024-token prompts, 128 output tokens, 50 requests at 3 req/s. Variants:

  held-by-swapped      upstream's admission rule in default steps: no prefill while anything is swapped
  victims-by-vruntime  between CFS steps too, a decode out of blocks evicts the request with the most
                       tokens (upstream's step evicts the one it admitted last)
"""

import argparse

from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.lab.sweep import workload_requests
from vllm_cfs.sim.model_dir import codellama_34b_dir
from vllm_cfs.sim.replay import ReplayConfig, replay_many, to_run_result

SHIPPED = "vllm_cfs.CFSScheduler"
VARIANTS = {"held-by-swapped": "vllm_cfs.lab.variants.CFSHeldBySwapped",
            "victims-by-vruntime": "vllm_cfs.lab.variants.CFSForcedVictimsByVruntime"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--variant", choices=VARIANTS, default="held-by-swapped",
                        help="the variant to compare (default held-by-swapped)")
    parser.add_argument("--intervals", type=int, nargs="+", default=[10], help="CFS_INTERVAL values (default 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="workload seeds (default 0 1)")
    args = parser.parse_args()
    if min(args.intervals) < 1:
        parser.error("--intervals must be positive")
    tokenizer = load_tokenizer(codellama_34b_dir())
    policies = (SHIPPED, VARIANTS[args.variant])
    print("simulated GPU (virtual-time replay), reference workload")
    print(f"{'seed':>4} {'interval':>8} {'policy':<48} {'mean TTFT':>10} {'P99 TTFT':>9} {'mean TPOT':>10} "
          f"{'P99 TPOT':>9} {'P99 ITL':>9} {'tok/s':>6}")
    for seed in args.seeds:
        requests = workload_requests("reference", seed, tokenizer)
        for interval in args.intervals:
            jobs = [(requests, ReplayConfig(scheduler_cls=policy, cfs_interval=interval)) for policy in policies]
            for policy, result in zip(policies, replay_many(jobs)):
                s = to_run_result(result, requests).summary
                print(f"{seed:>4} {interval:>8} {policy:<48} {s.mean_ttft_ms:>8.0f}ms {s.p99_ttft_ms:>7.0f}ms "
                      f"{s.mean_tpot_ms:>8.1f}ms {s.p99_tpot_ms:>7.1f}ms {s.p99_itl_ms:>7.0f}ms "
                      f"{s.output_throughput:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
