"""Reference experiment before and after a profile change, in virtual time (simulated GPU).

Replays the default burst (random 1024-token prompts, 128 output tokens, 50 requests at 3 req/s,
seed 0) through vLLM's real V0 engine with FCFS and with CFS every 10 steps, and prints P99 TTFT
and P99 TPOT per profile. Usage: recalibration_effect.py PROFILE [PROFILE ...]
"""

import argparse

from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.lab.sweep import workload_requests
from vllm_cfs.sim.model_dir import codellama_34b_dir
from vllm_cfs.sim.replay import ReplayConfig, replay_many, to_run_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", help="GPU profile names or profile JSON paths")
    args = parser.parse_args()
    for profile in args.profiles:
        report(profile)


def report(profile: str) -> None:
    tokenizer = load_tokenizer(codellama_34b_dir())
    requests = workload_requests("reference", 0, tokenizer)
    intervals = (0, 10)
    jobs = [(requests, ReplayConfig(profile=profile, scheduler_cls="vllm_cfs.CFSScheduler",
                                    cfs_interval=interval)) for interval in intervals]
    for interval, result in zip(intervals, replay_many(jobs)):
        summary = to_run_result(result, requests).summary
        print(f"{profile} CFS_INTERVAL {interval} blocks {result.gpu_blocks} "
              f"P99 TTFT {summary.p99_ttft_ms / 1000:.2f} s P99 TPOT {summary.p99_tpot_ms:.1f} ms",
              flush=True)


if __name__ == "__main__":
    main()
