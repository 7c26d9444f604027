"""`vllm serve` of vLLM V1 on the simulated GPU: the hub id, offline, tensor parallel 2, a streamed completion,
and runs salted apart in its prefix cache."""

import os
import re
import sys
import urllib.request
from pathlib import Path

import openai
import pytest

from vllm_cfs.analysis.prometheus import PREEMPTIONS, PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES, parse_metrics
from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.bench.workload import WorkloadConfig, build_workload
from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME, codellama_34b_dir
from vllm_cfs.sim.profile import PROFILE_ENV
from vllm_cfs.sim.server import free_port, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    vllm = Path(sys.executable).with_name("vllm")  # this venv's: .venv-v1/bin/vllm
    command = [str(vllm), "serve", SERVED_MODEL_NAME, "-tp", "2", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, PROFILE_ENV: "a100-40gb", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
           "PYTHONUNBUFFERED": "1"}
    log = tmp_path_factory.mktemp("server") / "vllm_server.log"
    with running_server(command, env, port, log, SERVED_MODEL_NAME, startup_timeout_s=600) as running:
        yield running


def test_the_log_says_simulated(server):
    log = server.log_text()
    assert "The GPU is SIMULATED (vllm-cfs): profile a100-40gb, tensor parallel 2; times and memory are modeled" in log
    assert "Initializing a V1 LLM engine (v0.24.0)" in log
    # vLLM's own line, from the blocks the simulated GPU's memory plan left for the KV cache
    # (vllm serve's default --gpu-memory-utilization is 0.92 in 0.24).
    assert re.search(r"GPU KV cache size: [\d,]+ tokens", log)
    assert re.search(r"Simulated GPU KV cache: \d+ blocks of 16 tokens", log)


def test_streams_a_completion_by_the_hub_id(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == [SERVED_MODEL_NAME]
    stream = client.completions.create(
        model=SERVED_MODEL_NAME, prompt="def quicksort(items):", max_tokens=12, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text_chunks = [c for c in chunks if c.choices and c.choices[0].text]
    assert len(text_chunks) >= 2  # tokens arrive one step at a time
    assert chunks[-1].usage.completion_tokens == 12  # never EOS: it ends at max_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def _metrics(server) -> dict[str, float]:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=30) as response:
        return parse_metrics(response.read().decode())


def test_a_run_salted_apart_finds_none_of_an_earlier_runs_prompts_cached(server):
    """hw2/sweep.sh gives each run on a V1 server a cache salt of its own (the client's
    --cache-salt): the same prompts again hit nothing of the run before. The control run, with the
    first run's salt again, shows that those blocks were still there to hit."""
    tokenizer = load_tokenizer(codellama_34b_dir())
    # 2 prompts of 200 tokens, 14 blocks each: no preemption (a run's own hits are none), and a run
    # takes its blocks from the thousands free for longer than the first run's (V1 evicts the least
    # recently freed first), so the first run's blocks survive the second.
    workload = build_workload(WorkloadConfig("random", num_prompts=2, seed=7, random_input_len=200,
                                             random_output_len=16), tokenizer)
    counted = (PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES, PREEMPTIONS)
    runs = []
    for salt in ("run-1", "run-2", "run-1"):
        config = ClientConfig(base_url=server.base_url, model=SERVED_MODEL_NAME, progress=False, cache_salt=salt)
        before = _metrics(server)
        result = run_burst(workload.requests, config, {})
        assert result.summary.failed == 0
        after = _metrics(server)
        runs.append({name: after[name] - before[name] for name in counted})
    first, salted_apart, same_salt = runs
    assert first[PREFIX_CACHE_HITS] == 0 and first[PREFIX_CACHE_QUERIES] > 0 and first[PREEMPTIONS] == 0
    assert salted_apart[PREFIX_CACHE_HITS] == 0
    assert salted_apart[PREFIX_CACHE_QUERIES] == first[PREFIX_CACHE_QUERIES]  # the same prompts were looked up
    assert same_salt[PREFIX_CACHE_HITS] >= 2 * 12 * 16  # each prompt's 12 full blocks
