"""What vLLM's ``benchmarks/benchmark_serving.py`` prints and saves, computed from our records.

Users who know vLLM's benchmark read its summary block and feed its ``--save-result`` JSON to
their tools. This module gives them both from a ``RunResult``:

- ``format_summary``: the ``Serving Benchmark Result`` block (labels, order and number format
  of vLLM's script, the statistics chosen by ``--percentile-metrics`` and ``--metric-percentiles``);
- ``result_document``: the ``--save-result`` JSON (vLLM's keys, with our whole run under ``vllm_cfs``);
- the parsers of the option values that only this dialect has.

Conventions kept from vLLM: latency statistics cover successful requests only and are 0 when
there is no sample (a metric with no values has mean, median and percentiles 0); ``std`` is the
population standard deviation; percentiles interpolate linearly between closest ranks; the
per-request lists (``ttfts``, ``itls``) are in seconds, the statistics (``*_ms``) in
milliseconds; a request without a first token has TTFT 0 in ``ttfts``; a failed request has
output length 0 in ``output_lens``.

Plain Python, like ``results``: no vLLM, no numpy.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import statistics
from typing import Any, Optional, Sequence

from vllm_cfs.results import RequestRecord, RunResult, percentile

# name in options and keys -> (name in labels, section title), in vLLM's order
METRICS = {
    "ttft": ("TTFT", "Time to First Token"),
    "tpot": ("TPOT", "Time per Output Token (excl. 1st token)"),
    "itl": ("ITL", "Inter-token Latency"),
    "e2el": ("E2EL", "End-to-end Latency"),
}
DEFAULT_PERCENTILE_METRICS = "ttft,tpot,itl"
DEFAULT_METRIC_PERCENTILES = "99"
GOODPUT_METRICS = ("ttft", "tpot", "e2el")
WIDTH = 50  # of the block's rules
LABEL_WIDTH = 40
VALUE_WIDTH = 10
DATE_FORMAT = "%Y%m%d-%H%M%S"
OUR_KEY = "vllm_cfs"  # the whole RunResult (schema of vllm_cfs.results) in the saved document

# Keys the saved document always has; --metadata may not replace them.
FIXED_KEYS = frozenset({
    "date", "backend", "model_id", "tokenizer_id", "num_prompts", "request_rate", "burstiness",
    "max_concurrency", "duration", "completed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
    "input_lens", "output_lens", "ttfts", "itls", "generated_texts", "errors", OUR_KEY,
})
_STAT_KEY = re.compile(r"(mean|median|std|p[0-9.]+)_(" + "|".join(METRICS) + r")_ms")


class DialectError(ValueError):
    """An option value this dialect cannot take; the message is one line for the user."""


# --- option values --------------------------------------------------------------------------


def parse_percentile_metrics(text: str) -> tuple[str, ...]:
    """"ttft,tpot" -> ("ttft", "tpot"); reported in METRICS order whatever the order given."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise DialectError(f"--percentile-metrics takes a comma-separated list of {', '.join(METRICS)}; "
                           f"got {text!r}")
    return tuple(name for name in METRICS if name in names)


def parse_metric_percentiles(text: str) -> tuple[float, ...]:
    """"50,90,99" -> (50.0, 90.0, 99.0), each in [0, 100], in the order given."""
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not 0 <= value <= 100:  # NaN fails this too
            raise DialectError(f"--metric-percentiles takes comma-separated percentiles between 0 and 100; "
                               f"got {text!r}")
        values.append(value)
    return tuple(values)


def _pairs(items: Sequence[str], separator: str, option: str, form: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, found, value = item.partition(separator)
        if not found or not key.strip():
            raise DialectError(f"{option} takes {form} pairs; got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    """["version=0.9.0", "tp=2"] -> {"version": "0.9.0", "tp": "2"} (values stay strings)."""
    metadata = dict(_pairs(items, "=", "--metadata", "KEY=VALUE"))
    taken = sorted(key for key in metadata if key in FIXED_KEYS or _STAT_KEY.fullmatch(key))
    if taken:
        raise DialectError(f"--metadata cannot set {', '.join(taken)}: the results use "
                           f"{'that key' if len(taken) == 1 else 'those keys'}")
    return metadata


def parse_goodput(items: Sequence[str]) -> dict[str, float]:
    """["ttft:500", "tpot:50"] -> {"ttft": 500.0, "tpot": 50.0}: service level objectives in ms."""
    slos = {}
    for name, value in _pairs(items, ":", "--goodput", "KEY:VALUE"):
        if name not in GOODPUT_METRICS:
            raise DialectError(f"--goodput: {name!r} is not one of {', '.join(GOODPUT_METRICS)}")
        try:
            slo = float(value)
        except ValueError:
            slo = math.nan
        if not (slo >= 0 and math.isfinite(slo)):
            raise DialectError(f"--goodput: {name} needs a number of milliseconds >= 0, got {value!r}")
        slos[name] = slo
    return slos


def percentile_word(p: float) -> str:
    """99.0 -> "99", 99.9 -> "99.9": how a percentile appears in labels and keys."""
    return str(int(p)) if p == int(p) else str(p)


# --- statistics -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricStats:
    """One metric's statistics in milliseconds."""

    mean: float
    median: float
    std: float
    percentiles: tuple[tuple[float, float], ...]  # (percentile, value)

    @classmethod
    def of(cls, samples_s: Sequence[float], percentiles: Sequence[float]) -> "MetricStats":
        ms = [s * 1000 for s in samples_s] or [0.0]
        return cls(statistics.fmean(ms), percentile(ms, 50), statistics.pstdev(ms),
                   tuple((p, percentile(ms, p)) for p in percentiles))


def samples(records: Sequence[RequestRecord], metric: str) -> list[float]:
    """A metric's samples in seconds over the successful requests (ITL: every gap of every one)."""
    done = [r for r in records if r.success]
    if metric == "itl":
        return [gap for r in done for gap in r.itl_s]
    attribute = {"ttft": "ttft_s", "tpot": "tpot_s", "e2el": "e2e_s"}[metric]
    return [getattr(r, attribute) for r in done if getattr(r, attribute) is not None]


def good_requests(records: Sequence[RequestRecord], slos_ms: dict[str, float]) -> int:
    """Successful requests within every objective (a request of one token counts TPOT 0)."""
    def within(r: RequestRecord) -> bool:
        measured_s = {"ttft": r.ttft_s, "tpot": r.tpot_s or 0.0, "e2el": r.e2e_s}
        return all(measured_s[name] * 1000 <= slo for name, slo in slos_ms.items())

    return sum(1 for r in records if r.success and within(r))


@dataclasses.dataclass(frozen=True)
class Report:
    """What the summary block shows and the saved document holds, for one run."""

    result: RunResult
    metrics: tuple[str, ...]  # from --percentile-metrics
    stats: dict[str, MetricStats]  # per metric in ``metrics``
    goodput: Optional[float]  # requests/s within the objectives; None without --goodput

    @classmethod
    def of(cls, result: RunResult, metrics: Sequence[str] = ("ttft", "tpot", "itl"),
           percentiles: Sequence[float] = (99.0,), slos_ms: Optional[dict[str, float]] = None) -> "Report":
        stats = {m: MetricStats.of(samples(result.records, m), percentiles) for m in metrics}
        goodput = None
        if slos_ms:
            duration = result.summary.duration_s
            # Computed as the request throughput is, so that "all good" shows the same number.
            goodput = good_requests(result.records, slos_ms) * (1 / duration if duration > 0 else 0.0)
        return cls(result, tuple(metrics), stats, goodput)


# --- the summary block ----------------------------------------------------------------------


def _line(label: str, value: Any) -> str:
    shown = f"{value:<{VALUE_WIDTH}.2f}" if isinstance(value, float) else f"{value:<{VALUE_WIDTH}}"
    return f"{label:<{LABEL_WIDTH}} {shown}"


def traffic_lines(request_rate: float, burstiness: float, max_concurrency: Optional[int]) -> str:
    """What vLLM's script says before it starts the burst."""
    process = "Poisson process" if burstiness == 1.0 else "Gamma distribution"
    return (f"Traffic request rate: {request_rate}\n"
            f"Burstiness factor: {burstiness} ({process})\n"
            f"Maximum request concurrency: {max_concurrency}\n")


def format_summary(report: Report) -> str:
    s = report.result.summary
    lines = [
        " Serving Benchmark Result ".center(WIDTH, "="),
        _line("Successful requests:", s.completed),
        _line("Benchmark duration (s):", s.duration_s),
        _line("Total input tokens:", s.total_input_tokens),
        _line("Total generated tokens:", s.total_output_tokens),
        _line("Request throughput (req/s):", s.request_throughput),
    ]
    if report.goodput is not None:
        lines.append(_line("Request goodput (req/s):", report.goodput))
    lines += [
        _line("Output token throughput (tok/s):", s.output_throughput),
        _line("Total Token throughput (tok/s):", s.total_token_throughput),
    ]
    for metric in report.metrics:
        name, title = METRICS[metric]
        stats = report.stats[metric]
        lines.append(title.center(WIDTH, "-"))
        lines.append(_line(f"Mean {name} (ms):", stats.mean))
        lines.append(_line(f"Median {name} (ms):", stats.median))
        lines += [_line(f"P{percentile_word(p)} {name} (ms):", value) for p, value in stats.percentiles]
    lines.append("=" * WIDTH)
    return "\n".join(lines) + "\n"


# --- the saved document ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """How the run was asked for, in vLLM's terms."""

    backend: str
    model_id: str  # --model as given
    tokenizer_id: str  # --tokenizer as given, else --model
    request_rate: float
    burstiness: float
    max_concurrency: Optional[int]
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


def run_date(result: RunResult) -> str:
    """The burst's start in local time, as vLLM writes dates ("20250527-141503")."""
    return datetime.datetime.fromtimestamp(result.start_time).strftime(DATE_FORMAT)


def default_result_filename(identity: RunIdentity, date: str) -> str:
    """vLLM's name: <backend>-<rate>qps[-concurrency<N>]-<model's last path part>-<date>.json."""
    concurrency = f"-concurrency{identity.max_concurrency}" if identity.max_concurrency is not None else ""
    model = identity.model_id.rstrip("/").split("/")[-1]
    return f"{identity.backend}-{float(identity.request_rate)}qps{concurrency}-{model}-{date}.json"


def result_document(report: Report, identity: RunIdentity) -> dict[str, Any]:
    """The --save-result JSON: vLLM's keys first, then the per-metric statistics, then our run."""
    result = report.result
    s = result.summary
    records = result.records
    document: dict[str, Any] = {
        "date": run_date(result),
        "backend": identity.backend,
        "model_id": identity.model_id,
        "tokenizer_id": identity.tokenizer_id,
        "num_prompts": len(records),
        **identity.metadata,
        "request_rate": "inf" if math.isinf(identity.request_rate) else identity.request_rate,
        "burstiness": identity.burstiness,
        "max_concurrency": identity.max_concurrency,
        "duration": s.duration_s,
        "completed": s.completed,
        "total_input_tokens": s.total_input_tokens,
        "total_output_tokens": s.total_output_tokens,
        "request_throughput": s.request_throughput,
        "request_goodput": report.goodput,
        "output_throughput": s.output_throughput,
        "total_token_throughput": s.total_token_throughput,
        "input_lens": [r.prompt_tokens for r in records],
        "output_lens": [r.output_tokens if r.success else 0 for r in records],
        "ttfts": [r.ttft_s if r.ttft_s is not None else 0.0 for r in records],
        "itls": [list(r.itl_s) for r in records],
        "generated_texts": [r.generated_text for r in records],
        "errors": [r.error for r in records],
    }
    for metric in report.metrics:
        stats = report.stats[metric]
        document[f"mean_{metric}_ms"] = stats.mean
        document[f"median_{metric}_ms"] = stats.median
        document[f"std_{metric}_ms"] = stats.std
        for p, value in stats.percentiles:
            document[f"p{percentile_word(p)}_{metric}_ms"] = value
    document[OUR_KEY] = result.to_dict()
    return document
