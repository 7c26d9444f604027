"""The sweep's plots: P99 TTFT against P99 TPOT per policy (the ideal bound marked), and TTFT per
request. PNG through matplotlib; every plot says it shows the simulated GPU's virtual-time replay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib.ticker import FuncFormatter

from vllm_cfs.analysis.plots import DPI, SIZE_IN, plt, ttft_plot
from vllm_cfs.lab.sweep import GPU_LABEL, SETUP, WORKLOADS, Run, Row, median_rows

IDEAL = "ideal"


def tradeoff_plot(rows: Sequence[Row], workload: str, path: Path) -> Path:
    """One point per policy (median over seeds): P99 TPOT across (log scale), P99 TTFT up; the ideal
    bound a star with a dotted line at its P99 TTFT. It bounds waiting for memory, not TPOT: its
    batches are the largest, so policies that hold requests back can decode faster than it.
    Policies on the same point share one label."""
    points = [m for m in median_rows(rows) if m["workload"] == workload]
    seeds = sorted({s for m in points for s in m["seeds"]})
    at: dict[tuple[float, float], list[str]] = {}
    for m in points:
        at.setdefault((m["p99_tpot_ms"], m["p99_ttft_ms"] / 1000), []).append(m["key"])
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    try:
        for (x, y), keys in at.items():
            if IDEAL in keys:
                ax.scatter([x], [y], marker="*", s=220, color="tab:green", zorder=4, label="ideal bound (unlimited KV)")
                ax.axhline(y, color="tab:green", linestyle=":", linewidth=1)
            else:
                ax.scatter([x], [y], s=36, color="tab:red" if "ours" in keys else "tab:blue", zorder=3)
        xs, ys = [x for x, _ in at], [y for _, y in at]
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
        ax.set_xlim(min(xs) / 1.25, max(xs) * 1.8)
        ax.set_ylim(0, max(ys) * 1.12 or 1)
        _label_points(ax, {point: " = ".join(keys) for point, keys in at.items()})
        ax.set_title(f"P99 TTFT vs P99 TPOT per policy: {workload} — {GPU_LABEL}", fontsize=10)
        ax.set_xlabel("P99 TPOT (ms, log scale)")
        ax.set_ylabel("P99 TTFT (s)")
        ax.grid(True, which="both", alpha=0.3)
        if any(IDEAL in keys for keys in at.values()):  # the bound is the one labelled artist
            ax.legend(fontsize=8, loc="upper right")
        about = WORKLOADS[workload].description if workload in WORKLOADS else workload
        fig.text(0.01, 0.01, f"{GPU_LABEL}: {SETUP}\n{workload}: {about}; median over seeds {', '.join(map(str, seeds))}",
                 fontsize=7, color="dimgrey", ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _label_points(ax, labels: dict[tuple[float, float], str], fontsize: float = 8) -> None:
    """Each label beside its point, on the first side (right/left, above/below) where it overlaps
    no label placed before it; higher points are placed first."""
    px = ax.figure.dpi / 72  # pixels per point
    char_w, line_h = 0.55 * fontsize * px, 1.2 * fontsize * px
    placed: list[tuple[float, float, float, float]] = []
    for (x, y), text in sorted(labels.items(), key=lambda item: -item[0][1]):
        X, Y = ax.transData.transform((x, y))
        w = char_w * len(text)
        options = [(5 * px, 3 * px), (5 * px, -3 * px - line_h), (-5 * px - w, 3 * px), (-5 * px - w, -3 * px - line_h)]
        boxes = [(X + dx, Y + dy, X + dx + w, Y + dy + line_h) for dx, dy in options]
        free = [b for b in boxes if not any(b[0] < p[2] and p[0] < b[2] and b[1] < p[3] and p[1] < b[3] for p in placed)]
        box = (free or boxes)[0]
        placed.append(box)
        ax.annotate(text, (x, y), textcoords="offset pixels", xytext=(box[0] - X, box[1] - Y), fontsize=fontsize,
                    va="bottom", ha="left")


def ttft_per_request_plot(runs: Sequence[Run], path: Path) -> Path:
    """TTFT of each request in issue order, one line per run (one workload and seed)."""
    workloads = {(r.workload, r.seed) for r in runs}
    (workload, seed), = workloads
    ttft_plot({r.policy.key: r.result for r in runs}, path,
              footnote=f"{GPU_LABEL}: 2 x A100-40GB, CodeLlama-34B, TP 2; workload {workload}, seed {seed}")
    return path


def sweep_plots(runs: Sequence[Run], folder: Path, ttft_keys: Sequence[str] = ("fcfs", "cfs-10", "ours", "ideal"),
                ) -> list[Path]:
    """The trade-off plot of every workload, and TTFT per request for seed 0 (or the first seed) of
    each workload, for the policies in ``ttft_keys`` that ran."""
    rows = [r.row for r in runs]
    paths = []
    for workload in dict.fromkeys(r.workload for r in runs):
        paths.append(tradeoff_plot(rows, workload, folder / f"policies-tradeoff-{workload}.png"))
        seed = min(r.seed for r in runs if r.workload == workload)
        chosen = [r for r in runs if r.workload == workload and r.seed == seed and r.policy.key in ttft_keys]
        if chosen:
            paths.append(ttft_per_request_plot(chosen, folder / f"policies-ttft-{workload}-seed{seed}.png"))
    return paths
