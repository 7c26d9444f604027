"""The V1 simulator against the real GPU: each real run replayed on the simulated GPU, side by side.

    .venv-v1/bin/python benchmarks/gpu/versus_sim.py docs/real-gpu/h200-1028-blocks --gpu-blocks 1028

Every request of a real run (vllm_cfs.results, as the session wrote it) goes into the V1
virtual-time replay (vllm_cfs.sim.v1.replay) at the moment the client actually sent it, with its
prompt and output lengths, under the same policy, block budget, batch limits and model length as
the real server, and with vLLM's asynchronous scheduling on, as `vllm serve` runs on a GPU (the
next step planned while the GPU runs the last: sim.clock.PipelinedClock). Prompts are distinct
token ids (random prompts share no prefix there either).
Per run: the median over requests of |sim - real| / real TTFT, and the P99 TTFT and output tok/s
errors, which is what the simulator has to get right for the lab's figures to hold.

The replay has no API server: a real request spends ``ingress`` between leaving the client and
its first token beyond the engine's own work (HTTP, tokenizing the prompt, the hop to the engine
process, the first token's way back). The simulated request enters the engine that much after the
client sent it, and its TTFT is counted from the send, as the client counts it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Optional, Sequence

from vllm_cfs.results import RunResult
from vllm_cfs.sim.replay import ReplayRequest, to_run_result
from vllm_cfs.sim.v1.replay import DEFAULT_SCHEDULER, V1ReplayConfig, replay_many

# The real server's time per request outside the engine: the median of real minus replayed TTFT
# on the H200's own budget at 3 req/s (nothing queues there), V1 default, replayed with async
# scheduling, 2026-12-03 (docs/real-gpu.md). Replayed with the synchronous loop it was 22 ms: the
# step that async scheduling plans before a newcomer can join.
INGRESS_S = 0.0007
# What `vllm serve` picked on the H200 (more than 70 GiB, not an A100).
H200_SERVE_LIMITS = {"max_num_batched_tokens": 8192, "max_num_seqs": 1024}
V1_SCHEDULERS = {"fcfs": ({"scheduler_cls": DEFAULT_SCHEDULER}),
                 "ours": {"scheduler_cls": "vllm_cfs.v1.FairScheduler", "kv_offloading_size": 16}}


@dataclasses.dataclass(frozen=True)
class Versus:
    run: str
    requests: int
    median_ttft_error: float  # median over requests of |sim - real| / real
    p99_ttft_real_ms: float
    p99_ttft_sim_ms: float
    output_tok_s_real: float
    output_tok_s_sim: float
    p99_tpot_real_ms: float
    p99_tpot_sim_ms: float
    p99_itl_real_ms: float
    p99_itl_sim_ms: float
    preemptions_real: Optional[int] = None  # from the session's summary.json (vllm:num_preemptions_total)
    preemptions_sim: Optional[int] = None

    @property
    def p99_ttft_error(self) -> float:
        return abs(self.p99_ttft_sim_ms - self.p99_ttft_real_ms) / self.p99_ttft_real_ms

    @property
    def output_tok_s_error(self) -> float:
        return abs(self.output_tok_s_sim - self.output_tok_s_real) / self.output_tok_s_real

    def row(self) -> dict:
        return {**dataclasses.asdict(self), "p99_ttft_error": self.p99_ttft_error,
                "output_tok_s_error": self.output_tok_s_error}


def policy_settings(policy: str) -> dict:
    if policy in V1_SCHEDULERS:
        return dict(V1_SCHEDULERS[policy])
    if policy.startswith("cfs-"):
        return {"scheduler_cls": "vllm_cfs.v1.CFSScheduler", "cfs_interval": int(policy[4:])}
    raise ValueError(f"unknown policy {policy!r}")


def replay_requests(real: RunResult, seed: int, ingress_s: float) -> list[ReplayRequest]:
    rng = random.Random(seed)
    return [ReplayRequest(r.issued_at_s + ingress_s, tuple(rng.randrange(3, 32000) for _ in range(r.prompt_tokens)),
                          r.expected_output_tokens) for r in real.records]


def as_client_sees(simulated: RunResult, ingress_s: float) -> RunResult:
    """The replay's requests timed from the client's send (``ingress_s`` before they entered)."""
    records = [dataclasses.replace(r, ttft_s=r.ttft_s + ingress_s, e2e_s=r.e2e_s + ingress_s) for r in simulated.records]
    return RunResult.build(simulated.setup, simulated.start_time, simulated.duration_s + ingress_s, records)


def versus(name: str, real: RunResult, simulated: RunResult, preemptions_real: Optional[int] = None) -> Versus:
    sim_ttft = {r.index: r.ttft_s for r in simulated.records}
    errors = [abs(sim_ttft[r.index] - r.ttft_s) / r.ttft_s for r in real.records if r.success]
    a, b = real.summary, simulated.summary
    return Versus(name, len(errors), statistics.median(errors), a.p99_ttft_ms, b.p99_ttft_ms, a.output_throughput,
                  b.output_throughput, a.p99_tpot_ms, b.p99_tpot_ms, a.p99_itl_ms, b.p99_itl_ms,
                  preemptions_real, simulated.setup.get("preemptions"))


def compare_folder(folder: Path, gpu_blocks: int, profile: str, tensor_parallel: int,
                   only: Optional[Sequence[str]] = None, ingress_s: float = INGRESS_S,
                   max_model_len: int = 4096, async_scheduling: bool = True) -> list[Versus]:
    rows = json.loads((folder / "summary.json").read_text())
    runs = [(f"{r['policy']}-{r['burst']}", r["policy"]) for r in rows]
    preemptions = {f"{r['policy']}-{r['burst']}": r.get("preemptions") for r in rows}
    if only:
        runs = [(name, policy) for name, policy in runs if name in only]
    reals = {name: RunResult.load(folder / f"{name}.json") for name, _ in runs}
    jobs = []
    for index, (name, policy) in enumerate(runs):
        requests = replay_requests(reals[name], seed=index, ingress_s=ingress_s)
        config = V1ReplayConfig(profile=profile, tensor_parallel_size=tensor_parallel,
                                num_gpu_blocks_override=gpu_blocks, max_model_len=max_model_len,
                                async_scheduling=async_scheduling, **H200_SERVE_LIMITS,
                                **policy_settings(policy))
        jobs.append((requests, config))
    results = replay_many(jobs)
    return [versus(name, reals[name], as_client_sees(to_run_result(result, requests), ingress_s),
                   None if preemptions[name] is None else round(preemptions[name]))
            for (name, _), (requests, _), result in zip(runs, jobs, results)]


def format_table(rows: Sequence[Versus]) -> str:
    lines = ["| run | TTFT error per request (median) | P99 TTFT real / sim (ms) | error | output tok/s real / sim "
             "| error | P99 TPOT real / sim (ms) | P99 ITL real / sim (ms) | preemptions real / sim |",
             "|---|---|---|---|---|---|---|---|---|"]
    for v in rows:
        lines.append(f"| {v.run} | {100 * v.median_ttft_error:.1f}% | {v.p99_ttft_real_ms:.0f} / {v.p99_ttft_sim_ms:.0f} "
                     f"| {100 * v.p99_ttft_error:.1f}% | {v.output_tok_s_real:.1f} / {v.output_tok_s_sim:.1f} | "
                     f"{100 * v.output_tok_s_error:.1f}% | {v.p99_tpot_real_ms:.1f} / {v.p99_tpot_sim_ms:.1f} | "
                     f"{v.p99_itl_real_ms:.1f} / {v.p99_itl_sim_ms:.1f} | {_count(v.preemptions_real)} / "
                     f"{_count(v.preemptions_sim)} |")
    return "\n".join(lines)


def _count(n: Optional[int]) -> str:
    return "?" if n is None else str(n)


def format_prediction(rows: Sequence[Versus]) -> str:
    """The simulated side alone: a prediction for a setup that has not run on real GPUs yet."""
    lines = ["| run | P99 TTFT ms | P99 TPOT ms | P99 ITL ms | output tok/s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {v.run} | {v.p99_ttft_sim_ms:.0f} | {v.p99_tpot_sim_ms:.1f} | {v.p99_itl_sim_ms:.1f} | "
              f"{v.output_tok_s_sim:.1f} |" for v in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="versus_sim.py", description="Replay a folder of real-GPU runs on the "
                                     "simulated GPU and print the errors (run with .venv-v1/bin/python).")
    parser.add_argument("folder", type=Path, help="a session's output folder (summary.json and the runs' JSON)")
    parser.add_argument("--gpu-blocks", type=int, required=True, help="the real server's GPU KV blocks")
    parser.add_argument("--profile", default="h200", help="the simulated GPU's profile (default h200)")
    parser.add_argument("-tp", "--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=4096, help="the real server's (default 4096)")
    parser.add_argument("--runs", nargs="*", help="only these runs (e.g. fcfs-rate3-s0)")
    parser.add_argument("--ingress-ms", type=float, default=1000 * INGRESS_S,
                        help=f"the API server's time per request outside the engine (default {1000 * INGRESS_S:g})")
    parser.add_argument("--sync-scheduling", action="store_true",
                        help="replay with vLLM's synchronous step loop (default: async scheduling, as the real server)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--predict", action="store_true",
                        help="print the simulated figures alone: the folder's workloads (send times, lengths) on a "
                             "setup the real runs did not have, e.g. -tp 2")
    args = parser.parse_args(argv)
    if not (args.folder / "summary.json").is_file():
        print(f"versus_sim.py: error: {args.folder} holds no summary.json (a session's output folder)", file=sys.stderr)
        return 2
    rows = compare_folder(args.folder, args.gpu_blocks, args.profile, args.tensor_parallel_size, args.runs,
                          args.ingress_ms / 1000, args.max_model_len, not args.sync_scheduling)
    print(format_prediction(rows) if args.predict else format_table(rows))
    if args.json:
        args.json.write_text(json.dumps([v.row() for v in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
