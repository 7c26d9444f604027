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

from vllm_cfs.analysis.answers import Answer, format_answers, interval_table  # noqa: E402
from vllm_cfs.analysis.plots import PlotData  # noqa: E402
from vllm_cfs.analysis.study import Study  # noqa: E402

PAGE_IN = (8.27, 11.69)  # A4 portrait
LINES_PER_PAGE = 64
WRAP = 104
ENV_KEYS = ("date", "gpu", "host", "cpu_cores", "python", "vllm", "torch", "transformers", "vllm-cfs",
            "vllm_cfs_commit", "model", "tensor_parallel_size", "preemption_mode", "swap_space_gib", "scheduler",
            "cfs_min_granularity", "intervals", "runs_per_interval", "num_prompts", "request_rate", "seed",
            "dataset", "random_input_len", "random_output_len", "client_args")


def setup_lines(study: Study) -> list[str]:
    env = {**study.task31.env, **study.task32.env}
    setup = study.fcfs_31.result.setup
    lines = ["vllm-cfs hw2 report: CFS scheduling vs vLLM's FCFS under a burst", ""]
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
    lines += ["", "P99 TTFT, P99 TPOT and output throughput per CFS interval (median over runs):"]
    lines += ["  " + line for line in interval_table(study)]
    lines += ["", f"Plots compare FCFS (interval 0) with CFS interval {study.cfs_interval}, first run of each."]
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


def _plot_pages(pdf: PdfPages, plots: Sequence[PlotData]) -> None:
    for start in range(0, len(plots), 2):
        fig = plt.figure(figsize=PAGE_IN)
        for slot, plot in enumerate(plots[start:start + 2]):
            ax = fig.add_axes((0.04, 0.52 - 0.48 * slot, 0.92, 0.44))
            ax.imshow(mpimg.imread(plot.path))
            ax.set_axis_off()
            ax.set_title(str(plot.path.parent.name + "/" + plot.path.name), fontsize=8, loc="left")
        pdf.savefig(fig)
        plt.close(fig)


def write_report(study: Study, plots: Sequence[PlotData], answers: Sequence[Answer], path: Path) -> int:
    """Write the PDF; returns its page count."""
    with PdfPages(path) as pdf:
        _text_pages(pdf, setup_lines(study))
        _plot_pages(pdf, plots)
        _text_pages(pdf, format_answers(study, answers).splitlines())
        info = pdf.infodict()
        info["Title"] = "vllm-cfs hw2 report"
        info["Subject"] = f"CFS vs FCFS on {study.gpu}"
        return pdf.get_pagecount()
