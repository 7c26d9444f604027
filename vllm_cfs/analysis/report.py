"""report.pdf: the setup, every plot, the interval table and the answers with their evidence.

matplotlib's PdfPages, so the report needs nothing beyond the plotting library; text pages are
figures holding monospaced text.
"""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from vllm_cfs.analysis.answers import TABLE_TITLE, Answer, format_answers, interval_table  # noqa: E402
from vllm_cfs.analysis.answers_v1 import (TABLE_TITLE_V1, format_answers_v1, interval_table_v1,  # noqa: E402
                                          table_notes)
from vllm_cfs.analysis.plots import PlotData  # noqa: E402
from vllm_cfs.analysis.study import Study  # noqa: E402
from vllm_cfs.analysis.swap_paths import swap_paths_table  # noqa: E402

PAGE_IN = (8.27, 11.69)  # A4 portrait
LINES_PER_PAGE = 64
WRAP = 104
ENV_KEYS = ("date", "gpu", "engine", "host", "cpu_cores", "python", "vllm", "torch", "transformers", "vllm-cfs",
            "vllm_cfs_commit", "model", "tensor_parallel_size", "preemption_mode", "swap_space_gib", "gpu_blocks",
            "scheduler", "cfs_min_granularity", "intervals", "runs_per_interval", "num_prompts", "request_rate", "seed",
            "dataset", "random_input_len", "random_output_len", "client_args")
# FairScheduler's folder shares the workload and versions; what differs is said once.
FAIR_ENV_KEYS = ("date", "scheduler", "fair_patience_tokens", "runs_per_interval", "vllm_cfs_commit")
# Likewise the staged swap's sweep: the same sweep but for the worker.
STAGED_ENV_KEYS = ("date", "swap", "worker_cls", "intervals", "runs_per_interval", "vllm_cfs_commit")


def setup_lines(study: Study) -> list[str]:
    env = {**study.task31.env, **study.task32.env}
    setup = study.fcfs_31.result.setup
    title = "CFS scheduling and our FairScheduler vs vLLM's FCFS" if study.fair else "CFS scheduling vs vLLM's FCFS"
    if study.v1:
        title += f" on {study.engine_label}"
    lines = [f"vllm-cfs hw2 report: {title} under a burst", ""]
    if study.v1:
        lines += [f"ENGINE: {study.engine_label}. Every plot, table and measurement in this report comes from it",
                  "(preemption by recompute only: V1 has no swap). The MCQ answers are those of the V0 run",
                  "(`make hw2`, vLLM 0.9.0), said as such at the end.", ""]
    if study.simulated:
        lines += [f"GPU: {study.gpu}. SIMULATED: vLLM's real engine, scheduler and server ran;",
                  "the GPU's time and memory were modeled (vllm_cfs.sim): times are what the modeled GPUs would take.",
                  ""]
    else:
        lines += [f"GPU: {study.gpu}", ""]
    lines.append(f"report written: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    lines.append(f"workload: {setup.get('num_prompts')} requests, {setup.get('request_rate')} req/s (Poisson, "
                 f"burstiness {setup.get('burstiness')}), seed {setup.get('seed')}, {setup.get('dataset')}")
    lines += ["", "environment (env.txt):"]
    lines += [f"  {key}: {env[key]}" for key in ENV_KEYS if key in env]
    if study.fair_folder is not None:
        fair_env = study.fair_folder.env
        lines += ["", f"FairScheduler's runs ({study.fair_folder.path}/env.txt; the same workload):"]
        lines += [f"  {key}: {fair_env[key]}" for key in FAIR_ENV_KEYS if key in fair_env]
        where = "vllm_cfs/v1/scheduler.py" if study.v1 else "vllm_cfs/v0/fair.py"
        lines += [f"  FairScheduler ({where}, docs/policies.md): first token first (a request with no token yet",
                  "  takes the room of the running request that arrived last, after waiting up to fair_patience_tokens",
                  "  steps for a finishing one's), then first come first served."]
    if study.swap_paths is not None:
        staged_env = study.swap_paths.folder.env
        lines += ["", f"The 3.2 sweep on the staged swap worker ({study.swap_paths.folder.path}/env.txt; the same "
                  "workload):"]
        lines += [f"  {key}: {staged_env[key]}" for key in STAGED_ENV_KEYS if key in staged_env]
        lines += ["  staged swap (vllm_cfs/swap, docs/swap.md): all of a swap's blocks gathered into a staging buffer",
                  "  on the GPU and copied in one transfer per run of host blocks, instead of vLLM's copy per block",
                  "  and layer; the buffer's blocks come out of the GPU's KV cache."]
    if study.v1:
        lines += ["", TABLE_TITLE_V1 + ":"]
        lines += ["  " + line for line in interval_table_v1(study) + table_notes(study)]
    else:
        lines += ["", TABLE_TITLE + ":"]
        lines += ["  " + line for line in interval_table(study)]
    if study.swap_paths is not None:
        lines += ["", *swap_paths_table(study.swap_paths, study.gpu, study.simulated)]
    fair = " and FairScheduler" if study.fair else ""
    lines += ["", f"Plots compare FCFS (interval 0) with CFS interval {study.cfs_interval}{fair}, first run of each."]
    if study.fair and not study.v1:
        lines.append("The MCQ answers rest on FCFS and CFS alone, as the assignment asks.")
    return lines


def _wrap(lines: Sequence[str]) -> list[str]:
    wrapped = []
    for line in lines:
        indent = len(line) - len(line.lstrip())
        wrapped += textwrap.wrap(line, WRAP, subsequent_indent=" " * (indent + 4)) or [""]
    return wrapped


def _text_pages(pdf: PdfPages, lines: Sequence[str]) -> None:
    wrapped = _wrap(lines)
    for start in range(0, len(wrapped), LINES_PER_PAGE):
        fig = plt.figure(figsize=PAGE_IN)
        fig.text(0.05, 0.96, "\n".join(wrapped[start:start + LINES_PER_PAGE]), family="monospace", fontsize=7.2,
                 va="top", ha="left")
        pdf.savefig(fig)
        plt.close(fig)


def _plot_pages(pdf: PdfPages, plots: Sequence[PlotData], source: str = "") -> None:
    """``source``: said after each plot's name (on V1: the engine and GPU it comes from)."""
    for start in range(0, len(plots), 2):
        fig = plt.figure(figsize=PAGE_IN)
        for slot, plot in enumerate(plots[start:start + 2]):
            ax = fig.add_axes((0.04, 0.52 - 0.48 * slot, 0.92, 0.44))
            ax.imshow(mpimg.imread(plot.path))
            ax.set_axis_off()
            ax.set_title(str(plot.path.parent.name + "/" + plot.path.name) + source, fontsize=8, loc="left")
        pdf.savefig(fig)
        plt.close(fig)


def write_report(study: Study, plots: Sequence[PlotData], answers: Sequence[Answer], path: Path) -> int:
    """Write the PDF; returns its page count."""
    with PdfPages(path) as pdf:
        _text_pages(pdf, setup_lines(study))
        _plot_pages(pdf, plots, f": {study.engine_label}, {study.gpu}" if study.v1 else "")
        text = format_answers_v1(study, answers) if study.v1 else format_answers(study, answers)
        _text_pages(pdf, text.splitlines())
        info = pdf.infodict()
        info["Title"] = "vllm-cfs hw2 report"
        staged = ", per-block and staged swap" if study.swap_paths else ""
        engine = f", {study.engine_label}" if study.v1 else ""
        info["Subject"] = f"CFS{' and FairScheduler' if study.fair else ''} vs FCFS on {study.gpu}{staged}{engine}"
        return pdf.get_pagecount()
