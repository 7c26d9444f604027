"""The text report: setup, greppable summary lines, and one row per request in issue order."""

from __future__ import annotations

import re

from vllm_cfs.bench.report import format_report
from vllm_cfs.results import RequestRecord, RunResult


def make_result() -> RunResult:
    records = [
        RequestRecord(index=i, issue_offset_s=0.5 * i, issued_at_s=0.5 * i + 0.001, prompt_tokens=10 + i,
                      expected_output_tokens=4, output_tokens=4, ttft_s=0.1 * (i + 1), tpot_s=0.02,
                      itl_s=[0.02] * 3, e2e_s=0.1 * (i + 1) + 0.06, success=True)
        for i in range(3)
    ]
    records.append(RequestRecord(index=3, issue_offset_s=1.5, issued_at_s=1.501, prompt_tokens=13,
                                 expected_output_tokens=4, output_tokens=0, ttft_s=None, tpot_s=None, itl_s=[],
                                 e2e_s=None, success=False, error="HTTP 500: the engine is on fire"))
    records.append(RequestRecord(index=4, issue_offset_s=2.0, issued_at_s=2.001, prompt_tokens=14,
                                 expected_output_tokens=4, output_tokens=3, ttft_s=0.2, tpot_s=0.03,
                                 itl_s=[0.03] * 2, e2e_s=0.26, success=True))
    return RunResult.build({"model": "codellama/CodeLlama-34b-hf", "gpu": "simulated a100-40gb x2",
                            "request_rate": 3.0}, start_time=0.0, duration_s=2.5, records=records)


def summary_value(report: str, name: str) -> str:
    (value,) = re.findall(rf"^{re.escape(name)}: (.*)$", report, flags=re.M)
    return value


def test_report_has_setup_summary_and_every_request():
    result = make_result()
    report = format_report(result)
    assert summary_value(report, "gpu") == "simulated a100-40gb x2"
    assert summary_value(report, "started") == "1970-01-01T00:00:00+00:00"
    assert summary_value(report, "Successful requests") == "4"
    assert summary_value(report, "Failed requests") == "1"
    assert float(summary_value(report, "P99 TTFT (ms)")) == round(result.summary.p99_ttft_ms, 2)
    assert float(summary_value(report, "Mean TPOT (ms)")) == round(result.summary.mean_tpot_ms, 2)
    assert float(summary_value(report, "Output token throughput (tok/s)")) == round(15 / 2.5, 2)

    table = report.split("Requests in issue order\n", 1)[1].splitlines()
    assert table[0].split() == ["index", "issued_s", "prompt_tok", "output_tok", "ttft_ms", "tpot_ms", "e2e_ms", "status"]
    rows = [line.split(maxsplit=7) for line in table[1:]]
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"]
    assert rows[1] == ["1", "0.501", "11", "4", "200.00", "20.00", "260.00", "ok"]
    assert rows[3] == ["3", "1.501", "13", "0/4", "-", "-", "-", "FAILED: HTTP 500: the engine is on fire"]
    assert rows[4][3] == "3/4"  # a shortfall of tokens is visible


def test_a_run_with_no_success_reports_no_latencies():
    result = make_result()
    result = RunResult.build(result.setup, 0.0, 1.0, [result.records[3]])
    report = format_report(result)
    assert summary_value(report, "P99 TTFT (ms)") == "n/a"
    assert summary_value(report, "Successful requests") == "0"
