"""The experiment's plots (matplotlib, Agg): what each shows is built as data first, then drawn.

Every ``*_plot`` function returns the ``PlotData`` it drew, so a caller (or a test) can see
exactly which numbers are in the picture. Times series are per second since the run's first
stats line; per-request series are in issue order.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from vllm_cfs.analysis.evidence import IntervalRow, seconds_since_first  # noqa: E402
from vllm_cfs.analysis.inputs import FAIR, FAIR_LABEL  # noqa: E402
from vllm_cfs.analysis.server_log import StatsSample  # noqa: E402
from vllm_cfs.analysis.swap_paths import PATH_LABELS, PER_BLOCK, STAGED, SwapPaths  # noqa: E402
from vllm_cfs.results import RunResult  # noqa: E402

DPI = 120
SIZE_IN = (8.0, 4.8)


@dataclasses.dataclass(frozen=True)
class Series:
    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    # labelled points: whether the grey line through the sweep's intervals passes here (FairScheduler
    # is no point of that sweep, so a line through it would suggest an interval between two others)
    joined: bool = True
    # line-panels: the panel (its title) this line is drawn in
    panel: str = ""


@dataclasses.dataclass(frozen=True)
class PlotData:
    path: Path
    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    style: str  # "per-request", "over-time", "labelled-points", "bars", "bar-panels" or "line-panels"
    footnote: str = ""  # e.g. "simulated GPU: a100-40gb x2; 50 requests at 3 req/s"
    # bars: one series, one bar per category at x = 0, 1, ...
    # bar-panels: one panel per series (its label titles the panel), one bar per category at x = 0, 1, ...
    # line-panels: the x tick labels, one per x value the series hold, in x order
    categories: tuple[str, ...] = ()


def _per_request(result: RunResult, value: Callable) -> tuple[tuple[float, ...], tuple[float, ...]]:
    points = [(r.index, value(r)) for r in result.records if value(r) is not None]
    return tuple(float(i) for i, _ in points), tuple(float(v) for _, v in points)


def ttft_plot(runs: dict[str, RunResult], path: Path, footnote: str = "") -> PlotData:
    series = tuple(Series(label, *_per_request(result, lambda r: r.ttft_s)) for label, result in runs.items())
    return draw(PlotData(path, "Time to first token per request, in issue order", "request index (issue order)",
                         "TTFT (s)", series, "per-request", footnote))


def tpot_plot(runs: dict[str, RunResult], path: Path, footnote: str = "") -> PlotData:
    series = tuple(Series(label, *_per_request(result, lambda r: None if r.tpot_s is None else r.tpot_s * 1000))
                   for label, result in runs.items())
    return draw(PlotData(path, "Time per output token per request, in issue order", "request index (issue order)",
                         "TPOT (ms)", series, "per-request", footnote))


def _over_time(logs: dict[str, Sequence[StatsSample]], value: Callable[[StatsSample], float]) -> tuple[Series, ...]:
    return tuple(Series(label, tuple(seconds_since_first(samples)), tuple(float(value(s)) for s in samples))
                 for label, samples in logs.items())


def gpu_kv_plot(logs: dict[str, Sequence[StatsSample]], path: Path, footnote: str = "") -> PlotData:
    return draw(PlotData(path, "GPU KV cache usage over time (vLLM stats line, every 5 s)",
                         "seconds since the first stats line", "GPU KV cache usage (%)",
                         _over_time(logs, lambda s: s.gpu_kv_pct), "over-time", footnote))


def cpu_kv_plot(logs: dict[str, Sequence[StatsSample]], path: Path, footnote: str = "") -> PlotData:
    return draw(PlotData(path, "CPU KV cache (swap space) usage over time", "seconds since the first stats line",
                         "CPU KV cache usage (%)", _over_time(logs, lambda s: s.cpu_kv_pct), "over-time", footnote))


def waiting_plot(logs: dict[str, Sequence[StatsSample]], path: Path, footnote: str = "", v1: bool = False) -> PlotData:
    """V0's Pending count, or V1's Waiting (new and preempted requests: V1 has no swapped state)."""
    if v1:
        return draw(PlotData(path, "Requests waiting (vLLM V1's Waiting: new and preempted) over time",
                             "seconds since the first stats line", "waiting requests",
                             _over_time(logs, lambda s: s.pending), "over-time", footnote))
    return draw(PlotData(path, "Requests waiting for admission (Pending) over time", "seconds since the first stats line",
                         "pending requests", _over_time(logs, lambda s: s.pending), "over-time", footnote))


def preemptions_plot(counts: dict[Optional[int], Sequence[Optional[int]]], path: Path, footnote: str = "") -> PlotData:
    """vLLM V1's preemptions per run (all by recompute: the policy's victims and vLLM's own), one
    bar per scheduler: the median of its runs. ``counts``: interval (FAIR for FairScheduler) ->
    each run's count, None where the run's /metrics was not kept; schedulers with none are left out."""
    shown = {interval: [c for c in runs if c is not None] for interval, runs in counts.items()}
    shown = {interval: runs for interval, runs in shown.items() if runs}
    values = tuple(float(statistics.median(runs)) for runs in shown.values())
    runs = sorted({len(r) for r in shown.values()})
    how = _median_of(runs, "each one's runs")
    series = (Series("preemptions", tuple(float(i) for i in range(len(values))), values),)
    return draw(PlotData(path, f"Preemptions per run, by recompute (vllm:num_preemptions_total; {how})", "",
                         "preempted requests per run", series, "bars", footnote,
                         tuple(short_label(interval) for interval in shown)))


def interval_label(interval: Optional[int]) -> str:
    if interval is FAIR:
        return FAIR_LABEL
    return "FCFS (interval 0)" if interval == 0 else f"CFS interval {interval}"


def short_label(interval: Optional[int]) -> str:
    if interval is FAIR:
        return "Fair"
    return "FCFS" if interval == 0 else f"CFS-{interval}"


def _median_of(runs: Sequence[int], mixed: str) -> str:
    if len(runs) != 1:
        return f"median of {mixed}"
    return "1 run" if runs[0] == 1 else f"median of {runs[0]} runs"


def pareto_plot(rows: Sequence[IntervalRow], path: Path, footnote: str = "") -> PlotData:
    series = tuple(Series(interval_label(row.interval), (row.p99_tpot_ms,), (row.p99_ttft_ms / 1000,),
                          joined=row.interval is not FAIR) for row in rows)
    runs = sorted({row.runs for row in rows})
    how = _median_of(runs, "each interval's runs")
    what = "per CFS interval and FairScheduler" if any(r.interval is FAIR for r in rows) else "per CFS interval"
    return draw(PlotData(path, f"P99 TTFT vs P99 TPOT {what} ({how})", "P99 TPOT (ms)", "P99 TTFT (s)",
                         series, "labelled-points", footnote))


# The four figures of the comparison table: (panel title, IntervalRow field).
POLICY_METRICS = (("P99 TTFT (ms)", "p99_ttft_ms"), ("P99 TPOT (ms)", "p99_tpot_ms"),
                  ("P99 ITL (ms)", "p99_itl_ms"), ("output (tokens/s)", "output_throughput"))


def policies_plot(rows: Sequence[IntervalRow], path: Path, footnote: str = "") -> PlotData:
    """FCFS, every CFS interval and FairScheduler side by side, one panel per figure of the table."""
    shown = [row for row in rows if all(getattr(row, field) is not None for _, field in POLICY_METRICS)]
    series = tuple(Series(title, tuple(float(i) for i in range(len(shown))),
                          tuple(float(getattr(row, field)) for row in shown))
                   for title, field in POLICY_METRICS)
    runs = sorted({row.runs for row in shown})
    how = _median_of(runs, "each one's runs")
    return draw(PlotData(path, f"FCFS, CFS and FairScheduler side by side ({how})", "", "", series, "bar-panels",
                         footnote, tuple(short_label(row.interval) for row in shown)))


def swap_paths_plot(paths: SwapPaths, path: Path, footnote: str = "") -> PlotData:
    """The four figures of the table against the CFS interval, one line per swap path: where the
    staged worker's cheaper swaps show, and what its smaller KV cache costs."""
    series = []
    for title, field in POLICY_METRICS:
        for name in (PER_BLOCK, STAGED):
            points = [(row.interval, getattr(row.path(name), field)) for row in paths.rows
                      if row.path(name) is not None and getattr(row.path(name), field) is not None]
            series.append(Series(PATH_LABELS[name], tuple(float(i) for i, _ in points),
                                 tuple(float(v) for _, v in points), panel=title))
    counted = [r.path(name).runs for r in paths.rows for name in (PER_BLOCK, STAGED) if r.path(name)]
    how = _median_of(sorted(set(counted)), "each interval's runs")
    return draw(PlotData(path, f"vLLM's per-block swap vs the staged swap worker per CFS interval ({how})",
                         "CFS interval (0 = FCFS)", "", tuple(series), "line-panels", footnote,
                         tuple(short_label(row.interval) for row in paths.rows)))


def draw(plot: PlotData) -> PlotData:
    if plot.style == "bars":
        return _draw_bars(plot)
    if plot.style == "bar-panels":
        return _draw_panels(plot)
    if plot.style == "line-panels":
        return _draw_line_panels(plot)
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    try:
        for series in plot.series:
            if plot.style == "per-request":
                ax.plot(series.x, series.y, marker="o", markersize=3, linewidth=1, label=series.label)
            elif plot.style == "over-time":
                ax.plot(series.x, series.y, marker=".", linewidth=1.2, label=series.label)
            else:
                # A star sets a point outside the sweep (FairScheduler) apart from its intervals.
                ax.scatter(series.x, series.y, s=40 if series.joined else 110, marker="o" if series.joined else "*",
                           zorder=3)
                ax.annotate(series.label, (series.x[0], series.y[0]), textcoords="offset points", xytext=(6, 6),
                            fontsize=9)
        if plot.style == "labelled-points":
            ax.margins(0.2)  # room for the labels
        if plot.style == "labelled-points" and len(plot.series) > 1:
            ordered = sorted((s for s in plot.series if s.joined), key=lambda s: s.x[0])
            ax.plot([s.x[0] for s in ordered], [s.y[0] for s in ordered], color="grey", linewidth=0.8, zorder=1)
        if plot.style == "over-time" and "%" in plot.ylabel:
            ax.set_ylim(0, 105)
        if plot.style == "per-request" or plot.ylabel.startswith(("pending", "waiting")):
            ax.set_ylim(bottom=0)
        ax.set_title(plot.title, fontsize=11)
        ax.set_xlabel(plot.xlabel)
        ax.set_ylabel(plot.ylabel)
        ax.grid(True, alpha=0.3)
        if plot.style != "labelled-points" and plot.series:
            ax.legend(fontsize=9)
        _save(fig, plot)
    finally:
        plt.close(fig)
    return plot


def _draw_bars(plot: PlotData) -> PlotData:
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    try:
        for series in plot.series:
            bars = ax.bar(series.x, series.y, color="C0")
            ax.bar_label(bars, fmt="%g", fontsize=8)
            ax.set_xticks(series.x, plot.categories, fontsize=9)
        ax.set_title(plot.title, fontsize=11)
        ax.set_ylabel(plot.ylabel)
        ax.set_ylim(bottom=0)
        ax.margins(y=0.15)  # room for the values above the bars
        ax.grid(True, axis="y", alpha=0.3)
        _save(fig, plot)
    finally:
        plt.close(fig)
    return plot


def _draw_panels(plot: PlotData) -> PlotData:
    fig, axes = plt.subplots(2, 2, figsize=SIZE_IN, dpi=DPI)
    try:
        for index, (ax, series) in enumerate(zip(axes.flat, plot.series)):
            bars = ax.bar(series.x, series.y, color=f"C{index}")
            ax.bar_label(bars, fmt="%.0f", fontsize=6)
            ax.set_xticks(series.x, plot.categories, fontsize=7, rotation=30 if len(plot.categories) > 4 else 0)
            ax.set_title(series.label, fontsize=9)
            ax.margins(y=0.15)  # room for the values above the bars
            ax.grid(True, axis="y", alpha=0.3)
        fig.suptitle(plot.title, fontsize=11)
        _save(fig, plot)
    finally:
        plt.close(fig)
    return plot


def _draw_line_panels(plot: PlotData) -> PlotData:
    panels = list(dict.fromkeys(s.panel for s in plot.series))
    ticks = sorted({x for s in plot.series for x in s.x})
    fig, axes = plt.subplots(2, 2, figsize=SIZE_IN, dpi=DPI)
    try:
        for ax, panel in zip(axes.flat, panels):
            for index, series in enumerate(s for s in plot.series if s.panel == panel):
                ax.plot(series.x, series.y, marker="o", markersize=4, linewidth=1.2, color=f"C{index}",
                        label=series.label)
            # Intervals are settings, not a scale: one tick per interval the sweeps ran, named.
            ax.set_xticks(ticks, plot.categories, fontsize=7)
            ax.set_title(panel, fontsize=9)
            ax.set_xlabel(plot.xlabel, fontsize=7)
            ax.margins(x=0.1, y=0.15)
            ax.grid(True, alpha=0.3)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(plot.title, fontsize=11)
        _save(fig, plot)
    finally:
        plt.close(fig)
    return plot


def _save(fig, plot: PlotData) -> None:
    if plot.footnote:
        fig.text(0.01, 0.01, plot.footnote, fontsize=8, color="dimgrey", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04 if plot.footnote else 0, 1, 1))
    plot.path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot.path)
