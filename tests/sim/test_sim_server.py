"""vllm serve on the simulated GPU, as the experiment runs it: real server, real client, real log."""

import asyncio
import re
import time
import urllib.request

import openai
import pytest

from vllm_cfs.bench.server_metrics import read_gauges
from vllm_cfs.sim.reply_length import reply_seed
from vllm_cfs.sim.server import ServerOptions, simulated_server

SCHEDULER = "vllm_cfs.CFSScheduler"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "vllm_server.log"
    with simulated_server(ServerOptions(scheduler_cls=SCHEDULER, cfs_interval=10, log_path=log)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused")


def test_health_and_models(server, client):
    with urllib.request.urlopen(server.base_url + "/health", timeout=5) as response:
        assert response.status == 200
    assert [m.id for m in client.models.list().data] == ["codellama/CodeLlama-34b-hf"]


def test_startup_log_says_simulated(server):
    log = server.log_text()
    assert "The GPU is SIMULATED (vllm-cfs): profile a100-40gb, tensor parallel 2" in log
    assert re.search(r"# cuda \(simulated a100-40gb\) blocks: 1028, # CPU blocks: 10922", log)


def test_streaming_completion_has_exact_token_count(server, client):
    stream = client.completions.create(
        model=server.served_model_name, prompt="def quicksort(items):", max_tokens=12, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text_chunks = [c for c in chunks if c.choices and c.choices[0].text]
    assert len(text_chunks) >= 2  # tokens arrive one step at a time
    assert chunks[-1].usage.completion_tokens == 12
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_over_http_a_reply_ends_at_the_length_its_seed_carries(server, client):
    ended = client.completions.create(model=server.served_model_name, prompt="def quicksort(items):",
                                      max_tokens=2048, seed=reply_seed(7))
    assert (ended.usage.completion_tokens, ended.choices[0].finish_reason) == (7, "stop")
    forced = client.completions.create(model=server.served_model_name, prompt="def quicksort(items):",
                                       max_tokens=10, seed=reply_seed(7), extra_body={"ignore_eos": True})
    assert (forced.usage.completion_tokens, forced.choices[0].finish_reason) == (10, "length")


def test_n_samples(server, client):
    completion = client.completions.create(
        model=server.served_model_name, prompt=[1, 450, 1002, 77], max_tokens=5, n=3, extra_body={"ignore_eos": True},
    )
    assert len(completion.choices) == 3
    assert completion.usage.completion_tokens == 15
    assert len({c.text for c in completion.choices}) == 3  # each sample its own tokens


def _gpu_kv_usage(base_url):
    # vLLM exports the gauge from its first engine step on: before that no block is in use.
    return read_gauges(base_url, ["vllm:gpu_cache_usage_perc"]).get("vllm:gpu_cache_usage_perc", 0.0)


def test_kv_usage_rises_under_load_and_stats_are_logged(server):
    async def burst():
        aclient = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused")
        prompts = [[1] + [3 + (7919 * i + 104729 * j) % 31997 for j in range(800)] for i in range(24)]
        tasks = [
            aclient.completions.create(model=server.served_model_name, prompt=p, max_tokens=150,
                                       extra_body={"ignore_eos": True})
            for p in prompts
        ]
        usage = []
        pending = asyncio.gather(*tasks)
        while not pending.done():
            usage.append(await asyncio.to_thread(_gpu_kv_usage, server.base_url))
            await asyncio.sleep(0.5)
        return await pending, usage

    before = _gpu_kv_usage(server.base_url)
    results, usage = asyncio.run(burst())
    assert [r.usage.completion_tokens for r in results] == [150] * 24
    assert before == 0 and max(usage) > 0.5  # 24 x 951 tokens need ~1440 of 1028 blocks

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = re.findall(r"Avg prompt throughput: .* GPU KV cache usage: ([\d.]+)%, CPU KV cache usage: ([\d.]+)%",
                           server.log_text())
        if any(float(gpu) > 0 for gpu, _ in lines):
            break
        time.sleep(1)
    assert any(float(gpu) > 0 for gpu, _ in lines), "no stats line with GPU KV usage > 0 in the server log"
