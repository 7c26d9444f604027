"""The sweep's plots: P99 TTFT against P99 TPOT per policy (the ideal bound marked), and TTFT per
request. PNG through matplotlib; every plot says it shows the simulated GPU's virtual-time replay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vllm_cfs.analysis.plots import DPI, SIZE_IN, plt, ttft_plot
from vllm_cfs.lab.sweep import GPU_LABEL, SETUP, WORKLOADS, Run, Row, median_rows

IDEAL = "ideal"


def tradeoff_plot(rows: Sequence[Row], workload: str, path: Path) -> Path:
    """One point per policy (median over seeds): P99 TPOT across, P99 TTFT up; the ideal bound a star
    with dotted lines through it, so what lies left of or below them is out of reach."""
    points = [m for m in median_rows(rows) if m["workload"] == workload]
    seeds = sorted({s for m in points for s in m["seeds"]})
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    try:
        for m in points:
            x, y = m["p99_tpot_ms"], m["p99_ttft_ms"] / 1000
            if m["key"] == IDEAL:
                ax.scatter([x], [y], marker="*", s=220, color="tab:green", zorder=4, label="ideal bound (unlimited KV)")
                ax.axvline(x, color="tab:green", linestyle=":", linewidth=1)
                ax.axhline(y, color="tab:green", linestyle=":", linewidth=1)
            else:
                ax.scatter([x], [y], s=36, color="tab:red" if m["key"] == "ours" else "tab:blue", zorder=3)
            ax.annotate(m["key"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.margins(0.15)
        ax.set_title(f"P99 TTFT vs P99 TPOT per policy: {workload} — {GPU_LABEL}", fontsize=10)
        ax.set_xlabel("P99 TPOT (ms)")
        ax.set_ylabel("P99 TTFT (s)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
        fig.text(0.01, 0.01, f"{GPU_LABEL}: {SETUP}; {WORKLOADS[workload].description if workload in WORKLOADS else workload}; "
                 f"median over seeds {', '.join(map(str, seeds))}", fontsize=6.5, color="dimgrey", ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def ttft_per_request_plot(runs: Sequence[Run], path: Path) -> Path:
    """TTFT of each request in issue order, one line per run (one workload and seed)."""
    workloads = {(r.workload, r.seed) for r in runs}
    (workload, seed), = workloads
    ttft_plot({r.policy.key: r.result for r in runs}, path,
              footnote=f"{GPU_LABEL}: {SETUP}; workload {workload}, seed {seed}")
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
