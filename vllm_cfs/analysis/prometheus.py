"""A vLLM server's /metrics (Prometheus text format), as hw2/sweep.sh keeps it after each V1 run.

    p10_r2.metrics   the server's counters after run 2 of interval 10, since the server started

Counters are cumulative over a server's life and each sweep point is one server start whose
runs go one after another, so a run's own count is its snapshot minus the run before's (run 1:
minus zero, as the server served nothing before it; sweep.sh only asks /health until then).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

PREEMPTIONS = "vllm:num_preemptions_total"
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"  # tokens
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries_total"  # tokens

# name{labels} value [timestamp]; names may hold colons (vLLM's do)
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


class MetricsError(ValueError):
    pass


def parse_metrics(text: str) -> dict[str, float]:
    """Each metric's value summed over its label sets (one per engine for vLLM's counters).
    Comment lines (# HELP, # TYPE) are skipped."""
    values: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise MetricsError(f"line {number} is not a Prometheus sample: {line[:80]!r}")
        try:
            value = float(match.group(3))
        except ValueError:
            raise MetricsError(f"line {number}: {match.group(3)!r} is not a number") from None
        if not math.isnan(value):
            values[match.group(1)] = values.get(match.group(1), 0.0) + value
    return values


def read_metrics(path: Path | str) -> dict[str, float]:
    try:
        return parse_metrics(Path(path).read_text(encoding="utf-8", errors="replace"))
    except MetricsError as exc:
        raise MetricsError(f"{path}: {exc}") from None


def run_delta(snapshots: dict[int, dict[str, float]], run: int, name: str) -> Optional[float]:
    """``name``'s increase during ``run``: its snapshot minus the previous run's (zero before run
    1). None when a snapshot it needs is missing, or the counter is not in it."""
    after = snapshots.get(run, {}).get(name)
    if after is None:
        return None
    if run == 1:
        return after
    before = snapshots.get(run - 1, {}).get(name)
    return None if before is None else after - before
