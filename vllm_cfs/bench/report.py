"""The readable text report of a burst: setup, summary, then every request in issue order.

This is what users read and what ``hw2/client.sh`` saves (``results_3.2/p<interval>_r<run>.txt``).
Summary lines have the form ``<name>: <value>`` so that they are easy to grep.
"""

from __future__ import annotations

import datetime
from typing import Optional

from vllm_cfs.results import RequestRecord, RunResult

RULE = "=" * 60


def format_report(result: RunResult) -> str:
    return "\n".join(_header(result) + [""] + _summary(result) + [""] + _table(result.records)) + "\n"


def _header(result: RunResult) -> list[str]:
    started = datetime.datetime.fromtimestamp(result.start_time, datetime.timezone.utc)
    lines = [RULE, "Burst benchmark".center(len(RULE)), RULE]
    for key, value in result.setup.items():
        lines.append(f"{key}: {value}")
    lines.append(f"started: {started.isoformat(timespec='seconds')}")
    return lines


def _ms(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _summary(result: RunResult) -> list[str]:
    s = result.summary
    lines = [
        "-" * len(RULE),
        "Summary".center(len(RULE)),
        "-" * len(RULE),
        f"Successful requests: {s.completed}",
        f"Failed requests: {s.failed}",
        f"Benchmark duration (s): {s.duration_s:.2f}",
        f"Total input tokens: {s.total_input_tokens}",
        f"Total generated tokens: {s.total_output_tokens}",
        f"Request throughput (req/s): {s.request_throughput:.2f}",
        f"Output token throughput (tok/s): {s.output_throughput:.2f}",
        f"Total token throughput (tok/s): {s.total_token_throughput:.2f}",
    ]
    for metric, title in (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL")):
        for stat, label in (("mean", "Mean"), ("median", "Median"), ("p90", "P90"), ("p99", "P99")):
            lines.append(f"{label} {title} (ms): {_ms(getattr(s, f'{stat}_{metric}_ms'))}")
    return lines


COLUMNS = ("index", "issued_s", "prompt_tok", "output_tok", "ttft_ms", "tpot_ms", "e2e_ms", "status")


def _table(records: list[RequestRecord]) -> list[str]:
    rows = [COLUMNS] + [_row(r) for r in records]
    # The status column is free text (error messages), so it is left unpadded at the end.
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = ["Requests in issue order"]
    for row in rows:
        cells = [cell.rjust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join(cells + [row[-1]]))
    return lines


def _row(r: RequestRecord) -> tuple[str, ...]:
    def ms(seconds: Optional[float]) -> str:
        return "-" if seconds is None else f"{seconds * 1000:.2f}"

    # A reply shorter than its max_tokens (ended at EOS; under ignore_eos, a shortfall) shows as received/asked.
    output = str(r.output_tokens) if r.output_tokens == r.expected_output_tokens else f"{r.output_tokens}/{r.expected_output_tokens}"
    return (str(r.index), f"{r.issued_at_s:.3f}", str(r.prompt_tokens), output,
            ms(r.ttft_s), ms(r.tpot_s), ms(r.e2e_s), "ok" if r.success else f"FAILED: {r.error}")
