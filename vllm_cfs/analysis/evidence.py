"""Measurements the answers and plots cite, computed from client results and server logs.

Each function takes parsed inputs (``RunResult``, ``StatsSample`` lists) and returns numbers or
small dataclasses; nothing here decides an answer.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Callable, Optional, Sequence

from vllm_cfs.analysis.server_log import StatsSample
from vllm_cfs.results import RequestRecord, RunResult


def ttft_ms(result: RunResult, index: int) -> Optional[float]:
    """TTFT of the request with this issue index (None if the burst had no such request or it failed)."""
    for record in result.records:
        if record.index == index:
            return None if record.ttft_s is None else record.ttft_s * 1000
    return None


def seconds_since_first(samples: Sequence[StatsSample]) -> list[float]:
    if not samples:
        return []
    origin = samples[0].time
    return [(s.time - origin).total_seconds() for s in samples]


def first_peak(samples: Sequence[StatsSample], value: Callable[[StatsSample], float]) -> Optional[StatsSample]:
    """The first stats line where ``value`` is at its maximum."""
    if not samples:
        return None
    top = max(value(s) for s in samples)
    return next(s for s in samples if value(s) == top)


@dataclasses.dataclass(frozen=True)
class WaitingSpan:
    """From the first stats line with Pending > 0 to the next line with Pending = 0."""

    start: StatsSample
    end: Optional[StatsSample]  # None: the log never showed the queue empty again

    @property
    def seconds(self) -> Optional[float]:
        return None if self.end is None else (self.end.time - self.start.time).total_seconds()

    @property
    def peak_pending(self) -> int:
        return self.start.pending


def waiting_span(samples: Sequence[StatsSample]) -> Optional[WaitingSpan]:
    """None when no line showed a pending request."""
    for i, sample in enumerate(samples):
        if sample.pending > 0:
            end = next((s for s in samples[i + 1:] if s.pending == 0), None)
            return WaitingSpan(sample, end)
    return None


def memory_bound_lines(samples: Sequence[StatsSample], full_pct: float) -> list[StatsSample]:
    """Lines where requests waited while the GPU KV cache was at least ``full_pct`` % used."""
    return [s for s in samples if s.pending > 0 and s.gpu_kv_pct >= full_pct]


def decode_rate_per_request(samples: Sequence[StatsSample]) -> list[tuple[int, float]]:
    """(Running, generated tokens/s per running request) for lines that only decoded.

    If the GPU's compute were the limit, each extra running request would slow all the others
    down, so the per-request rate would fall as Running grows; if it stays flat, a batch of more
    requests would have run as fast.
    """
    return [(s.running, s.generation_throughput / s.running) for s in samples
            if s.running > 0 and s.prompt_throughput == 0 and s.swapped == 0 and s.generation_throughput > 0]


def burst_kv_demand_tokens(result: RunResult) -> int:
    """Tokens of KV the whole burst would hold at once if every request ran to its end together."""
    return sum(r.prompt_tokens + r.output_tokens_at_end for r in result.records)


def issue_order_agreement(records: Sequence[RequestRecord], key: Callable[[RequestRecord], float]) -> Optional[float]:
    """Fraction of request pairs whose first tokens came in the order ``key`` ranks them.

    Pairs with equal keys, and requests without a first token, are left out. 1.0: the server
    served exactly in ``key`` order; 0.5: unrelated; 0.0: exactly reversed.
    """
    served = [(key(r), r.issued_at_s + r.ttft_s) for r in records if r.ttft_s is not None]
    agree = total = 0
    for i, (key_a, first_a) in enumerate(served):
        for key_b, first_b in served[i + 1:]:
            if key_a == key_b or first_a == first_b:
                continue
            total += 1
            agree += (key_a < key_b) == (first_a < first_b)
    return agree / total if total else None


def all_outputs_complete(result: RunResult) -> bool:
    """Every request succeeded with all its tokens: as many as it asked for, or up to its EOS (none cut)."""
    return all(r.success and (r.ended_at_eos or r.output_tokens == r.expected_output_tokens) for r in result.records)


def mean_tpot_change_ms(base: RunResult, other: RunResult, records: Sequence[int]) -> Optional[float]:
    """Mean TPOT change (ms) of the given request indices from ``base`` to ``other`` (same workload)."""
    base_tpot = {r.index: r.tpot_s for r in base.records}
    changes = [(r.tpot_s - base_tpot[r.index]) * 1000 for r in other.records
               if r.index in records and r.tpot_s is not None and base_tpot.get(r.index) is not None]
    return statistics.fmean(changes) if changes else None


@dataclasses.dataclass(frozen=True)
class IntervalRow:
    """One interval of the sweep (or FairScheduler's runs, interval None): medians over its runs,
    and each run's own value."""

    interval: Optional[int]
    runs: int
    p99_ttft_ms: float
    p99_tpot_ms: float
    output_throughput: float  # tokens/s
    p99_ttft_ms_per_run: tuple[float, ...]
    p99_tpot_ms_per_run: tuple[float, ...]
    output_throughput_per_run: tuple[float, ...]
    # None when no run streamed two tokens of a request (a gap needs two)
    p99_itl_ms: Optional[float] = None
    p99_itl_ms_per_run: tuple[float, ...] = ()


def interval_row(interval: Optional[int], results: Sequence[RunResult]) -> IntervalRow:
    ttft = tuple(r.summary.p99_ttft_ms for r in results if r.summary.p99_ttft_ms is not None)
    tpot = tuple(r.summary.p99_tpot_ms for r in results if r.summary.p99_tpot_ms is not None)
    itl = tuple(r.summary.p99_itl_ms for r in results if r.summary.p99_itl_ms is not None)
    throughput = tuple(r.summary.output_throughput for r in results)
    if not ttft or not tpot:
        name = "FairScheduler" if interval is None else f"interval {interval}"
        raise ValueError(f"{name}: no run has TTFT and TPOT figures (all requests failed?)")
    return IntervalRow(interval, len(results), statistics.median(ttft), statistics.median(tpot),
                       statistics.median(throughput), ttft, tpot, throughput,
                       statistics.median(itl) if itl else None, itl)


@dataclasses.dataclass(frozen=True)
class Tradeoff:
    """Going from interval ``a`` to ``b``: TTFT added (s) and TPOT saved (ms), both P99 medians."""

    a: int
    b: int
    ttft_added_s: float
    tpot_saved_ms: float

    @property
    def tpot_saved_per_ttft_second(self) -> Optional[float]:
        """ms of TPOT saved per second of TTFT added; None when TTFT did not rise."""
        return self.tpot_saved_ms / self.ttft_added_s if self.ttft_added_s > 0 else None


def tradeoff(rows: dict[int, IntervalRow], a: int, b: int) -> Optional[Tradeoff]:
    if a not in rows or b not in rows:
        return None
    return Tradeoff(a, b, (rows[b].p99_ttft_ms - rows[a].p99_ttft_ms) / 1000,
                    rows[a].p99_tpot_ms - rows[b].p99_tpot_ms)
