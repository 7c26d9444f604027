"""Policies x workloads x seeds through the virtual-time replay: one row of figures per replay.

    sweep = run_sweep(select(["fcfs", "cfs-10"]), ["reference"], seeds=[0])
    write_table(sweep.rows, Path("out"))

Every replay runs vLLM's real engine on the simulated GPU (2 x A100-40GB, CodeLlama-34B, TP 2) in
virtual time, one process for the whole sweep: vLLM 0.9.0's V0 engine (swap space 16 GiB) by
default, vLLM V1 with ``base=V1ReplayConfig()``. A row holds the four figures a serving team reads
(P99 TTFT, P99 TPOT, P99 inter-token latency, output tokens/s) and what the scheduler did to get
them (blocks swapped, preemptions, the recompute tax, near-empty batches).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from tqdm import tqdm

from vllm_cfs.results import RunResult
from vllm_cfs.bench.workload import WorkloadConfig, build_workload
from vllm_cfs.lab.occupancy import near_empty, requests_that_fit
from vllm_cfs.lab.policies import Policy
from vllm_cfs.sim.replay import ReplayConfig, ReplayProcess, ReplayRequest, ReplayResult, requests_of, to_run_result

GPU_LABEL = "simulated GPU (virtual-time replay)"
SETUP = "simulated 2 x A100-40GB, CodeLlama-34B, TP 2, --preemption-mode swap, swap space 16 GiB"
SETUP_V1 = ("simulated 2 x A100-40GB, CodeLlama-34B, TP 2, vLLM V1 (0.24.0): chunked prefill, preemption by "
            "recompute, prefix caching on unless the key says +recompute")


class SweepError(ValueError):
    """Bad sweep input (unknown workload, no seeds, ...); the message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class WorkloadSpec:
    name: str
    config: WorkloadConfig  # seed 0; each replay takes its own seed
    description: str


# The heavy-tailed workload's load: enough to keep the 1028 GPU KV blocks full for most of the burst.
HEAVY_TAIL_REQUESTS, HEAVY_TAIL_RATE = 100, 1.0

WORKLOADS: dict[str, WorkloadSpec] = {w.name: w for w in (
    WorkloadSpec("reference", WorkloadConfig("random", 50, 3.0, random_input_len=1024, random_output_len=128),
                 "random 1024-token prompts, 128 output tokens, 50 requests at 3 req/s (Poisson)"),
    WorkloadSpec("all-at-once", WorkloadConfig("random", 50, math.inf, random_input_len=1024, random_output_len=128),
                 "the reference's 50 requests, all at once"),
    WorkloadSpec("sharegpt", WorkloadConfig("sharegpt", 100, 5.0),
                 "100 ShareGPT first exchanges (the reply's length as output) at 5 req/s"),
    WorkloadSpec("humaneval", WorkloadConfig("humaneval", 164, 5.0),
                 "the 164 HumanEval problems (the reference solution's length as output) at 5 req/s"),
    # Replies that end at EOS: max_tokens is only the cap a real client sends, as on a real GPU.
    WorkloadSpec("sharegpt-eos", WorkloadConfig("sharegpt", 100, 5.0, reply_cap=2048),
                 "the sharegpt burst as a real client sends it: max_tokens 2048, each reply ending at EOS after "
                 "its own length"),
    WorkloadSpec("humaneval-eos", WorkloadConfig("humaneval", 164, 5.0, reply_cap=2048),
                 "the humaneval burst with max_tokens 2048, each reply ending at EOS after its reference "
                 "solution's length"),
    WorkloadSpec("heavy-tail", WorkloadConfig("random", HEAVY_TAIL_REQUESTS, HEAVY_TAIL_RATE, random_input_len=1024,
                                              reply_cap=1024),
                 f"{HEAVY_TAIL_REQUESTS} random 1024-token prompts at {HEAVY_TAIL_RATE:g} req/s (Poisson), max_tokens "
                 "1024, replies ending at EOS after a log-normal length fitted to ShareGPT's (median 250, log sd "
                 "0.965; about 7% reach the cap)"),
)}


def check_workloads(names: Iterable[str]) -> None:
    for name in names:
        if name not in WORKLOADS:
            raise SweepError(f"unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")


def workload_requests(name: str, seed: int, tokenizer, num_prompts: Optional[int] = None) -> list[ReplayRequest]:
    """The named workload's requests for a seed (``num_prompts`` shrinks or grows it, for quick runs)."""
    check_workloads([name])
    config = dataclasses.replace(WORKLOADS[name].config, seed=seed,
                                 num_prompts=num_prompts or WORKLOADS[name].config.num_prompts)
    return requests_of(build_workload(config, tokenizer), tokenizer)


@dataclasses.dataclass(frozen=True)
class Row:
    """One replay's figures. Times in ms, throughput in output tokens per second, all simulated."""

    policy: str
    parameter: str
    key: str
    workload: str
    seed: int
    requests: int
    p99_ttft_ms: float
    mean_ttft_ms: float
    p99_tpot_ms: float
    p99_itl_ms: float
    output_tok_s: float
    blocks_swapped_out: int
    blocks_swapped_in: int
    preemptions: int
    gpu_blocks: int
    steps: int
    duration_s: float
    # Steps after which fewer than a quarter of the requests that fit were running while others
    # sat swapped out, and their share of the busy time (vllm_cfs.lab.occupancy).
    near_empty_steps: int
    near_empty_time_share: float
    evicting_near_empty_steps: int  # of those, steps that swapped out and swapped nothing in
    evicting_near_empty_time_share: float
    # Recomputed tokens / all computed tokens (RFC vllm#54644's "recompute tax"); V1 replays only.
    recompute_tax: float = 0.0

    @classmethod
    def of(cls, policy: Policy, workload: str, seed: int, requests: Sequence[ReplayRequest],
           replay: ReplayResult, run: RunResult) -> "Row":
        s = run.summary
        empty = near_empty(replay.kv_samples, requests_that_fit(requests, replay.gpu_blocks))
        return cls(policy.family, policy.parameter, policy.key, workload, seed, len(requests),
                   s.p99_ttft_ms, s.mean_ttft_ms, s.p99_tpot_ms, s.p99_itl_ms, s.output_throughput,
                   replay.blocks_swapped_out, replay.blocks_swapped_in, replay.preemptions, replay.gpu_blocks,
                   replay.steps, run.duration_s, empty.steps, empty.time_share, empty.evicting_steps,
                   empty.evicting_time_share, replay.recompute_tax)


@dataclasses.dataclass(frozen=True)
class Run:
    policy: Policy
    workload: str
    seed: int
    requests: tuple[ReplayRequest, ...]  # as replayed (with the policy's priorities)
    replay: ReplayResult
    result: RunResult
    row: Row


def run_sweep(policies: Sequence[Policy], workloads: Sequence[str], seeds: Sequence[int], tokenizer=None,
              num_prompts: Optional[int] = None, progress: bool = False,
              base=ReplayConfig()) -> list[Run]:
    """Every policy on every workload and seed, in one replay process; runs in that order. ``base`` is
    a ReplayConfig (V0) or a V1ReplayConfig (vLLM V1): the engine follows from it."""
    if not policies or not workloads or not seeds:
        raise SweepError("a sweep needs at least one policy, one workload and one seed")
    check_workloads(workloads)
    if any(seed < 0 for seed in seeds):
        raise SweepError(f"seeds must be whole numbers >= 0, got {' '.join(map(str, seeds))}")
    if num_prompts is not None and num_prompts < 1:
        raise SweepError(f"the number of prompts must be at least 1, got {num_prompts}")
    with replay_process_for(base) as process:  # vLLM starts up there while the workloads are built here
        if tokenizer is None:
            from vllm_cfs.bench.datasets import load_tokenizer
            from vllm_cfs.sim.model_dir import codellama_34b_dir

            tokenizer = load_tokenizer(codellama_34b_dir())
        cases, jobs = [], []
        for workload in workloads:
            for seed in seeds:
                requests = workload_requests(workload, seed, tokenizer, num_prompts)
                for policy in policies:
                    job = policy.job(requests, base)
                    cases.append((policy, workload, seed, tuple(job[0])))
                    jobs.append(job)
        runs = []
        with tqdm(total=len(jobs), desc="replays", unit="replay", file=sys.stderr, disable=not progress) as bar:
            for (policy, workload, seed, requests), replay in zip(cases, process.each(jobs)):
                result = to_run_result(replay, requests, {"label": policy.key, "workload": workload, "seed": seed,
                                                          "policy": policy.description})
                runs.append(Run(policy, workload, seed, requests, replay, result,
                                Row.of(policy, workload, seed, requests, replay, result)))
                bar.update(1)
    return runs


def replay_process_for(base) -> ReplayProcess:
    if getattr(base, "engine", "v0") == "v1":
        from vllm_cfs.sim.v1.replay import V1ReplayProcess

        return V1ReplayProcess(base.profile)
    return ReplayProcess(base.profile)


# --- output --------------------------------------------------------------------------------------

COLUMNS = tuple(f.name for f in dataclasses.fields(Row))


def write_table(rows: Sequence[Row], out: Path, stem: str = "policies-sweep",
                about: Optional[dict[str, Any]] = None, setup: str = SETUP) -> tuple[Path, Path]:
    """``stem``.csv (one line per row) and ``stem``.json (``about`` and the rows) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(getattr(row, c)) for c in COLUMNS])
    document = {"gpu": GPU_LABEL, "setup": setup, **(about or {}), "columns": list(COLUMNS),
                "rows": [dataclasses.asdict(row) for row in rows]}
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    return csv_path, json_path


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def write_runs(runs: Iterable[Run], folder: Path) -> list[Path]:
    """Each replay in the client's results schema (vllm_cfs.results), one file each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for run in runs:
        path = folder / f"{run.workload}-seed{run.seed}-{run.policy.key}.json"
        run.result.save(path)
        paths.append(path)
    return paths


def median_rows(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per policy and workload, the median over seeds of each figure (first-seen order)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.workload, row.key), []).append(row)
    merged = []
    for (workload, key), group in groups.items():
        first = group[0]
        merged.append({
            "workload": workload, "key": key, "policy": first.policy, "parameter": first.parameter,
            "seeds": [r.seed for r in group],
            **{c: statistics.median(getattr(r, c) for r in group) for c in COLUMNS
               if isinstance(getattr(first, c), (int, float)) and c not in ("seed", "requests")},
        })
    return merged


FIGURES = (("P99 TTFT ms", "p99_ttft_ms", "{:.0f}"), ("P99 TPOT ms", "p99_tpot_ms", "{:.1f}"),
           ("P99 ITL ms", "p99_itl_ms", "{:.1f}"), ("output tok/s", "output_tok_s", "{:.1f}"),
           ("mean TTFT ms", "mean_ttft_ms", "{:.0f}"), ("blocks out", "blocks_swapped_out", "{:.0f}"),
           ("preemptions", "preemptions", "{:.0f}"), ("recompute tax", "recompute_tax", "{:.1%}"))


def markdown_table(rows: Sequence[Row]) -> str:
    """One table per workload, a line per policy: the median over the sweep's seeds."""
    lines = []
    merged = median_rows(rows)
    for workload in dict.fromkeys(m["workload"] for m in merged):
        seeds = sorted({s for m in merged if m["workload"] == workload for s in m["seeds"]})
        lines += [f"**{workload}** ({WORKLOADS[workload].description if workload in WORKLOADS else workload}; "
                  f"median over seeds {', '.join(map(str, seeds))}; {GPU_LABEL})", "",
                  "| policy | parameter | " + " | ".join(name for name, _, _ in FIGURES) + " |",
                  "|---|---|" + "---:|" * len(FIGURES)]
        for m in (m for m in merged if m["workload"] == workload):
            cells = [fmt.format(m[field]) for _, field, fmt in FIGURES]
            lines.append(f"| {m['policy']} | {m['parameter']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def text_table(rows: Sequence[Row]) -> str:
    """A compact per-replay table for the terminal."""
    head = f"{'workload':<12} {'seed':>4} {'policy':<16} " + " ".join(f"{name:>13}" for name, _, _ in FIGURES[:4])
    body = [f"{r.workload:<12} {r.seed:>4} {r.key:<16} "
            + " ".join(f"{fmt.format(getattr(r, field)):>13}" for _, field, fmt in FIGURES[:4]) for r in rows]
    return "\n".join([head, *body])


def ends_at_eos(workload: str) -> bool:
    """Whether the workload's replies end at EOS, so that max_tokens is only a cap (an oracle has something to know)."""
    check_workloads([workload])
    return WORKLOADS[workload].config.reply_cap is not None


def quick_line(rows: Sequence[Row], workload: str = "reference", seed: int = 0, suffix: str = "") -> str:
    """The one-line verdict on ``ours`` against FCFS, CFS-10 and the ideal bound (all with key
    ``suffix``: "+staged" compares the staged swap worker's runs), and where replies end at EOS the
    shortest-remaining oracle's P99 TTFT."""
    by_key = {r.key: r for r in rows if r.workload == workload and r.seed == seed}
    names = ("ours", "fcfs", "cfs-10", "ideal") + (("oracle",) if ends_at_eos(workload) else ())
    keys = [k + suffix for k in names]
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise SweepError(f"the quick line needs {', '.join(missing)} on {workload} seed {seed}")
    ours, fcfs, cfs10, ideal = (by_key[k] for k in keys[:4])
    line = (f"ours vs fcfs: throughput ratio {ours.output_tok_s / fcfs.output_tok_s:.2f}; "
            f"P99 TTFT ours {ours.p99_ttft_ms:.0f} ms, cfs10 {cfs10.p99_ttft_ms:.0f} ms, ideal {ideal.p99_ttft_ms:.0f} ms; "
            f"P99 TPOT ours {ours.p99_tpot_ms:.0f} ms, fcfs {fcfs.p99_tpot_ms:.0f} ms; "
            f"P99 ITL ours {ours.p99_itl_ms:.0f} ms")
    if len(keys) > 4:
        line += f"; oracle P99 TTFT {by_key[keys[4]].p99_ttft_ms:.0f} ms"
    return line


def quick_line_v1(rows: Sequence[Row], workload: str = "reference", seed: int = 0, suffix: str = "") -> str:
    """The one-line verdict on ``ours`` against vLLM V1's own scheduler (fcfs) and the ideal bound."""
    by_key = {r.key: r for r in rows if r.workload == workload and r.seed == seed}
    keys = [k + suffix for k in ("ours", "fcfs")] + ["ideal"]
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise SweepError(f"the quick line needs {', '.join(missing)} on {workload} seed {seed}")
    ours, fcfs, ideal = (by_key[k] for k in keys)
    return (f"ours vs fcfs: throughput ratio {ours.output_tok_s / fcfs.output_tok_s:.2f}; "
            f"P99 TTFT ours {ours.p99_ttft_ms:.0f} ms, fcfs {fcfs.p99_ttft_ms:.0f} ms, ideal {ideal.p99_ttft_ms:.0f} ms; "
            f"P99 TPOT ours {ours.p99_tpot_ms:.0f} ms, fcfs {fcfs.p99_tpot_ms:.0f} ms; "
            f"P99 ITL ours {ours.p99_itl_ms:.0f} ms, fcfs {fcfs.p99_itl_ms:.0f} ms")
