"""Read a vLLM 0.9.0 server log: the periodic stats, the KV block counts, our CFS counters, the GPU.

A vLLM V1 server log reads into the same records (server_log_v1.py lists its lines): its stats
line's Running, Waiting (as ``pending``) and GPU KV %, plus V1's preemptions and prefix cache hit
rate; V0's Swapped and CPU KV % do not exist there and are None. ``ServerLog.engine_name`` says which.

The lines we read (anything else is skipped; a log may hold several server starts and runs):

* vLLM's V0 stats line, every 5 s while the engine is busy::

    INFO 11-29 05:01:03 [metrics.py:486] Avg prompt throughput: 226.5 tokens/s, Avg generation
    throughput: 166.8 tokens/s, Running: 11 reqs, Swapped: 0 reqs, Pending: 0 reqs,
    GPU KV cache usage: 8.0%, CPU KV cache usage: 0.0%.

* the executor's block counts: ``# cuda (simulated a100-40gb) blocks: 1028, # CPU blocks: 10922``
* the CFS scheduler's cumulative counters: ``CFS stats: cfs_steps=12, preempted_by_swap=3, ...``
* the simulated GPU's start line: ``The GPU is SIMULATED (vllm-cfs): profile a100-40gb, tensor parallel 2``
* the staged swap worker's buffer (vllm_cfs.swap): on the simulated GPU ``Simulated staged swap
  (vllm_cfs.swap.StagedSwapWorker): a 32-block staging buffer``, on a real one ``staged swap:
  32-block staging buffer, block-major pinned host cache``
* the engine's configuration: ``Initializing a V0 LLM engine (v0.9.0) with config: model='...', ...``
* the marker lines ``hw2/sweep.sh`` appends before each burst: ``vllm-cfs hw2 marker: run 2 of 3, ...``

The log prefix gives month, day and time to the second, no year: times are read in
``year`` (default: this year) and a jump back of more than half a year counts as a new year.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import Path
from typing import Iterable, Optional

from vllm_cfs.analysis import server_log_v1 as v1

_TIMESTAMP = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\b")
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_STATS = re.compile(
    rf"Avg prompt throughput: {_NUMBER} tokens/s, Avg generation throughput: {_NUMBER} tokens/s, "
    rf"Running: (\d+) reqs, Swapped: (\d+) reqs, Pending: (\d+) reqs, "
    rf"GPU KV cache usage: {_NUMBER}%, CPU KV cache usage: {_NUMBER}%"
)
_BLOCKS = re.compile(r"# (.+?) blocks: (\d+), # CPU blocks: (\d+)")
_CFS_STATS = re.compile(r"CFS stats: ((?:\w+=\d+(?:, )?)+)")
_SIMULATED = re.compile(r"The GPU is SIMULATED \(vllm-cfs\): profile (\S+?), tensor parallel (\d+)")
# Both wordings: the simulator's and the real worker's (vllm_cfs/swap/worker.py).
_STAGING = re.compile(r"[Ss]taged swap(?: \([^)]*\))?: (?:a )?(\d+)-block staging buffer")
_ENGINE = re.compile(r"Initializing a V0 LLM engine \(v([^)]+)\) with config: (.*)")
MARKER = "vllm-cfs hw2 marker:"
_MARKER = re.compile(re.escape(MARKER) + r" run (\d+) of (\d+)")


@dataclasses.dataclass(frozen=True)
class StatsSample:
    """One of vLLM's periodic stats lines."""

    time: datetime.datetime
    prompt_throughput: float  # tokens/s, averaged over the last interval (5 s)
    generation_throughput: float  # tokens/s
    running: int  # requests
    swapped: Optional[int]  # None on V1, which has no swap
    pending: int  # waiting to be admitted (V1's Waiting: new and preempted requests)
    gpu_kv_pct: float  # % of GPU KV blocks in use
    cpu_kv_pct: Optional[float]  # % of CPU (swap) blocks in use; None on V1
    segment: Optional[int]  # index in ServerLog.runs of the last marker before it (None: no marker yet)
    # V1 only (None on V0): preemptions in the line's interval (vLLM 0.24.0 never prints them, see
    # server_log_v1), the prefix cache hit rate, and the waiting requests V1 skipped (Deferred)
    preemptions: Optional[int] = None
    prefix_cache_hit_pct: Optional[float] = None
    deferred: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class CfsCounters:
    """The CFS scheduler's cumulative counters at one time (names as in its log line)."""

    time: datetime.datetime
    counters: dict[str, int]
    segment: Optional[int]  # as StatsSample.segment

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)


@dataclasses.dataclass(frozen=True)
class KvBlocks:
    device: str  # as vLLM names it, e.g. "cuda (simulated a100-40gb)"
    gpu_blocks: int  # per GPU
    cpu_blocks: Optional[int]  # per GPU (vLLM's swap space is per GPU); None on V1, which has none
    block_size: Optional[int] = None  # tokens per block, where the log says it (V1's simulated GPU)


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    vllm_version: str
    fields: dict[str, str]  # the "key=value" pairs of vLLM's config line, values as written
    engine: str = "V0"  # "V0" or "V1", as the line names it

    @property
    def model(self) -> Optional[str]:
        return self.fields.get("model")

    @property
    def tensor_parallel_size(self) -> Optional[int]:
        value = self.fields.get("tensor_parallel_size")
        return int(value) if value and value.isdigit() else None

    @property
    def dtype(self) -> Optional[str]:
        return self.fields.get("dtype")


@dataclasses.dataclass(frozen=True)
class SimulatedGpu:
    profile: str
    tensor_parallel_size: int


@dataclasses.dataclass
class ServerLog:
    stats: list[StatsSample]
    cfs: list[CfsCounters]
    blocks: Optional[KvBlocks]  # of the last server start in the log
    engine: Optional[EngineConfig]
    simulated: Optional[SimulatedGpu]  # None: no line said the GPU was simulated
    runs: list[int]  # run numbers of the markers, in log order
    # KV blocks of the staged swap worker's staging buffer (last server start); None: vLLM's own
    # per-block swap, no staging buffer line
    staging_blocks: Optional[int] = None
    # V1's start-up lines (last server start): the GPU KV cache in tokens per GPU, and how many
    # requests of max_model_len tokens it holds at once
    kv_cache_tokens: Optional[int] = None
    max_model_len: Optional[int] = None
    max_concurrency: Optional[float] = None

    @property
    def engine_name(self) -> Optional[str]:
        """"V0" or "V1": the engine's config line, else the kind of stats lines; None: neither."""
        if self.engine is not None:
            return self.engine.engine
        if self.stats:
            return "V1" if self.stats[0].prefix_cache_hit_pct is not None else "V0"
        return None

    def for_run(self, run: int) -> "ServerLog":
        """The part of the log from the marker of ``run`` to the next marker (the last such part
        if the log was appended to by several sweeps). A log without markers is one run."""
        if not self.runs:
            return self
        if run not in self.runs:
            raise KeyError(f"no marker for run {run} in the log (runs: {sorted(set(self.runs))})")
        segment = len(self.runs) - 1 - self.runs[::-1].index(run)
        stats = [s for s in self.stats if s.segment == segment]
        # The engine's last line of the previous burst (nothing running) can land just after the
        # marker: the run starts at its first line with work.
        while stats and stats[0].running == (stats[0].swapped or 0) == stats[0].pending == 0:
            stats.pop(0)
        return dataclasses.replace(
            self,
            stats=stats,
            cfs=[c for c in self.cfs if c.segment == segment],
            runs=[run],
        )


def _parse_fields(config: str) -> dict[str, str]:
    """vLLM's config line: ``key=value, key='quoted, value', key={...}`` -> {key: value}."""
    fields: dict[str, str] = {}
    for match in re.finditer(r"(\w+)=('(?:[^'\\]|\\.)*'|\{[^}]*\}|\[[^\]]*\]|[^,]*)", config):
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        fields.setdefault(match.group(1), value)
    return fields


class _Clock:
    """Turns the year-less log prefix into datetimes that never run backwards across New Year."""

    def __init__(self, year: int) -> None:
        self.year = year
        self.last: Optional[datetime.datetime] = None

    def read(self, match: re.Match) -> datetime.datetime:
        month, day, hour, minute, second = (int(g) for g in match.groups())
        when = datetime.datetime(self.year, month, day, hour, minute, second)
        if self.last is not None and (self.last - when).days > 182:
            self.year += 1
            when = when.replace(year=self.year)
        self.last = when
        return when


def parse_server_log(lines: Iterable[str], year: Optional[int] = None) -> ServerLog:
    clock = _Clock(year or datetime.date.today().year)
    log = ServerLog(stats=[], cfs=[], blocks=None, engine=None, simulated=None, runs=[])
    now: Optional[datetime.datetime] = None
    segment: Optional[int] = None
    for line in lines:
        stamp = _TIMESTAMP.search(line)
        if stamp:
            now = clock.read(stamp)
        if match := _MARKER.search(line):
            log.runs.append(int(match.group(1)))
            segment = len(log.runs) - 1
        elif now is None:
            continue
        elif match := _STATS.search(line):
            prompt, generation, running, swapped, pending, gpu, cpu = match.groups()
            log.stats.append(StatsSample(now, float(prompt), float(generation), int(running), int(swapped),
                                         int(pending), float(gpu), float(cpu), segment))
        elif match := _CFS_STATS.search(line):
            counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}
            log.cfs.append(CfsCounters(now, counters, segment))
        elif match := _BLOCKS.search(line):
            log.blocks = KvBlocks(match.group(1), int(match.group(2)), int(match.group(3)))
        elif match := _STAGING.search(line):
            log.staging_blocks = int(match.group(1))
        elif match := _SIMULATED.search(line):
            log.simulated = SimulatedGpu(match.group(1).rstrip(","), int(match.group(2)))
        elif match := _ENGINE.search(line):
            log.engine = EngineConfig(match.group(1), _parse_fields(match.group(2)))
            # A new server start: its own worker decides whether there is a staging buffer (its line
            # comes later, when the worker sizes the KV cache).
            log.staging_blocks = None
        elif found := v1.read_v1_line(line):
            _add_v1(log, found, now, segment)
    return log


def _add_v1(log: ServerLog, found: v1.V1Line, now: datetime.datetime, segment: Optional[int]) -> None:
    """One of V1's lines into the records V0's lines fill, where they mean the same thing."""
    if isinstance(found, v1.V1Stats):
        log.stats.append(StatsSample(now, found.prompt_throughput, found.generation_throughput, found.running,
                                     None, found.waiting, found.gpu_kv_pct, None, segment,
                                     preemptions=found.preemptions, prefix_cache_hit_pct=found.prefix_cache_hit_pct,
                                     deferred=found.deferred))
    elif isinstance(found, v1.V1PolicyCounters):
        log.cfs.append(CfsCounters(now, found.counters, segment))
    elif isinstance(found, v1.V1KvCacheTokens):
        log.kv_cache_tokens = found.tokens
    elif isinstance(found, v1.V1Concurrency):
        log.max_model_len, log.max_concurrency = found.max_model_len, found.max_concurrency
    elif isinstance(found, v1.V1SimulatedBlocks):
        device = f"cuda (simulated {log.simulated.profile})" if log.simulated else "cuda (simulated)"
        log.blocks = KvBlocks(device, found.gpu_blocks, None, found.block_size)
    elif isinstance(found, v1.V1EngineLine):
        log.engine = EngineConfig(found.vllm_version, _parse_fields(found.config), engine="V1")
        # A new server start: its KV cache lines follow.
        log.blocks = None
        log.kv_cache_tokens = log.max_model_len = log.max_concurrency = None


def read_server_log(path: Path | str, year: Optional[int] = None) -> ServerLog:
    """``year`` defaults to the year the file was last written."""
    year = year or datetime.date.fromtimestamp(Path(path).stat().st_mtime).year
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_server_log(f, year)
