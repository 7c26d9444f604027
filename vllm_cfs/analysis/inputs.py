"""Load a results folder that ``hw2/sweep.sh`` wrote: client results per interval and run, the
server log of each interval, env.txt and the model's config.json.

    results_3.2/p10_r1.json   client records (vllm_cfs.results.RunResult)
    results_3.2/server_p10.log
    results_3.2/env.txt, model_config.json

Task 3.1's folder has the same shape with one interval (0) whose log is ``vllm_server.log``.
FairScheduler's folder (``hw2/sweep.sh --scheduler fair``) holds ``fair_r<run>.json`` and
``server_fair.log`` instead: the runs of one server, with no interval. A sweep on vLLM V1
(``hw2/sweep.sh --engine v1``) also keeps the server's /metrics after each run: ``p10_r1.metrics``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Optional

from vllm_cfs.analysis import prometheus
from vllm_cfs.analysis.server_log import ServerLog, read_server_log
from vllm_cfs.results import RunResult
from vllm_cfs.experiment.environment import read_env

_RUN_FILE = re.compile(r"^(?:p(\d+)|(fair))_r(\d+)\.json$")
_METRICS_FILE = re.compile(r"^(?:p(\d+)|(fair))_r(\d+)\.metrics$")
FCFS = 0  # CFS_INTERVAL=0 is vLLM's default policy
FAIR = None  # the "interval" of FairScheduler's runs: it has none
FAIR_LABEL = "Fair (FairScheduler)"


class InputError(Exception):
    """A results folder that cannot be analysed; the message is one line for the user."""


@dataclasses.dataclass
class IntervalResults:
    """The runs of one server start: a CFS interval, or FairScheduler (interval ``FAIR``)."""

    interval: Optional[int]
    runs: dict[int, RunResult]  # run number -> client results
    log: Optional[ServerLog]  # the whole server log of this interval
    log_path: Optional[Path]
    # run number -> the server's /metrics after that run (V1 sweeps; empty: none kept)
    metrics: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)

    def preemptions(self, run: int) -> Optional[int]:
        """Requests preempted during the run (vllm:num_preemptions_total); None: no /metrics for it."""
        count = prometheus.run_delta(self.metrics, run, prometheus.PREEMPTIONS)
        return None if count is None else round(count)

    def prefix_cache_hits(self, run: int) -> Optional[int]:
        """Prompt tokens the prefix cache served during the run; None: no /metrics for it."""
        count = prometheus.run_delta(self.metrics, run, prometheus.PREFIX_CACHE_HITS)
        return None if count is None else round(count)

    @property
    def salted_apart(self) -> bool:
        """Whether every run sent a cache salt (vLLM V1's cache_salt) no other run of this server
        sent: then no run could hit the prefix cache with another's blocks."""
        salts = [result.setup.get("cache_salt") for result in self.runs.values()]
        return all(salts) and len(set(salts)) == len(salts)

    def run_log(self, run: int) -> Optional[ServerLog]:
        if self.log is None:
            return None
        try:
            return self.log.for_run(run)
        except KeyError:
            return None

    @property
    def first_run(self) -> int:
        return min(self.runs)


@dataclasses.dataclass
class ResultsFolder:
    path: Path
    intervals: dict[int, IntervalResults]
    env: dict[str, str]
    model_config: Optional[dict[str, Any]]
    fair: Optional[IntervalResults] = None  # FairScheduler's runs, when the folder has them

    def interval(self, interval: int) -> IntervalResults:
        if interval not in self.intervals:
            raise InputError(f"{self.path} has no results for CFS interval {interval} "
                             f"(it has {sorted(self.intervals)})")
        return self.intervals[interval]


def _log_path(folder: Path, interval: Optional[int], only_interval: bool) -> Optional[Path]:
    candidates = [folder / ("server_fair.log" if interval is FAIR else f"server_p{interval}.log")]
    if only_interval:
        candidates.append(folder / "vllm_server.log")
    return next((p for p in candidates if p.is_file()), None)


def load_results(folder: Path | str) -> ResultsFolder:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    runs: dict[Optional[int], dict[int, RunResult]] = {}
    metrics: dict[Optional[int], dict[int, dict[str, float]]] = {}
    for path in sorted(folder.iterdir()):
        if match := _METRICS_FILE.match(path.name):
            interval = FAIR if match.group(2) else int(match.group(1))
            try:
                metrics.setdefault(interval, {})[int(match.group(3))] = prometheus.read_metrics(path)
            except prometheus.MetricsError as exc:
                raise InputError(str(exc)) from None
            continue
        match = _RUN_FILE.match(path.name)
        if not match:
            continue
        try:
            result = RunResult.load(path)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None
        interval = FAIR if match.group(2) else int(match.group(1))
        runs.setdefault(interval, {})[int(match.group(3))] = result
    if not runs:
        raise InputError(f"{folder} holds no client results (p<interval>_r<run>.json or fair_r<run>.json)")
    loaded = {}
    for interval, by_run in runs.items():
        log_path = _log_path(folder, interval, len(runs) == 1)
        log = read_server_log(log_path) if log_path else None
        loaded[interval] = IntervalResults(interval, dict(sorted(by_run.items())), log, log_path,
                                           metrics.get(interval, {}))
    fair = loaded.pop(FAIR, None)
    intervals = dict(sorted(loaded.items()))
    env = read_env(folder / "env.txt") if (folder / "env.txt").is_file() else {}
    every = [*intervals.values(), *([fair] if fair else [])]
    return ResultsFolder(folder, intervals, env, _model_config(folder, every), fair)


def _model_config(folder: Path, every: list[IntervalResults]) -> Optional[dict[str, Any]]:
    """The copy the sweep made, else the model folder the server log names."""
    candidates = [folder / "model_config.json"]
    for results in every:
        if results.log and results.log.engine and results.log.engine.model:
            candidates.append(Path(results.log.engine.model) / "config.json")
    for path in candidates:
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: invalid JSON ({exc})") from None
    return None
