"""One experiment's data, named for what it is: task 3.1's FCFS burst, the 3.2 sweep, our
FairScheduler's runs when there are any, the 3.2 sweep on the staged swap worker when it ran,
and the facts read once from the logs (KV blocks, KV bytes per token, GPU real or simulated).

Plots use each interval's first run; the interval table gives medians over all runs.

The engine (V0 or vLLM V1) is read from env.txt, else from the server logs: a V1 study has no
swap (no staged sweep, no CPU KV), and each run's preemptions from the server's /metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from vllm_cfs.analysis.evidence import IntervalRow, interval_row
from vllm_cfs.analysis.inputs import (FAIR, FAIR_LABEL, FCFS, InputError, IntervalResults, ResultsFolder,
                                      load_results)
from vllm_cfs.analysis.kv_memory import KvFootprint, kv_footprint
from vllm_cfs.analysis.server_log import KvBlocks, StatsSample
from vllm_cfs.analysis.swap_paths import SwapPaths, first_log_value, swap_path_rows
from vllm_cfs.results import RunResult

COMPARED_INTERVAL = 10  # the assignment's CFS setting: plots compare it with FCFS
# What makes two bursts the same workload (the client's setup keys): Fair is compared with the
# sweep only on the burst the sweep ran.
WORKLOAD_KEYS = ("gpu", "dataset", "num_prompts", "request_rate", "burstiness", "seed")


@dataclasses.dataclass(frozen=True)
class Burst:
    """One run: the client's records and the server's stats lines while it ran."""

    label: str
    result: RunResult
    stats: tuple[StatsSample, ...]
    cfs_counters: dict[str, int]  # the last CFS stats line of the run (empty if none)


def _burst(results: IntervalResults, run: int, label: str) -> Burst:
    log = results.run_log(run)
    stats = tuple(log.stats) if log else ()
    counters = dict(log.cfs[-1].counters) if log and log.cfs else {}
    return Burst(label, results.runs[run], stats, counters)


@dataclasses.dataclass
class Study:
    task31: ResultsFolder
    task32: ResultsFolder
    cfs_interval: int  # the CFS interval compared with FCFS
    fcfs_31: Burst  # task 3.1
    fcfs: Burst  # task 3.2, interval 0, first run
    cfs: Burst  # task 3.2, cfs_interval, first run
    rows: dict[int, IntervalRow]  # interval -> medians over its runs
    blocks: Optional[KvBlocks]
    footprint: Optional[KvFootprint]
    gpu: str  # "simulated GPU (a100-40gb x2)" or the real GPU env.txt names
    # FairScheduler: its folder, its first run and the medians over its runs (None: not run)
    fair_folder: Optional[ResultsFolder] = None
    fair: Optional[Burst] = None
    fair_row: Optional[IntervalRow] = None
    # the 3.2 sweep again on the staged swap worker, beside the per-block one (None: not run)
    swap_paths: Optional[SwapPaths] = None
    engine: str = "v0"  # "v0": vLLM 0.9.0's V0 engine; "v1": vLLM V1
    vllm_version: Optional[str] = None  # as env.txt or the engine's config line gives it

    @property
    def v1(self) -> bool:
        return self.engine == "v1"

    @property
    def engine_label(self) -> str:
        """E.g. "vLLM V1 (0.24.0)"."""
        name = "vLLM V1" if self.v1 else "vLLM V0"
        return f"{name} ({self.vllm_version})" if self.vllm_version else name

    def results_of(self, interval: Optional[int]) -> IntervalResults:
        """The runs of a table row: a sweep interval, or FairScheduler's (``FAIR``)."""
        if interval is FAIR:
            if self.fair_folder is None or self.fair_folder.fair is None:
                raise KeyError("no FairScheduler runs in this study")
            return self.fair_folder.fair
        return self.task32.interval(interval)

    def preemptions(self, interval: Optional[int]) -> tuple[Optional[int], ...]:
        """Each run's preemptions of a table row, in run order (None: no /metrics kept for it)."""
        results = self.results_of(interval)
        return tuple(results.preemptions(run) for run in results.runs)

    def prefix_cache_hits(self, interval: Optional[int]) -> tuple[Optional[int], ...]:
        results = self.results_of(interval)
        return tuple(results.prefix_cache_hits(run) for run in results.runs)

    @property
    def simulated(self) -> bool:
        return self.gpu.startswith("simulated")

    @property
    def compared(self) -> tuple[Burst, ...]:
        """What the 3.2 plots draw side by side: FCFS, CFS at the compared interval, and Fair."""
        return (self.fcfs, self.cfs) + ((self.fair,) if self.fair else ())

    @property
    def table_rows(self) -> list[IntervalRow]:
        """The comparison table: every interval of the sweep, then Fair."""
        return list(self.rows.values()) + ([self.fair_row] if self.fair_row else [])

    @property
    def footnote(self) -> str:
        setup = self.fcfs_31.result.setup
        workload = (f"{setup.get('num_prompts', '?')} requests at {setup.get('request_rate', '?')} req/s "
                    f"({str(setup.get('dataset', '?')).split(' ')[0]}), CodeLlama-34B, TP 2")
        if self.v1:
            return f"{self.gpu}; {self.engine_label}; {workload}, recompute preemption"
        return f"{self.gpu}; {workload}, swap preemption"


def _gpu(folders: tuple[ResultsFolder, ...]) -> str:
    for folder in folders:
        for results in folder.intervals.values():
            if results.log and results.log.simulated:
                sim = results.log.simulated
                return f"simulated GPU ({sim.profile} x{sim.tensor_parallel_size})"
    for folder in folders:
        if folder.env.get("gpu"):
            return folder.env["gpu"]
    return "GPU unknown (no simulated-GPU line in the logs, no env.txt)"


def _blocks_and_footprint(folders: tuple[ResultsFolder, ...]) -> tuple[Optional[KvBlocks], Optional[KvFootprint]]:
    blocks = footprint = None
    for folder in folders:
        for results in folder.intervals.values():
            log = results.log
            if log is None:
                continue
            blocks = blocks or log.blocks
            tp = (log.engine and log.engine.tensor_parallel_size) or (log.simulated and log.simulated.tensor_parallel_size)
            if footprint is None and folder.model_config and tp:
                footprint = kv_footprint(folder.model_config, tp, log.engine.dtype if log.engine else None)
    return blocks, footprint


def _engine(folders: tuple[ResultsFolder, ...]) -> tuple[str, Optional[str]]:
    """("v0" or "v1", vLLM's version): env.txt's engine and vllm lines (a V0 sweep writes no
    engine line), else the server logs; V0 when nothing says."""
    for folder in folders:
        version = folder.env.get("vllm")
        if folder.env.get("engine") in ("v0", "v1"):
            return folder.env["engine"], version
        if version and version[0].isdigit():
            return ("v0" if version.startswith("0.9.") else "v1"), version
    for folder in folders:
        for results in folder.intervals.values():
            if results.log and results.log.engine_name:
                config = results.log.engine
                return results.log.engine_name.lower(), config.vllm_version if config else None
    return "v0", None


def _check_same_workload(fcfs: IntervalResults, other: IntervalResults, path, what: str) -> None:
    """``what``: the runs' name in the message, before the run number ("FairScheduler's run")."""
    reference = fcfs.runs[fcfs.first_run].setup
    for run, result in other.runs.items():
        differs = [f"{key} {result.setup.get(key)!r} vs {reference.get(key)!r}" for key in WORKLOAD_KEYS
                   if result.setup.get(key) != reference.get(key)]
        if differs:
            raise InputError(f"{path}: {what} {run} is not the sweep's burst ({', '.join(differs)})")


def _swap_paths(task32: ResultsFolder, rows: dict[int, IntervalRow], staged_dir) -> SwapPaths:
    """The staged sweep beside the per-block one. A folder whose servers did not run the staged
    worker is refused: its figures under "staged" would compare the per-block path with itself."""
    staged = load_results(staged_dir)
    if not staged.intervals:
        raise InputError(f"{staged.path} holds no sweep results of the staged swap (p<interval>_r<run>.json)")
    for interval, results in staged.intervals.items():
        if results.log is not None:
            if results.log.staging_blocks is None:
                raise InputError(f"{results.log_path} shows no staging buffer: that server ran vLLM's per-block "
                                 "swap, not the staged swap worker (hw2/sweep.sh --swap staged)")
        elif staged.env.get("swap") != "staged":
            raise InputError(f"{staged.path}: interval {interval} has no server log and env.txt does not say "
                             "swap: staged, so nothing shows that it ran the staged swap worker")
        _check_same_workload(task32.interval(FCFS), results, staged.path,
                             f"the staged swap's interval {interval}, run")
    for results in task32.intervals.values():
        if results.log is not None and results.log.staging_blocks is not None:
            raise InputError(f"{results.log_path} shows a staging buffer: the sweep to compare with must run "
                             "vLLM's per-block swap")
    staged_rows = {i: interval_row(i, list(r.runs.values())) for i, r in staged.intervals.items()}
    fcfs = rows.get(FCFS)
    return SwapPaths(
        folder=staged,
        rows=swap_path_rows(rows, staged_rows),
        fcfs_throughput=fcfs.output_throughput if fcfs else None,
        per_block_gpu_blocks=first_log_value(task32, lambda log: log.blocks and log.blocks.gpu_blocks),
        staged_gpu_blocks=first_log_value(staged, lambda log: log.blocks and log.blocks.gpu_blocks),
        staging_blocks=first_log_value(staged, lambda log: log.staging_blocks),
    )


def load_study(task31_dir, task32_dir, cfs_interval: int = COMPARED_INTERVAL, fair_dir=None,
               staged_dir=None) -> Study:
    """``fair_dir``: FairScheduler's folder; ``staged_dir``: the sweep on the staged swap worker."""
    task31, task32 = load_results(task31_dir), load_results(task32_dir)
    fair_folder = load_results(fair_dir) if fair_dir is not None else None
    if fair_folder is not None and fair_folder.fair is None:
        raise InputError(f"{fair_folder.path} holds no FairScheduler results (fair_r<run>.json)")
    fcfs31 = task31.interval(FCFS)
    fcfs32 = task32.interval(FCFS)
    if cfs_interval not in task32.intervals:
        others = sorted(i for i in task32.intervals if i != FCFS)
        if not others:
            raise InputError(f"{task32.path} has no CFS interval to compare with FCFS (only interval 0)")
        cfs_interval = min(others, key=lambda i: abs(i - COMPARED_INTERVAL))
    cfs = task32.interval(cfs_interval)
    rows = {i: interval_row(i, list(r.runs.values())) for i, r in sorted(task32.intervals.items())}
    blocks, footprint = _blocks_and_footprint((task31, task32))
    engine, vllm_version = _engine((task31, task32))
    if engine == "v1" and staged_dir is not None:
        raise InputError(f"{staged_dir}: the staged swap compares two swap paths, and vLLM V1 has no swap "
                         f"({task32.path} ran on V1)")
    fair = fair_folder.fair if fair_folder else None
    if fair is not None:
        _check_same_workload(fcfs32, fair, fair_folder.path, "FairScheduler's run")
    return Study(
        task31=task31,
        task32=task32,
        cfs_interval=cfs_interval,
        fcfs_31=_burst(fcfs31, fcfs31.first_run, "FCFS (task 3.1)"),
        fcfs=_burst(fcfs32, fcfs32.first_run, "FCFS (interval 0)"),
        cfs=_burst(cfs, cfs.first_run, f"CFS interval {cfs_interval}"),
        rows=rows,
        blocks=blocks,
        footprint=footprint,
        gpu=_gpu((task31, task32)),
        fair_folder=fair_folder,
        fair=_burst(fair, fair.first_run, FAIR_LABEL) if fair else None,
        fair_row=interval_row(FAIR, list(fair.runs.values())) if fair else None,
        swap_paths=_swap_paths(task32, rows, staged_dir) if staged_dir is not None else None,
        engine=engine,
        vllm_version=vllm_version,
    )
