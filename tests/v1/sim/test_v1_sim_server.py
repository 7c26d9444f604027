"""`vllm serve` of vLLM V1 on the simulated GPU: the hub id, offline, tensor parallel 2, a streamed completion."""

import os
import re
import sys
from pathlib import Path

import openai
import pytest

from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME
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
