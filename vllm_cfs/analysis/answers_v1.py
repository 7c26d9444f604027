"""answers.txt of an experiment on vLLM V1: its table and measurements, and the MCQs with V0's answers.

Every figure here comes from the V1 run. The MCQs are the assignment's, about vLLM 0.9's V0
engine and its swap preemption: V1 has no swap (it preempts by recompute), so half of their
evidence cannot be measured on it. They keep the answers the V0 run gives (`make hw2`, its
answers.txt and docs/results.md), said as such; nothing on V1 re-derives them.
"""

from __future__ import annotations

from typing import Optional, Sequence

from vllm_cfs.analysis import evidence as ev
from vllm_cfs.analysis.answers import (BATCHING_LIMIT, DEFAULT_POLICY, HOW_CFS_CUTS_TTFT, INTERVAL_TREND,
                                       MAIN_TRADEOFF, QUESTIONS, TTFT_PROBES, WHAT_IS_SWAPPED, Answer, _ms, _pct,
                                       _when, interval_table)
from vllm_cfs.analysis.study import Burst, Study

# The answers of the V0 run, `make hw2` (docs/results.md, 2026-11-30: every one derived from its
# own evidence, the same on every run there).
V0_CHOICES = {
    DEFAULT_POLICY: "c",
    BATCHING_LIMIT: "d",
    HOW_CFS_CUTS_TTFT: "b",
    WHAT_IS_SWAPPED: "a",
    MAIN_TRADEOFF: "b",
    INTERVAL_TREND: "a",
}
V0_SOURCE = "the V0 run (`make hw2`: vLLM 0.9.0, swap preemption; its answers.txt, docs/results.md)"

TABLE_TITLE_V1 = ("P99 TTFT, P99 TPOT, P99 ITL and output throughput per scheduler on vLLM V1: FCFS (interval 0, "
                  "V1's own scheduling), CFS at each interval, and our FairScheduler when it ran (median over runs); "
                  "preemptions of each run")


def answer_all_v1(study: Study) -> list[Answer]:
    """The assignment's MCQs with the V0 run's answers; none rests on this run."""
    reason = "V0's answer: its evidence comes from the V0 run (`make hw2`), not from this one"
    return [q.answer(V0_CHOICES[q], False, reason, ()) for q in QUESTIONS]


def _counts(values: Sequence[Optional[int]]) -> str:
    return ", ".join("n/a" if v is None else str(v) for v in values)


def interval_table_v1(study: Study) -> list[str]:
    return interval_table(study, preemptions_per_run=True)


def table_notes(study: Study) -> list[str]:
    if all(study.results_of(row.interval).salted_apart for row in study.table_rows):
        reuse = ("each with a cache salt of its own (vLLM's cache_salt, set by hw2/sweep.sh), so a run hits only "
                 "its own blocks (a preempted request's), never an earlier run's")
    else:
        reuse = "without a cache salt per run, so a later run can find an earlier one's blocks"
    lines = ["preemptions: vllm:num_preemptions_total on the server's /metrics after each run, minus the run before "
             "(<point>_r<run>.metrics; n/a: not kept); all by recompute, our schedulers' victims and vLLM's own",
             "prefix cache hits per run (prompt tokens served from V1's prefix cache, on by default; "
             f"vllm:prefix_cache_hits_total likewise): every run of a scheduler repeats the same prompts (one seed), "
             f"{reuse}:"]
    for row in study.table_rows:
        name = "Fair" if row.interval is None else ("FCFS" if row.interval == 0 else f"CFS-{row.interval}")
        lines.append(f"  {name}: {_counts(study.prefix_cache_hits(row.interval))}")
    return lines


def _waiting(burst: Burst) -> str:
    span = ev.waiting_span(burst.stats)
    if span is None:
        return f"{burst.label}: no stats line showed a waiting request"
    end = (f"to {_when(span.end)} (Waiting 0): {span.seconds:.0f} s" if span.end
           else "and the log never showed Waiting 0 again")
    return f"{burst.label}: requests waited from {_when(span.start)} (Waiting {span.start.pending}) {end}"


def measurements(study: Study) -> list[str]:
    """What the V1 run's logs and records show, beside the table (run 1 of each where per run)."""
    lines = []
    log = next((r.log for r in (study.task31.interval(0), *study.task32.intervals.values()) if r.log), None)
    fp = study.footprint
    if log is not None and log.kv_cache_tokens is not None:
        line = f"GPU KV cache: {log.kv_cache_tokens:,} tokens per GPU (vLLM's start-up line)"
        if study.blocks and study.blocks.block_size:
            line += f" = {study.blocks.gpu_blocks} blocks of {study.blocks.block_size} tokens ({study.blocks.device})"
        if log.max_concurrency is not None:
            line += f"; {log.max_concurrency:.2f} requests of {log.max_model_len:,} tokens at once"
        lines.append(line)
    if fp:
        lines.append(f"KV bytes per token per GPU: {fp.calculation()}")
        if log is not None and log.kv_cache_tokens is not None:
            lines.append(f"KV cache per GPU: {log.kv_cache_tokens:,} tokens x {fp.bytes_per_token_per_gpu:,} bytes = "
                         f"{fp.gib(log.kv_cache_tokens / fp.block_size):.2f} GiB")
    burst = study.fcfs_31
    probes = "; ".join(f"TTFT of request {i}: {_ms(ev.ttft_ms(burst.result, i))}" for i in TTFT_PROBES)
    lines.append(f"{burst.label}, run 1: {probes}")
    peak = ev.first_peak(burst.stats, lambda s: s.gpu_kv_pct)
    if peak:
        lines.append(f"peak GPU KV cache usage ({burst.label}): {_pct(peak.gpu_kv_pct)} at {_when(peak)} (first line "
                     f"at the peak): Running {peak.running}, Waiting {peak.pending}")
    demand = ev.burst_kv_demand_tokens(burst.result)
    if log is not None and log.kv_cache_tokens:
        lines.append(f"KV the whole burst would hold if batched together to the end: {demand:,} tokens = "
                     f"{demand / log.kv_cache_tokens:.2f}x the GPU KV cache")
    lines += [_waiting(b) for b in study.compared]
    for b in study.compared[1:]:
        if b.cfs_counters:
            lines.append(f"{b.label}, our scheduler's counters on its last stats line of run 1 (cumulative, logged "
                         f"every 5 s when changed): " + ", ".join(f"{k}={v}" for k, v in b.cfs_counters.items()))
    return lines


def format_answers_v1(study: Study, answers: Sequence[Answer]) -> str:
    setup = study.fcfs_31.result.setup
    fair = f", {study.fair_folder.path} (FairScheduler)" if study.fair_folder else ""
    lines = [
        f"hw2 answers on {study.engine_label}: every figure below comes from {study.engine_label} on the "
        f"{study.gpu}",
        f"GPU: {study.gpu}" + (": SIMULATED, vLLM's real engine, scheduler and server; the GPUs' time and memory "
                               "modeled (vllm_cfs.sim)" if study.simulated else ""),
        f"engine: {study.engine_label}: preemption by recompute only (V1 has no swap), chunked prefill always on, "
        "prefix caching on (vLLM's defaults)",
        *([f"KV budget: {study.task31.env['gpu_blocks']}"] if study.task31.env.get("gpu_blocks") else []),
        f"workload: {setup.get('num_prompts')} requests at {setup.get('request_rate')} req/s, "
        f"{setup.get('dataset')}, seed {setup.get('seed')}",
        f"inputs: {study.task31.path} (task 3.1), {study.task32.path} (task 3.2 sweep){fair}; "
        f"plots compare CFS at interval {study.cfs_interval}; request indices are 0-based in issue order",
        "",
        TABLE_TITLE_V1,
        *("  " + line for line in interval_table_v1(study)),
        *("  " + line for line in table_notes(study)),
        "",
        f"Measured on {study.engine_label} in this run:",
        *(f"  - {line}" for line in measurements(study)),
        "",
        f"MCQ answers: V0's, not measured here. Their evidence comes from {V0_SOURCE}, since vLLM V1 has no swap: "
        "the questions are about V0's swap preemption.",
        "",
    ]
    for a in answers:
        lines.append(f"Section {a.section}, MCQ {a.number}, answer ({a.choice}) {a.choice_text}")
        lines.append(f"  Q: {a.question}")
        lines.append("  Options: " + "  ".join(f"({letter}) {text}" for letter, text in a.options))
        lines.append(f"  {a.reason[0].upper()}{a.reason[1:]}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
