"""vLLM's per-block swap beside our staged swap worker (vllm_cfs.swap): the task 3.2 sweep run
once per swap path, compared per CFS interval.

    results_3.2/          vLLM's own swap: one copy per KV block and layer
    results_3.2_staged/   hw2/sweep.sh --swap staged (--worker-cls vllm_cfs.swap.StagedSwapWorker)

Every figure is a median over an interval's runs, as in the interval table. The throughput ratio
is to FCFS on the per-block swap, the assignment's baseline, for both paths: it shows what each
path costs or saves against the same reference.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from vllm_cfs.analysis.evidence import IntervalRow
from vllm_cfs.analysis.inputs import FCFS, ResultsFolder

PER_BLOCK = "per-block"
STAGED = "staged"
PATH_LABELS = {PER_BLOCK: "vLLM's per-block swap", STAGED: "staged swap worker"}


@dataclasses.dataclass(frozen=True)
class SwapPathRow:
    """One CFS interval on both paths; None where that path's sweep did not run the interval."""

    interval: int
    per_block: Optional[IntervalRow]
    staged: Optional[IntervalRow]

    def path(self, name: str) -> Optional[IntervalRow]:
        return self.per_block if name == PER_BLOCK else self.staged


@dataclasses.dataclass
class SwapPaths:
    folder: ResultsFolder  # the staged sweep's folder
    rows: list[SwapPathRow]  # by interval, every interval either sweep ran
    fcfs_throughput: Optional[float]  # per-block FCFS output tokens/s (None: the sweep lacks interval 0)
    # GPU KV blocks per GPU on each path, and the staging buffer's, as the server logs give them
    per_block_gpu_blocks: Optional[int]
    staged_gpu_blocks: Optional[int]
    staging_blocks: Optional[int]

    def ratio(self, row: Optional[IntervalRow]) -> Optional[float]:
        if row is None or not self.fcfs_throughput:
            return None
        return row.output_throughput / self.fcfs_throughput


def swap_path_rows(per_block: dict[int, IntervalRow], staged: dict[int, IntervalRow]) -> list[SwapPathRow]:
    return [SwapPathRow(i, per_block.get(i), staged.get(i)) for i in sorted(set(per_block) | set(staged))]


def first_log_value(folder: ResultsFolder, value) -> Optional[int]:
    """``value(log)`` of the first interval whose server log gives one (every start of a sweep sizes
    its KV cache alike, so any one of them speaks for all)."""
    for results in folder.intervals.values():
        if results.log is not None and value(results.log) is not None:
            return value(results.log)
    return None


def swap_paths_title(gpu: str) -> str:
    return (f"vLLM's per-block swap vs the staged swap worker (vllm_cfs.swap.StagedSwapWorker) per CFS interval, "
            f"{gpu}: P99 TTFT, P99 TPOT, P99 ITL, output throughput and its ratio to FCFS on the per-block swap "
            "(median over runs)")


def _number(value: Optional[float], width: int, digits: int = 1, suffix: str = "") -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width - len(suffix)}.{digits}f}{suffix}"


def swap_paths_table(paths: SwapPaths, gpu: str, simulated: bool) -> list[str]:
    """The title, what the run shows about the two paths' KV caches, then two rows per interval."""
    lines = [swap_paths_title(gpu)]
    if simulated:
        lines.append("  the GPU is SIMULATED: both swap paths' copy times are modeled (vllm_cfs.sim, docs/swap.md)")
    if paths.per_block_gpu_blocks is not None and paths.staged_gpu_blocks is not None:
        buffer = f"a {paths.staging_blocks}-block staging buffer" if paths.staging_blocks else "its staging buffer"
        lines.append(f"  GPU KV blocks per GPU: {paths.per_block_gpu_blocks} with the per-block swap, "
                     f"{paths.staged_gpu_blocks} with the staged worker ({buffer} taken from the KV cache)")
    lines.append(f"  {'scheduler':>9}  {'swap':<9}  {'runs':>4}  {'P99 TTFT (ms)':>13}  {'P99 TPOT (ms)':>13}  "
                 f"{'P99 ITL (ms)':>12}  {'output (tok/s)':>14}  {'vs FCFS':>7}")
    for row in paths.rows:
        scheduler = "FCFS" if row.interval == FCFS else f"CFS-{row.interval}"
        for name in (PER_BLOCK, STAGED):
            figures = row.path(name)
            runs = "-" if figures is None else str(figures.runs)
            get = (lambda field: None) if figures is None else (lambda field: getattr(figures, field))
            lines.append(f"  {scheduler:>9}  {name:<9}  {runs:>4}  {_number(get('p99_ttft_ms'), 13)}  "
                         f"{_number(get('p99_tpot_ms'), 13)}  {_number(get('p99_itl_ms'), 12)}  "
                         f"{_number(get('output_throughput'), 14)}  {_number(paths.ratio(figures), 7, 2, 'x')}")
    return lines
