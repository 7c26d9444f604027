"""From the results folders to every output: the nine plots, answers.txt and report.pdf.

    results_3.1/{ttft,tpot,gpu_kv}.png
    results_3.2/{ttft,tpot,gpu_kv,cpu_kv,waiting,pareto}.png
    OUT/answers.txt, OUT/report.pdf

On vLLM V1 there is no CPU KV (no swap): results_3.2/preemptions.png, each scheduler's
preemptions per run, takes cpu_kv.png's place.

With FairScheduler's folder (results_fair), the 3.2 plots and the table gain Fair as a third line
beside FCFS and CFS, and results_fair/policies.png shows the four figures of each side by side.
With the sweep on the staged swap worker (results_3.2_staged), answers.txt and the report gain the
table of both swap paths per interval, and results_3.2_staged/swap_paths.png draws it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

from vllm_cfs.analysis import plots as p
from vllm_cfs.analysis.answers import Answer, answer_all, format_answers
from vllm_cfs.analysis.answers_v1 import answer_all_v1, format_answers_v1
from vllm_cfs.analysis.report import write_report
from vllm_cfs.analysis.study import COMPARED_INTERVAL, Study, load_study


@dataclasses.dataclass
class Outputs:
    study: Study
    plots: list[p.PlotData]
    answers: list[Answer]
    answers_path: Path
    report_path: Path
    report_pages: int


def make_plots(study: Study) -> list[p.PlotData]:
    d31, d32 = study.task31.path, study.task32.path
    note = study.footnote
    fcfs31 = {study.fcfs_31.label: study.fcfs_31.result}
    pair = {b.label: b.result for b in study.compared}
    pair_stats = {b.label: b.stats for b in study.compared}
    if study.v1:
        swap_or_preemptions = p.preemptions_plot({row.interval: study.preemptions(row.interval)
                                                  for row in study.table_rows}, d32 / "preemptions.png", note)
    else:
        swap_or_preemptions = p.cpu_kv_plot(pair_stats, d32 / "cpu_kv.png", note)
    plots = [
        p.ttft_plot(fcfs31, d31 / "ttft.png", note),
        p.tpot_plot(fcfs31, d31 / "tpot.png", note),
        p.gpu_kv_plot({study.fcfs_31.label: study.fcfs_31.stats}, d31 / "gpu_kv.png", note),
        p.ttft_plot(pair, d32 / "ttft.png", note),
        p.tpot_plot(pair, d32 / "tpot.png", note),
        p.gpu_kv_plot(pair_stats, d32 / "gpu_kv.png", note),
        swap_or_preemptions,
        p.waiting_plot(pair_stats, d32 / "waiting.png", note, v1=study.v1),
        p.pareto_plot(study.table_rows, d32 / "pareto.png", note),
    ]
    if study.fair_folder is not None:
        plots.append(p.policies_plot(study.table_rows, study.fair_folder.path / "policies.png", note))
    if study.swap_paths is not None:
        plots.append(p.swap_paths_plot(study.swap_paths, study.swap_paths.folder.path / "swap_paths.png", note))
    return plots


def analyze(task31_dir: Path, task32_dir: Path, out_dir: Optional[Path] = None,
            cfs_interval: int = COMPARED_INTERVAL, progress: Callable[[str], None] = lambda _: None,
            fair_dir: Optional[Path] = None, staged_dir: Optional[Path] = None) -> Outputs:
    """``fair_dir``: FairScheduler's results folder, or None for the assignment's FCFS and CFS alone;
    ``staged_dir``: the sweep on the staged swap worker, or None for vLLM's per-block swap alone."""
    study = load_study(task31_dir, task32_dir, cfs_interval, fair_dir, staged_dir)
    fair_runs = len(study.fair_folder.fair.runs) if study.fair_folder else 0
    fair = f", FairScheduler's {fair_runs} run{'s' * (fair_runs != 1)}" if fair_runs else ""
    if study.swap_paths:
        staged = study.swap_paths.folder.intervals
        count = sum(len(r.runs) for r in staged.values())
        fair += f", {count} staged swap run{'s' * (count != 1)} over intervals {sorted(staged)}"
    engine = f"; engine: {study.engine_label}" if study.v1 else ""
    progress(f"read {sum(len(r.runs) for r in study.task32.intervals.values())} sweep runs over intervals "
             f"{sorted(study.task32.intervals)}{fair} and task 3.1's run; GPU: {study.gpu}{engine}")
    plots = make_plots(study)
    progress(f"wrote {len(plots)} plots")
    out_dir = Path(out_dir) if out_dir else Path(task32_dir).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    answers = answer_all_v1(study) if study.v1 else answer_all(study)
    answers_path = out_dir / "answers.txt"
    answers_path.write_text(format_answers_v1(study, answers) if study.v1 else format_answers(study, answers))
    progress(f"wrote {answers_path}")
    report_path = out_dir / "report.pdf"
    pages = write_report(study, plots, answers, report_path)
    progress(f"wrote {report_path} ({pages} pages)")
    return Outputs(study, plots, answers, answers_path, report_path, pages)
