"""The streaming client against real sockets: a closed port and a real local HTTP server."""

from __future__ import annotations

import pytest

from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.workload import RequestSpec
from vllm_cfs.sim.reply_length import reply_tokens_of


def specs(output_tokens, gap_s=0.0):
    return [RequestSpec(i, f"prompt number {i} " * (i + 1), prompt_tokens=100 + i, output_tokens=n,
                        issue_offset_s=i * gap_s)
            for i, n in enumerate(output_tokens)]


def burst(base_url, requests, timeout_s=30.0):
    config = ClientConfig(base_url=base_url, model="test-model", timeout_s=timeout_s, progress=False)
    return run_burst(requests, config, {"label": "test"})


def test_complete_streams_are_timed_token_by_token(completion_server):
    requests = specs([1, 2, 5, 8], gap_s=0.02)
    result = burst(completion_server.url("ok"), requests)

    assert [r.index for r in result.records] == [0, 1, 2, 3]
    assert all(r.success and r.error == "" for r in result.records)
    for spec, record in zip(requests, result.records):
        assert record.output_tokens == spec.output_tokens == record.expected_output_tokens
        # The fake server reports prompt tokens as words + 1: the server's count wins over ours.
        assert record.prompt_tokens == len(spec.prompt.split()) + 1
        assert len(record.itl_s) == spec.output_tokens - 1
        # TTFT is the first chunk with text, not the empty chunk the server sends first.
        assert record.ttft_s >= completion_server.EMPTY_FIRST_CHUNK_S
        assert record.e2e_s >= record.ttft_s + sum(record.itl_s)
        assert record.issue_offset_s == spec.issue_offset_s
    assert result.records[0].tpot_s is None  # one token: no time per output token
    for record in result.records[1:]:
        assert record.tpot_s == pytest.approx((record.e2e_s - record.ttft_s) / (record.output_tokens - 1))
    issued = [r.issued_at_s for r in result.records]
    assert issued == sorted(issued)

    # What reached the server: issue order, and the request our measurements rely on.
    assert [body["max_tokens"] for body in completion_server.received] == [1, 2, 5, 8]
    for body, spec in zip(completion_server.received, requests):
        assert body["prompt"] == spec.prompt
        assert body["model"] == "test-model"
        assert body["stream"] is True and body["ignore_eos"] is True and body["temperature"] == 0
        assert body["stream_options"] == {"include_usage": True}

    assert result.summary.completed == 4 and result.summary.failed == 0
    assert result.summary.total_output_tokens == 16
    assert result.setup == {"label": "test"}


def test_a_capped_request_sends_its_length_to_the_simulated_gpu_and_records_how_it_ended(completion_server):
    requests = [RequestSpec(0, "a b", 3, output_tokens=20, issue_offset_s=0.0, reply_tokens=4),
                RequestSpec(1, "c d", 3, output_tokens=5, issue_offset_s=0.0, reply_tokens=9),
                RequestSpec(2, "e f", 3, output_tokens=6, issue_offset_s=0.0)]
    result = burst(completion_server.url("ok"), requests)
    bodies = sorted(completion_server.received, key=lambda body: body["prompt"])
    assert [("ignore_eos" in body, reply_tokens_of(body.get("seed"))) for body in bodies] == [
        (False, 4), (False, 9), (True, None)]  # EOS on only where max_tokens is a cap
    assert [(r.output_tokens, r.finish_reason, r.ended_at_eos) for r in result.records] == [
        (4, "stop", True), (5, "length", False), (6, "length", False)]
    forced = run_burst(requests[:1], ClientConfig(base_url=completion_server.url("ok"), progress=False,
                                                  ignore_eos=True), {})
    assert forced.records[0].output_tokens == 20 and forced.records[0].ended_at_cap  # ignore_eos wins


def test_without_usage_the_token_chunks_are_counted(completion_server):
    result = burst(completion_server.url("no-usage"), specs([3, 6]))
    assert [r.output_tokens for r in result.records] == [3, 6]
    assert [r.prompt_tokens for r in result.records] == [100, 101]  # our own count, the server gave none
    assert all(r.success for r in result.records)


def test_unreachable_server_gives_failed_records_with_the_reason(closed_port):
    base_url = f"http://127.0.0.1:{closed_port}"
    result = burst(base_url, specs([4, 4, 4]))
    assert len(result.records) == 3
    for record in result.records:
        assert not record.success
        assert record.error == f"cannot connect to {base_url}: Connection refused"
        assert record.ttft_s is None and record.e2e_s is None and record.tpot_s is None
    assert result.summary.failed == 3 and result.summary.completed == 0
    assert result.summary.p99_ttft_ms is None


def test_http_errors_carry_status_and_server_message(completion_server):
    result = burst(completion_server.url("http500"), specs([4, 4]))
    assert [r.error for r in result.records] == ["HTTP 500: the engine is on fire"] * 2
    assert not any(r.success for r in result.records)


def test_a_silent_server_times_out(completion_server):
    result = burst(completion_server.url("hang"), specs([4]), timeout_s=0.3)
    (record,) = result.records
    assert not record.success
    assert record.error == "timed out after 0.3 s (0 token chunks received)"


def test_a_stream_that_stalls_times_out_and_says_how_far_it_got(completion_server):
    result = burst(completion_server.url("stall"), specs([10]), timeout_s=0.5)
    (record,) = result.records
    assert not record.success
    assert record.error == "timed out after 0.5 s (2 token chunks received)"
    assert record.ttft_s is not None  # the partial stream is still described
    assert record.e2e_s is None and record.tpot_s is None


def test_a_stream_cut_before_done_is_a_failure(completion_server):
    (record,) = burst(completion_server.url("cut"), specs([10])).records
    assert not record.success
    assert record.error == "stream ended before [DONE]"


def test_an_error_event_in_the_stream_is_a_failure(completion_server):
    (record,) = burst(completion_server.url("error-event"), specs([10])).records
    assert not record.success
    assert record.error == "server error in stream: swap space exhausted"


def test_a_malformed_event_is_a_failure(completion_server):
    (record,) = burst(completion_server.url("garbage"), specs([10])).records
    assert not record.success
    assert record.error == "malformed stream event: <html>Bad Gateway</html>"
