"""Faults end to end on the real vLLM OpenAI server (simulated H200s): swap space far too small
for CFS's victims, requests the model cannot take, and clients that leave while their request
sits in that small swap space.

One server for the module per scheduler (CFS every 2 steps, then FairScheduler): 64 GPU blocks
(1024 tokens) so that a small burst overflows the GPU, and 0.02 GiB of swap space: 13 CPU blocks
of 1.5 MiB, room for one victim at most, where upstream vLLM would die with "Can't swap out ...
CPU space" instead.
"""

import asyncio
import re

import aiohttp
import pytest

from server_probe import (
    gauges,
    hang_up_once_swapped,
    post_json,
    stream_completion,
    token_prompt,
    wait_until_idle,
)

from vllm_cfs.bench.server_metrics import SHOW_SWAP_GAUGES
from vllm_cfs.sim.server import ServerOptions, simulated_server

MAX_MODEL_LEN = 1024
ROUNDS_LEAVING_WHILE_SWAPPED = 4


@pytest.fixture(scope="module")
def server(policy, tmp_path_factory):
    log = tmp_path_factory.mktemp(f"tiny-swap-{policy.name}") / "vllm_server.log"
    options = ServerOptions(
        profile="h200", scheduler_cls=policy.scheduler_cls, cfs_interval=policy.cfs_interval,
        swap_space_gib=0.02, log_path=log,
        extra_args=("--num-gpu-blocks-override", "64", "--max-model-len", str(MAX_MODEL_LEN),
                    *SHOW_SWAP_GAUGES))
    with simulated_server(options) as running:
        yield running


async def burst(server, requests):
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(
            stream_completion(session, server.base_url, server.served_model_name, i,
                              token_prompt(prompt_len, i), max_tokens)
            for i, (prompt_len, max_tokens) in enumerate(requests)))


def test_swap_space_far_too_small_falls_back_to_recompute(server, policy):
    log_lines = [line for line in server.log_text().splitlines() if "# CPU blocks" in line]
    assert log_lines and log_lines[-1].rstrip().endswith("# CPU blocks: 13")
    # 24 requests of 6 to 13 blocks each: three times what the GPU holds. Under CFS the CFS steps
    # evict; under FairScheduler the requests still waiting for a first token evict the latest
    # arrivals, and growing requests push the last ones out: more victims than 13 blocks hold.
    requests = [(40 + 13 * (i % 5), 60 + 7 * (i % 9)) for i in range(24)]
    results = asyncio.run(burst(server, requests))

    assert [(r.status, r.finished, r.completion_tokens) for r in results] == [
        (200, True, max_tokens) for _, max_tokens in requests]
    log = server.log_text()
    # The scheduler's lines come out through vLLM's own logging, in its format.
    assert re.search(rf"^INFO .*\] {policy.start_line}", log, re.M)
    assert re.search(r"^WARNING .*\] CPU swap space is full: preempting by recompute instead of "
                     r"swap", log, re.M)
    assert "Can't swap out" not in log and "Traceback" not in log
    idle = wait_until_idle(server.base_url)
    assert idle["vllm:gpu_cache_usage_perc"] == 0 and idle["vllm:cpu_cache_usage_perc"] == 0
    assert idle["vllm:num_requests_swapped"] == 0


def test_prompt_over_the_model_limit_gets_http_400(server):
    status, body = asyncio.run(post_json(server.base_url, "/v1/completions", {
        "model": server.served_model_name, "prompt": token_prompt(MAX_MODEL_LEN + 20, 1),
        "max_tokens": 4}))
    assert status == 400
    assert f"maximum context length is {MAX_MODEL_LEN} tokens" in body["message"]
    assert f"{MAX_MODEL_LEN + 20}" in body["message"]


def test_max_tokens_beyond_the_model_limit_gets_http_400(server):
    status, body = asyncio.run(post_json(server.base_url, "/v1/completions", {
        "model": server.served_model_name, "prompt": token_prompt(100, 2),
        "max_tokens": MAX_MODEL_LEN}))
    assert status == 400
    assert f"maximum context length is {MAX_MODEL_LEN} tokens" in body["message"]
    assert "completion" in body["message"]


def test_server_keeps_serving_after_bad_requests(server):
    # Runs after the two above (pytest keeps file order): the same server still answers.
    results = asyncio.run(burst(server, [(30, 12), (700, 12)]))
    assert [(r.status, r.completion_tokens) for r in results] == [(200, 12), (200, 12)]
    assert gauges(server.base_url)["vllm:num_requests_waiting"] == 0


def test_clients_leaving_while_swapped_out_leave_later_swap_outs_working(server):
    """vLLM 0.9.0 alone dies here (IndexError in the block manager, see vllm_cfs/v0/block_pools.py):
    a request aborted while swapped out leaves its block objects' ids in the CPU allocator's
    object pool (52 objects for these 13 CPU blocks), and a later swap-out indexes past it."""
    log_start = len(server.log_text())
    swapped_rounds = 0
    for round_ in range(ROUNDS_LEAVING_WHILE_SWAPPED):
        first = 1000 + 100 * round_
        # 8 requests of 7 blocks at once that grow to 19: the GPU's 64 blocks overflow, a victim
        # goes to CPU memory, and then every client hangs up, the swapped one's too.
        results, at_hang_up = asyncio.run(hang_up_once_swapped(
            server.base_url, server.served_model_name,
            [(i, token_prompt(100, i), 200, None) for i in range(first, first + 8)]))
        assert [r.status for r in results] == [200] * 8, [r.error for r in results]
        swapped_rounds += bool(at_hang_up)
        idle = wait_until_idle(server.base_url)
        assert idle["vllm:gpu_cache_usage_perc"] == 0 and idle["vllm:cpu_cache_usage_perc"] == 0
    assert swapped_rounds == ROUNDS_LEAVING_WHILE_SWAPPED
    # Swap-outs after those aborts: the undersized-swap burst again completes in full.
    requests = [(40 + 13 * (i % 5), 60 + 7 * (i % 9)) for i in range(24)]
    results = asyncio.run(burst(server, requests))
    assert [(r.status, r.completion_tokens) for r in results] == [(200, m) for _, m in requests]
    assert "Traceback" not in server.log_text()[log_start:]
