"""The shared results schema: percentiles, summaries and the JSON file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

from vllm_cfs.results import (
    SCHEMA_VERSION,
    RequestRecord,
    RunResult,
    Summary,
    percentile,
    time_per_output_token,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=60), st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpy_linear(values, q):
    assert percentile(values, q) == pytest.approx(np.percentile(values, q), rel=1e-9, abs=1e-6)


def test_percentile_refuses_nonsense():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_tpot_needs_two_tokens():
    assert time_per_output_token(e2e_s=3.0, ttft_s=1.0, output_tokens=1) is None
    assert time_per_output_token(e2e_s=3.0, ttft_s=1.0, output_tokens=5) == pytest.approx(0.5)


def record(index, ttft, e2e, tokens, success=True, error=""):
    tpot = time_per_output_token(e2e, ttft, tokens) if success else None
    itl = [tpot] * (tokens - 1) if tpot else []
    return RequestRecord(index=index, issue_offset_s=index * 0.3, issued_at_s=index * 0.3 + 0.001,
                         prompt_tokens=100 + index, expected_output_tokens=tokens,
                         output_tokens=tokens if success else 0, ttft_s=ttft if success else None,
                         tpot_s=tpot, itl_s=itl, e2e_s=e2e if success else None, success=success, error=error)


@pytest.fixture
def result():
    records = [record(i, ttft=0.1 * (i + 1), e2e=0.1 * (i + 1) + 0.02 * 9, tokens=10) for i in range(5)]
    records.append(record(5, ttft=0.0, e2e=0.0, tokens=10, success=False, error="HTTP 500: boom"))
    records.append(record(6, ttft=0.2, e2e=0.2, tokens=1))  # one token: no TPOT, no ITL
    setup = {"base_url": "http://127.0.0.1:8000", "model": "m", "request_rate": "inf", "seed": 0,
             "gpu": "simulated a100-40gb x2", "label": "t"}
    return RunResult.build(setup, start_time=1_790_000_000.5, duration_s=2.0, records=records[::-1])


def test_summary_counts_only_successes(result):
    s = result.summary
    assert (s.completed, s.failed) == (6, 1)
    assert [r.index for r in result.records] == list(range(7))  # kept in issue order
    ttfts_ms = [100, 200, 300, 400, 500, 200]
    assert s.mean_ttft_ms == pytest.approx(np.mean(ttfts_ms))
    assert s.p99_ttft_ms == pytest.approx(np.percentile(ttfts_ms, 99))
    assert s.median_tpot_ms == pytest.approx(20.0)  # the one-token request has no TPOT
    assert s.p90_itl_ms == pytest.approx(20.0)
    assert s.total_output_tokens == 51 and s.total_input_tokens == sum(100 + i for i in (0, 1, 2, 3, 4, 6))
    assert s.request_throughput == pytest.approx(3.0)
    assert s.output_throughput == pytest.approx(25.5)
    assert s.total_token_throughput == pytest.approx((51 + s.total_input_tokens) / 2.0)
    assert [r.index for r in result.failed] == [5]


def test_summary_of_nothing_but_failures_has_no_latencies():
    s = Summary.of([record(0, 0, 0, 3, success=False, error="x")], duration_s=0.0)
    assert (s.completed, s.failed) == (0, 1)
    assert s.p99_ttft_ms is None and s.mean_itl_ms is None and s.request_throughput == 0.0


def test_json_round_trip(result, tmp_path):
    path = tmp_path / "run.json"
    result.save(path)
    document = json.loads(path.read_text())
    assert document["schema"] == SCHEMA_VERSION
    assert RunResult.load(path) == result


def test_json_is_strict(result):
    result.setup["request_rate"] = float("inf")
    with pytest.raises(ValueError):
        result.to_json()


@pytest.mark.parametrize("text, message", [
    ("{", "invalid JSON"),
    ('{"records": []}', 'no "schema" key'),
    ('{"schema": 2}', "schema 2 is not supported"),
    ('{"schema": 1, "setup": {}}', "missing or wrong field"),
])
def test_unreadable_results_are_refused_clearly(text, message):
    with pytest.raises(ValueError, match=message):
        RunResult.from_json(text)


def test_bench_imports_neither_vllm_nor_torch():
    code = ("import sys, vllm_cfs.results, vllm_cfs.bench.workload, vllm_cfs.bench.client, "
            "vllm_cfs.bench.report; print(sorted(m for m in ('vllm', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
