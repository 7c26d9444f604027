"""The results of one burst: per-request records, their summary, and the JSON file that holds them.

One schema for both producers, below both: the live client (``vllm_cfs.bench.client``) and the
virtual-time replays of the simulator (V0's and V1's), which convert their output into these
classes. The analysis reads only this. Plain Python on purpose: importing it must not pull in vLLM or torch.

Times are seconds in the records and milliseconds in the summary (what people quote).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any, Optional, Sequence

SCHEMA_VERSION = 1


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) with linear interpolation between closest ranks.

    Sorted values x[0..n-1] sit at ranks 0..n-1; the percentile is read at rank (n-1)*q/100,
    interpolating between the two neighbouring values. This is numpy's default ("linear") method,
    so P99 of 50 requests lies between the 49th and 50th smallest values.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lower = math.floor(rank)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = rank - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


def time_per_output_token(e2e_s: float, ttft_s: float, output_tokens: int) -> Optional[float]:
    """Mean time between output tokens after the first; None when fewer than two tokens came."""
    if output_tokens < 2:
        return None
    return (e2e_s - ttft_s) / (output_tokens - 1)


@dataclasses.dataclass
class RequestRecord:
    """One request of the burst, identified by its place in issue order."""

    index: int
    issue_offset_s: float  # when the workload scheduled it, from the start of the burst
    issued_at_s: float  # when it actually went out, from the start of the burst
    prompt_tokens: int
    expected_output_tokens: int  # max_tokens asked for: the cap (ignore_eos: the server must produce all)
    output_tokens: int  # what the server reported (or the token chunks counted when it did not)
    ttft_s: Optional[float]  # None when no token arrived
    tpot_s: Optional[float]
    itl_s: list[float]
    e2e_s: Optional[float]  # None when the request never completed
    success: bool
    error: str = ""
    generated_text: str = ""  # what the stream carried; files from before it was kept have none
    # Why the reply ended, in the OpenAI API's words: "stop" (the model said EOS, or a stop string
    # came), "length" (it reached its cap, max_tokens). None: unknown (a failed request, a server
    # that did not say, a file from before it was kept).
    finish_reason: Optional[str] = None

    @property
    def ended_at_eos(self) -> bool:
        return self.finish_reason == "stop"

    @property
    def ended_at_cap(self) -> bool:
        return self.finish_reason == "length"

    @property
    def output_tokens_at_end(self) -> int:
        """Its output length once done: where it ended at EOS, what it produced; otherwise its
        max_tokens (under ignore_eos the same, and all a request still running could reach)."""
        return self.output_tokens if self.ended_at_eos else self.expected_output_tokens

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RequestRecord":
        # A field with a default may be missing (older files); a field without one may not.
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)
                      if f.name in data or f.default is dataclasses.MISSING})


@dataclasses.dataclass
class Summary:
    """What a burst amounts to; latency statistics cover successful requests only (None if none)."""

    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float  # completed requests per second of the run
    output_throughput: float  # output tokens per second
    total_token_throughput: float  # prompt + output tokens per second
    mean_ttft_ms: Optional[float]
    median_ttft_ms: Optional[float]
    p90_ttft_ms: Optional[float]
    p99_ttft_ms: Optional[float]
    mean_tpot_ms: Optional[float]
    median_tpot_ms: Optional[float]
    p90_tpot_ms: Optional[float]
    p99_tpot_ms: Optional[float]
    mean_itl_ms: Optional[float]
    median_itl_ms: Optional[float]
    p90_itl_ms: Optional[float]
    p99_itl_ms: Optional[float]

    @classmethod
    def of(cls, records: Sequence[RequestRecord], duration_s: float) -> "Summary":
        done = [r for r in records if r.success]
        input_tokens = sum(r.prompt_tokens for r in done)
        output_tokens = sum(r.output_tokens for r in done)
        per_second = 1 / duration_s if duration_s > 0 else 0.0
        stats: dict[str, Optional[float]] = {}
        samples = {
            "ttft": [r.ttft_s for r in done if r.ttft_s is not None],
            "tpot": [r.tpot_s for r in done if r.tpot_s is not None],
            "itl": [gap for r in done for gap in r.itl_s],
        }
        for name, values in samples.items():
            ms = [v * 1000 for v in values]
            stats[f"mean_{name}_ms"] = statistics.fmean(ms) if ms else None
            stats[f"median_{name}_ms"] = percentile(ms, 50) if ms else None
            stats[f"p90_{name}_ms"] = percentile(ms, 90) if ms else None
            stats[f"p99_{name}_ms"] = percentile(ms, 99) if ms else None
        return cls(
            completed=len(done),
            failed=len(records) - len(done),
            duration_s=duration_s,
            total_input_tokens=input_tokens,
            total_output_tokens=output_tokens,
            request_throughput=len(done) * per_second,
            output_throughput=output_tokens * per_second,
            total_token_throughput=(input_tokens + output_tokens) * per_second,
            **stats,
        )


@dataclasses.dataclass
class RunResult:
    """A whole burst: how it was set up, when it ran, every request, and the summary."""

    setup: dict[str, Any]  # free-form; keys like base_url, model, dataset, num_prompts, request_rate,
    # burstiness, seed, gpu ("simulated a100-40gb x2" or a real GPU name), label
    start_time: float  # Unix time of the burst's start (virtual-time replays give their own origin)
    duration_s: float  # from the start to the last request's end
    records: list[RequestRecord]
    summary: Summary

    @classmethod
    def build(cls, setup: dict[str, Any], start_time: float, duration_s: float,
              records: Sequence[RequestRecord]) -> "RunResult":
        ordered = sorted(records, key=lambda r: r.index)
        return cls(dict(setup), start_time, duration_s, ordered, Summary.of(ordered, duration_s))

    @property
    def failed(self) -> list[RequestRecord]:
        return [r for r in self.records if not r.success]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as Python values (what ``to_json`` writes and ``from_json`` reads)."""
        return {"schema": SCHEMA_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        document = self.to_dict()
        # Strict JSON (no NaN/Infinity) so any reader can load it; an infinite request rate is
        # written as the string "inf" by whoever builds the setup.
        return json.dumps(document, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "RunResult":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a results file (invalid JSON: {exc})") from None
        if not isinstance(document, dict) or "schema" not in document:
            raise ValueError("not a results file (no \"schema\" key)")
        if document["schema"] != SCHEMA_VERSION:
            raise ValueError(f"results schema {document['schema']!r} is not supported (this reader knows {SCHEMA_VERSION})")
        try:
            return cls(
                setup=dict(document["setup"]),
                start_time=float(document["start_time"]),
                duration_s=float(document["duration_s"]),
                records=[RequestRecord.from_dict(r) for r in document["records"]],
                summary=Summary(**{f.name: document["summary"][f.name] for f in dataclasses.fields(Summary)}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed results file: missing or wrong field {exc}") from None

    def save(self, path: Path | str) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: Path | str) -> "RunResult":
        return cls.from_json(Path(path).read_text())
