"""The burst client against vLLM's real OpenAI server running on the simulated GPU."""

from __future__ import annotations

import pytest

from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.bench.report import format_report
from vllm_cfs.bench.workload import WorkloadConfig, build_workload
from vllm_cfs.sim.model_dir import codellama_34b_dir


def test_a_humaneval_burst_through_vllm(server):
    tokenizer = load_tokenizer(codellama_34b_dir())
    workload = build_workload(WorkloadConfig("humaneval", num_prompts=8, request_rate=20, seed=2,
                                             humaneval_output_len=24), tokenizer)
    config = ClientConfig(base_url=server.base_url, model=server.served_model_name, timeout_s=120, progress=False)
    result = run_burst(workload.requests, config, {"gpu": "simulated a100-40gb x2", "dataset": workload.source})

    assert result.summary.completed == 8 and result.summary.failed == 0
    for spec, record in zip(workload.requests, result.records):
        assert record.success, record.error
        # The server tokenizes with the same tokenizer: our prompt count is its count, exactly.
        assert record.prompt_tokens == spec.prompt_tokens
        assert record.output_tokens == record.expected_output_tokens == 24  # ignore_eos: every token
        assert 0 < record.ttft_s < record.e2e_s
        assert record.tpot_s > 0
        assert record.tpot_s == pytest.approx((record.e2e_s - record.ttft_s) / 23)
        # One engine step per chunk: a chunk per token, except tokens that decode to no text yet.
        assert 12 <= len(record.itl_s) + 1 <= 24
    assert result.summary.total_output_tokens == 8 * 24
    assert "Successful requests: 8" in format_report(result)


def test_a_capped_humaneval_burst_ends_each_reply_at_eos_through_vllm(server):
    tokenizer = load_tokenizer(codellama_34b_dir())
    workload = build_workload(WorkloadConfig("humaneval", num_prompts=6, request_rate=20, seed=3, reply_cap=2048),
                              tokenizer)
    config = ClientConfig(base_url=server.base_url, model=server.served_model_name, timeout_s=120, progress=False)
    result = run_burst(workload.requests, config, {"gpu": "simulated a100-40gb x2"})

    for spec, record in zip(workload.requests, result.records):
        assert record.success, record.error
        assert record.expected_output_tokens == 2048  # what was asked for: the cap
        assert record.output_tokens == spec.reply_tokens < 2048  # where the simulated model said EOS
        assert record.finish_reason == "stop" and record.ended_at_eos
