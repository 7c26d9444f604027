"""The assignment's multiple-choice questions, answered from this experiment's own measurements.

Each answer carries the evidence it rests on (numbers from the client results and server logs
of this run) and says whether that evidence decided it (``derived``) or the run could not show
it, e.g. a burst that never filled the GPU cannot show what stops batching; then the answer is
marked "not shown by this run" and says what is missing.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Callable, Optional, Sequence

from vllm_cfs.analysis import evidence as ev
from vllm_cfs.analysis.plots import interval_label
from vllm_cfs.analysis.study import Burst, Study
from vllm_cfs.analysis.swap_paths import swap_paths_table
from vllm_cfs.results import RequestRecord

# vLLM admits a prefill only when its whole prompt fits above a small watermark, so with prompts of
# hundreds of tokens admission stops a few percent short of 100 %: 90 % counts as full.
KV_FULL_PCT = 90.0
TTFT_PROBES = (10, 40)  # the request indices whose TTFT the assignment asks about
# An ordering "explains" the service order when it agrees on this share of pairs more than any other.
ORDER_MARGIN = 0.1


@dataclasses.dataclass(frozen=True)
class Answer:
    section: str  # "3.1", "3.2", or "3.2 (sweep)"
    number: int
    question: str
    options: tuple[tuple[str, str], ...]  # (letter, text)
    choice: str  # letter
    derived: bool  # True: the evidence below decided the choice
    reason: str
    evidence: tuple[str, ...]

    @property
    def choice_text(self) -> str:
        return dict(self.options)[self.choice]


@dataclasses.dataclass(frozen=True)
class Question:
    """One of the assignment's MCQs, as asked; each engine's analysis answers it its own way."""

    section: str
    number: int
    text: str
    options: tuple[tuple[str, str], ...]

    def answer(self, choice: str, derived: bool, reason: str, evidence: Sequence[str]) -> Answer:
        return Answer(self.section, self.number, self.text, self.options, choice, derived, reason, tuple(evidence))


DEFAULT_POLICY = Question("3.1", 1, "What is the default scheduling policy of vLLM?",
                          (("a", "LCFS (Last Come First Serve)"), ("b", "SJF (Shortest Job First)"),
                           ("c", "FCFS (First Come First Serve)"), ("d", "LJF (Longest Job First)")))
BATCHING_LIMIT = Question("3.1", 2, "What is preventing vLLM from batching all the incoming prompts on the GPU?",
                          (("a", "GPU compute capacity"), ("b", "GPU memory bandwidth"), ("c", "GPU power supply"),
                           ("d", "GPU memory capacity")))
HOW_CFS_CUTS_TTFT = Question("3.2", 1, "How does preemptive scheduling (CFS) reduce TTFT of all the prompts?",
                             (("a", "By prioritizing existing prompts over new prompts."),
                              ("b", "By prioritizing prompts with the least number of tokens."),
                              ("c", "No prioritization is involved."), ("d", "By skipping some tokens.")))
WHAT_IS_SWAPPED = Question("3.2", 2, "What does preemptive scheduler store and load while swapping prompts between "
                           "CPU DRAM and GPU?",
                           (("a", "KV cache of the prompts."), ("b", "The current layer weights."),
                            ("c", "LoRA adapters."), ("d", "Layer activations.")))
MAIN_TRADEOFF = Question("3.2", 3, "What is the main tradeoff of preemptive scheduling?",
                         (("a", "Preemption changes the accuracy of output."),
                          ("b", "The GPU is idle while it waits for swapping."),
                          ("c", "Caching optimization of KV cache vanishes."), ("d", "Some prompts never get scheduled.")))
TREND_OPTIONS = (
    ("a", "TTFT rises and TPOT falls: fewer preemptions, longer waits for newcomers."),
    ("b", "TTFT falls and TPOT rises."),
    ("c", "Both rise."),
    ("d", "Both fall."),
)
TREND_FROM, TREND_TO = 5, 40
INTERVAL_TREND = Question("3.2 (sweep)", 4, f"As the CFS interval grows from {TREND_FROM} to {TREND_TO} steps, what "
                          "happens to TTFT and TPOT?", TREND_OPTIONS)
QUESTIONS = (DEFAULT_POLICY, BATCHING_LIMIT, HOW_CFS_CUTS_TTFT, WHAT_IS_SWAPPED, MAIN_TRADEOFF, INTERVAL_TREND)


def _ms(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _when(sample) -> str:
    return sample.time.strftime("%H:%M:%S")


def _stats_line(sample) -> str:
    return (f"Running {sample.running}, Swapped {sample.swapped}, Pending {sample.pending}, "
            f"GPU KV {_pct(sample.gpu_kv_pct)}, CPU KV {_pct(sample.cpu_kv_pct)}")


def _ttft_probes(burst: Burst) -> str:
    return "; ".join(f"TTFT of request {i}: {_ms(ev.ttft_ms(burst.result, i))}" for i in TTFT_PROBES)


def _waiting(burst: Burst) -> str:
    span = ev.waiting_span(burst.stats)
    if span is None:
        return f"{burst.label}: no stats line showed a pending request"
    end = f"to {_when(span.end)} (Pending 0): {span.seconds:.0f} s" if span.end else "and the log never showed Pending 0 again"
    return f"{burst.label}: requests waited from {_when(span.start)} (Pending {span.start.pending}) {end}"


# --- 3.1 -----------------------------------------------------------------------------------------

def _total_tokens(r: RequestRecord) -> float:
    return r.prompt_tokens + r.output_tokens_at_end


POLICY_ORDERS: dict[str, tuple[str, Callable[[RequestRecord], float]]] = {
    "a": ("last come first served", lambda r: -r.issued_at_s),
    "b": ("shortest job (prompt + output tokens) first", _total_tokens),
    "c": ("first come first served", lambda r: r.issued_at_s),
    "d": ("longest job first", lambda r: -_total_tokens(r)),
}


def default_policy(study: Study) -> Answer:
    burst = study.fcfs_31
    records = burst.result.records
    agreement = {letter: ev.issue_order_agreement(records, key) for letter, (_, key) in POLICY_ORDERS.items()}
    known = {k: v for k, v in agreement.items() if v is not None}
    ranked = sorted(known, key=known.get, reverse=True)
    choice = ranked[0] if ranked else "c"
    derived = len(ranked) >= 2 and known[ranked[0]] - known[ranked[1]] >= ORDER_MARGIN
    tenth = max(1, len(records) // 5)
    early = [r.ttft_s * 1000 for r in records[:tenth] if r.ttft_s is not None]
    late = [r.ttft_s * 1000 for r in records[-tenth:] if r.ttft_s is not None]
    evidence = [
        f"{_ttft_probes(burst)} ({burst.label}, run 1)",
        f"mean TTFT of the first {tenth} requests issued: {_ms(statistics.fmean(early) if early else None)}; "
        f"of the last {tenth}: {_ms(statistics.fmean(late) if late else None)}",
    ]
    for letter, (name, _) in POLICY_ORDERS.items():
        share = agreement[letter]
        evidence.append(f"first tokens came in {name} order for {share:.1%} of request pairs" if share is not None
                        else f"{name}: not testable, every request of this burst has the same length")
    reason = (f"the order in which requests got their first token matches {POLICY_ORDERS[choice][0]} best "
              f"({known.get(choice, 0):.1%} of pairs)")
    if not derived:
        reason += "; no ordering stands out by 10 points, so this run does not decide it"
    return DEFAULT_POLICY.answer(choice, derived, reason, evidence)


def batching_limit(study: Study) -> Answer:
    burst = study.fcfs_31
    evidence = []
    capacity_tokens = None
    if study.blocks:
        b = study.blocks
        capacity_tokens = b.gpu_blocks * (study.footprint.block_size if study.footprint else 16)
        evidence.append(f"GPU KV blocks: {b.gpu_blocks} per GPU ({b.device}), holding "
                        f"{b.gpu_blocks} x {capacity_tokens // b.gpu_blocks} = {capacity_tokens:,} tokens")
    if study.footprint:
        evidence.append(f"KV bytes per token per GPU: {study.footprint.calculation()}")
        if study.blocks:
            evidence.append(f"KV cache per GPU: {study.blocks.gpu_blocks} blocks x "
                            f"{study.footprint.block_bytes / 1024**2:g} MiB = {study.footprint.gib(study.blocks.gpu_blocks):.2f} GiB")
    peak = ev.first_peak(burst.stats, lambda s: s.gpu_kv_pct)
    if peak:
        evidence.append(f"peak GPU KV cache usage: {_pct(peak.gpu_kv_pct)} at {_when(peak)} (first line at the peak): "
                        f"{_stats_line(peak)}")
    full = ev.memory_bound_lines(burst.stats, KV_FULL_PCT)
    pending_lines = [s for s in burst.stats if s.pending > 0]
    evidence.append(f"stats lines with requests pending: {len(pending_lines)} of {len(burst.stats)}; "
                    f"with requests pending while GPU KV >= {KV_FULL_PCT:.0f}%: {len(full)}")
    evidence.append(_waiting(burst))
    demand = ev.burst_kv_demand_tokens(burst.result)
    demand_ratio = demand / capacity_tokens if capacity_tokens else None
    if demand_ratio is not None:
        evidence.append(f"KV the whole burst would hold if batched together to the end (prompt + output tokens): "
                        f"{demand:,} tokens = {demand_ratio:.2f}x the GPU KV capacity")
    rates = ev.decode_rate_per_request(burst.stats)
    if len(rates) >= 2:
        low, high = min(rates), max(rates)
        evidence.append(f"decode tokens/s per running request: {low[1]:.1f} at Running {low[0]}, {high[1]:.1f} at "
                        f"Running {high[0]} (decode-only lines): a bigger batch "
                        f"{'barely slowed each request' if high[1] >= 0.7 * low[1] else 'slowed each request'}")
    if full:
        choice, derived = "d", True
        reason = (f"requests waited while the GPU KV cache was >= {KV_FULL_PCT:.0f}% full ({len(full)} stats lines): "
                  "admission stopped because no KV blocks were left")
    elif demand_ratio is not None and demand_ratio > 1:
        choice, derived = "d", True
        reason = (f"batching all {len(burst.result.records)} prompts would need {demand_ratio:.2f}x the KV cache the "
                  "GPUs have left after the weights")
    elif pending_lines:
        choice, derived = "a", True
        reason = "requests waited while KV blocks were free, so the per-step batch budget, not memory, held them"
    else:
        choice, derived = "d", False
        reason = ("no request waited and the burst's KV fits the GPU; the answer rests on "
                  "the KV capacity above")
    return BATCHING_LIMIT.answer(choice, derived, reason, evidence)


# --- 3.2 -----------------------------------------------------------------------------------------

def _counters_text(burst: Burst) -> str:
    if not burst.cfs_counters:
        return f"{burst.label}: no CFS stats line in the log (the scheduler logs one only after it acted)"
    return f"{burst.label} CFS counters on the last CFS stats line of run 1 (cumulative, logged every 5 s): " + ", ".join(f"{k}={v}" for k, v in burst.cfs_counters.items())


def _preempted(burst: Burst) -> tuple[bool, str]:
    """Whether the run preempted anything, and how we know: the CFS counters if the scheduler logged
    them, else vLLM's own stats lines (Swapped > 0)."""
    if burst.cfs_counters:
        count = burst.cfs_counters.get("preempted_by_swap", 0) + burst.cfs_counters.get("preempted_by_recompute", 0)
        return count > 0, f"{count} preemptions (CFS counters)"
    peak = max((s.swapped for s in burst.stats), default=0)
    return peak > 0, f"up to {peak} requests swapped out at once (stats lines)"


def how_cfs_cuts_ttft(study: Study) -> Answer:
    fcfs, cfs = study.fcfs, study.cfs
    late = {r.index for r in cfs.result.records[-max(1, len(cfs.result.records) // 5):]}
    late_ttft = {b.label: statistics.fmean([r.ttft_s * 1000 for r in b.result.records
                                            if r.index in late and r.ttft_s is not None] or [math.inf])
                 for b in (fcfs, cfs)}
    everyone = [r.index for r in cfs.result.records]
    tpot_change = ev.mean_tpot_change_ms(fcfs.result, cfs.result, everyone)
    complete = ev.all_outputs_complete(cfs.result)
    preempted, how_many = _preempted(cfs)
    ttft_fcfs, ttft_cfs = study.rows[0].p99_ttft_ms, study.rows[study.cfs_interval].p99_ttft_ms
    evidence = [
        f"P99 TTFT (median of runs): FCFS {_ms(ttft_fcfs)}, CFS interval {study.cfs_interval} {_ms(ttft_cfs)}",
        f"run 1: FCFS {_ttft_probes(fcfs)}; CFS {_ttft_probes(cfs)}",
        f"mean TTFT of the last {len(late)} requests issued (run 1): FCFS {_ms(late_ttft[fcfs.label])}, "
        f"CFS {_ms(late_ttft[cfs.label])}",
        _waiting(fcfs),
        _waiting(cfs),
        _counters_text(cfs),
        f"mean TPOT change of the same requests from FCFS to CFS (run 1): {_ms(tpot_change)}",
        f"every request produced exactly the tokens it asked for under CFS: {'yes' if complete else 'no'}",
    ]
    if preempted and late_ttft[cfs.label] < late_ttft[fcfs.label] and tpot_change is not None and tpot_change > 0 \
            and complete:
        derived = True
        reason = (f"CFS preempted running requests ({how_many}) so that the latest arrivals, which had generated no "
                  "token yet, got their first one sooner, while the requests already generating paid in TPOT: the "
                  "ones with the fewest tokens go first; no token was skipped")
    else:
        derived = False
        reason = (("CFS preempted nothing (the GPU never ran short of KV blocks)" if not preempted else
                   "late arrivals did not gain TTFT at the running requests' expense")
                  + "; the answer rests on the scheduler's priority (fewest generated tokens first)")
    return HOW_CFS_CUTS_TTFT.answer("b", derived, reason, evidence)


def what_is_swapped(study: Study) -> Answer:
    cfs = study.cfs
    evidence = []
    fp = study.footprint
    if study.blocks:
        line = f"CPU swap space: {study.blocks.cpu_blocks} blocks per GPU"
        if fp:
            line += (f" of {fp.block_bytes / 1024**2:g} MiB (one block = the K and V of {fp.block_size} tokens) "
                     f"= {fp.gib(study.blocks.cpu_blocks):.2f} GiB")
        evidence.append(line)
    peak_cpu = ev.first_peak(cfs.stats, lambda s: s.cpu_kv_pct)
    peak_swapped = ev.first_peak(cfs.stats, lambda s: s.swapped)
    if peak_cpu:
        evidence.append(f"peak CPU KV cache usage ({cfs.label}, run 1): {_pct(peak_cpu.cpu_kv_pct)} at {_when(peak_cpu)}")
    if peak_swapped:
        line = f"peak Swapped: {peak_swapped.swapped} requests at {_when(peak_swapped)} ({_stats_line(peak_swapped)})"
        if fp and study.blocks:
            per_gpu = fp.gib(peak_swapped.cpu_kv_pct / 100 * study.blocks.cpu_blocks)
            line += (f"; KV in CPU memory then: {peak_swapped.cpu_kv_pct:.1f}% x {study.blocks.cpu_blocks} blocks x "
                     f"{fp.block_bytes / 1024**2:g} MiB = {per_gpu:.2f} GiB per GPU, "
                     f"{per_gpu * fp.tensor_parallel_size:.2f} GiB on the {fp.tensor_parallel_size} GPUs")
        evidence.append(line)
    agree = sum((s.swapped > 0) == (s.cpu_kv_pct > 0) for s in cfs.stats)
    evidence.append(f"CPU KV usage was above 0 exactly on the lines with Swapped > 0: {agree} of {len(cfs.stats)} lines")
    out = cfs.cfs_counters.get("blocks_swapped_out", 0)
    if fp and cfs.cfs_counters:
        evidence.append(f"blocks swapped out in run 1: {out} = {fp.gib(out):.2f} GiB of KV per GPU")
    swapped_any = any(s.swapped > 0 for s in cfs.stats) or out > 0
    if swapped_any and agree == len(cfs.stats):
        derived = True
        reason = ("the CPU pool is counted in KV blocks, and it filled exactly while requests were swapped out: what "
                  "moves is their KV cache")
    else:
        derived = False
        reason = (("nothing was swapped" if not swapped_any
                                               else "CPU usage did not track Swapped line by line")
                  + "; the answer rests on the swap space being sized in KV blocks")
    return WHAT_IS_SWAPPED.answer("a", derived, reason, evidence)


def main_tradeoff(study: Study) -> Answer:
    cfs = study.cfs
    fp = study.footprint
    tpot_fcfs, tpot_cfs = study.rows[0].p99_tpot_ms, study.rows[study.cfs_interval].p99_tpot_ms
    out = cfs.cfs_counters.get("blocks_swapped_out", 0)
    back = cfs.cfs_counters.get("blocks_swapped_in", 0)
    recomputed = cfs.cfs_counters.get("preempted_by_recompute", 0)
    cfs_runs = study.task32.interval(study.cfs_interval).runs.values()
    finished = all(r.summary.failed == 0 for r in cfs_runs)
    worst_ttft = max((r.ttft_s for r in cfs.result.records if r.ttft_s is not None), default=None)
    evidence = [
        f"P99 TPOT (median of runs): FCFS {_ms(tpot_fcfs)}, CFS interval {study.cfs_interval} {_ms(tpot_cfs)} "
        f"({(tpot_cfs / tpot_fcfs - 1):+.1%})",
        f"output throughput (median of runs): FCFS {study.rows[0].output_throughput:.1f} tokens/s, CFS "
        f"{study.rows[study.cfs_interval].output_throughput:.1f} tokens/s",
        (f"swap traffic in CFS run 1: {out} blocks out, {back} blocks in"
         + (f" = {fp.gib(out + back):.2f} GiB per GPU over the host link" if fp else "")
         if cfs.cfs_counters else "swap traffic in CFS run 1: not logged (no CFS stats line); "
         + _preempted(cfs)[1]),
        "vLLM 0.9 copies swapped blocks on the compute stream before the step's forward pass: the GPU computes "
        "nothing while they move",
        f"no starvation: every request completed in every CFS run: {'yes' if finished else 'no'}; "
        f"longest TTFT in run 1: {_ms(None if worst_ttft is None else worst_ttft * 1000)}",
    ]
    if cfs.cfs_counters:
        evidence.append(f"KV cache kept across preemption: preemptions by recompute = {recomputed}")
    preempted, how_many = _preempted(cfs)
    if preempted and tpot_cfs > tpot_fcfs and finished:
        derived = True
        reason = (f"TPOT rose {tpot_cfs / tpot_fcfs - 1:+.0%} while KV crossed the host link between steps "
                  f"({how_many}); every request finished (no starvation)"
                  + (", and no KV was recomputed" if cfs.cfs_counters and recomputed == 0 else ""))
    else:
        derived = False
        reason = (("nothing was swapped" if not preempted else
                                               "TPOT did not rise or a request did not finish")
                  + "; the answer rests on swaps being copies the GPU waits for")
    return MAIN_TRADEOFF.answer("b", derived, reason, evidence)


def interval_trend(study: Study) -> Answer:
    rows = study.rows
    evidence = [f"{interval_label(i)}: P99 TTFT {_ms(r.p99_ttft_ms)}, P99 TPOT {_ms(r.p99_tpot_ms)}, output "
                f"{r.output_throughput:.1f} tokens/s (median of {r.runs} runs)" for i, r in rows.items()]
    for a, b in ((5, 10), (20, 40)):
        t = ev.tradeoff(rows, a, b)
        if t is None:
            evidence.append(f"interval {a} -> {b}: not in this sweep")
            continue
        per_second = t.tpot_saved_per_ttft_second
        evidence.append(f"interval {a} -> {b}: TTFT added {t.ttft_added_s:+.2f} s, TPOT saved {t.tpot_saved_ms:+.2f} ms; "
                        + ("TPOT saved per second of TTFT added: n/a (TTFT did not rise)" if per_second is None
                           else f"TPOT saved per second of TTFT added: {per_second:.2f} ms/s"))
    if TREND_FROM in rows and TREND_TO in rows:
        ttft_up = rows[TREND_TO].p99_ttft_ms > rows[TREND_FROM].p99_ttft_ms
        tpot_up = rows[TREND_TO].p99_tpot_ms > rows[TREND_FROM].p99_tpot_ms
        choice = {(True, False): "a", (False, True): "b", (True, True): "c", (False, False): "d"}[(ttft_up, tpot_up)]
        derived = True
        reason = (f"from interval {TREND_FROM} to {TREND_TO} the median P99 TTFT went "
                  f"{_ms(rows[TREND_FROM].p99_ttft_ms)} -> {_ms(rows[TREND_TO].p99_ttft_ms)} and P99 TPOT "
                  f"{_ms(rows[TREND_FROM].p99_tpot_ms)} -> {_ms(rows[TREND_TO].p99_tpot_ms)}")
    else:
        choice, derived = "a", False
        reason = (f"the sweep lacks interval {TREND_FROM} or {TREND_TO}; the answer rests on "
                  "fewer CFS steps meaning fewer preemptions")
    return INTERVAL_TREND.answer(choice, derived, reason, evidence)


def answer_all(study: Study) -> list[Answer]:
    return [default_policy(study), batching_limit(study), how_cfs_cuts_ttft(study), what_is_swapped(study),
            main_tradeoff(study), interval_trend(study)]


TABLE_TITLE = ("P99 TTFT, P99 TPOT, P99 ITL and output throughput per scheduler: FCFS (interval 0), CFS at "
               "each interval, and our FairScheduler when it ran (median over runs)")


def interval_table(study: Study, preemptions_per_run: bool = False) -> list[str]:
    """One line per scheduler; V1's table adds each run's preemptions (from /metrics)."""
    header = (f"{'scheduler':>9}  {'interval':>8}  {'runs':>4}  {'P99 TTFT (ms)':>13}  {'P99 TPOT (ms)':>13}  "
              f"{'P99 ITL (ms)':>12}  {'output (tok/s)':>14}" + ("  preemptions per run" if preemptions_per_run else ""))
    lines = [header]
    for row in study.table_rows:
        if row.interval is None:
            scheduler, interval = "Fair", "-"
        else:
            scheduler, interval = ("FCFS" if row.interval == 0 else "CFS"), str(row.interval)
        itl = "n/a" if row.p99_itl_ms is None else f"{row.p99_itl_ms:.1f}"
        line = (f"{scheduler:>9}  {interval:>8}  {row.runs:>4}  {row.p99_ttft_ms:>13.1f}  "
                f"{row.p99_tpot_ms:>13.1f}  {itl:>12}  {row.output_throughput:>14.1f}")
        if preemptions_per_run:
            line += "  " + ", ".join("n/a" if v is None else str(v) for v in study.preemptions(row.interval))
        lines.append(line)
    return lines


def format_answers(study: Study, answers: Sequence[Answer]) -> str:
    setup = study.fcfs_31.result.setup
    fair = f", {study.fair_folder.path} (FairScheduler, in the table only)" if study.fair_folder else ""
    if study.swap_paths:
        fair += f", {study.swap_paths.folder.path} (task 3.2 on the staged swap worker, in the swap table only)"
    lines = [
        "hw2 answers: every MCQ with the evidence measured in this run",
        f"GPU: {study.gpu}",
        f"workload: {setup.get('num_prompts')} requests at {setup.get('request_rate')} req/s, "
        f"{setup.get('dataset')}, seed {setup.get('seed')}",
        f"inputs: {study.task31.path} (task 3.1), {study.task32.path} (task 3.2 sweep){fair}; "
        f"CFS is compared at interval {study.cfs_interval}; request indices are 0-based in issue order",
        "",
    ]
    for a in answers:
        lines.append(f"Section {a.section}, MCQ {a.number}, answer ({a.choice}) {a.choice_text}")
        lines.append(f"  Q: {a.question}")
        lines.append("  Options: " + "  ".join(f"({letter}) {text}" for letter, text in a.options))
        lines.append(f"  {'Derived from the evidence' if a.derived else 'Not shown by this run'}: {a.reason}")
        lines.append("  Evidence:")
        lines.extend(f"    - {item}" for item in a.evidence)
        lines.append("")
    lines.append(TABLE_TITLE)
    lines.extend("  " + line for line in interval_table(study))
    if study.swap_paths:
        lines += ["", *swap_paths_table(study.swap_paths, study.gpu, study.simulated)]
    return "\n".join(lines) + "\n"
