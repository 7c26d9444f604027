"""Clients that hang up mid-stream, some while their request sits swapped out to CPU memory:
the real vLLM OpenAI server (simulated H200s) aborts them and every KV block comes back.

64 GPU blocks with ample swap space, so that a burst keeps several requests swapped out at any
moment: with CFS every 2 steps (victims of the CFS steps) and with FairScheduler (the running
requests that new arrivals evict, then those that growing requests push out).
"""

import asyncio
import re

import aiohttp
import pytest

from server_probe import (
    hang_up_once_swapped,
    last_cfs_stats,
    preemptions_counted,
    stream_completion,
    token_prompt,
    wait_until_idle,
)
from vllm_cfs.bench.server_metrics import SHOW_SWAP_GAUGES
from vllm_cfs.v0.scheduler import STATS_LOG_PERIOD_S
from vllm_cfs.sim.server import ServerOptions, simulated_server

EARLY, LATE = 6, 10  # clients that leave after a few tokens; clients that leave while swapped


@pytest.fixture(scope="module")
def server(policy, tmp_path_factory):
    log = tmp_path_factory.mktemp(f"disconnects-{policy.name}") / "vllm_server.log"
    options = ServerOptions(
        profile="h200", scheduler_cls=policy.scheduler_cls, cfs_interval=policy.cfs_interval, swap_space_gib=1,
        log_path=log, extra_args=("--num-gpu-blocks-override", "64", *SHOW_SWAP_GAUGES))
    with simulated_server(options) as running:
        yield running


async def leave_mid_stream(server):
    """EARLY + LATE long requests (about 28 blocks each); returns their results and the gauges
    read when the late ones hung up."""
    return await hang_up_once_swapped(server.base_url, server.served_model_name, [
        (i, token_prompt(120, i), 320, 3 if i < EARLY else None) for i in range(EARLY + LATE)])


async def complete(server, count):
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(
            stream_completion(session, server.base_url, server.served_model_name, 100 + i,
                              token_prompt(50, 100 + i), max_tokens=24)
            for i in range(count)))


def test_disconnected_clients_give_back_gpu_and_cpu_blocks(server, policy):
    results, at_hang_up = asyncio.run(leave_mid_stream(server))
    assert all(r.status == 200 and r.disconnected and not r.finished for r in results)
    # The late clients left while a request's KV sat in CPU memory.
    assert at_hang_up["vllm:num_requests_swapped"] > 0 and at_hang_up["vllm:cpu_cache_usage_perc"] > 0

    idle = wait_until_idle(server.base_url)
    # Every client has gone: whether its request was swapped out, back in or running when the
    # abort came, its blocks are free again, in both pools.
    assert idle["vllm:gpu_cache_usage_perc"] == 0 and idle["vllm:cpu_cache_usage_perc"] == 0
    assert idle["vllm:num_requests_swapped"] == idle["vllm:num_requests_running"] == 0
    assert idle["vllm:num_requests_waiting"] == 0
    log = server.log_text()
    assert len(re.findall(r"Aborted request cmpl-", log)) == EARLY + LATE
    # vLLM counts every preemption the scheduler reports, at every step (not a 5-second sample).
    preempted = preemptions_counted(server.base_url)
    assert preempted > 0

    if policy.counts_steps_on_a_timer:
        # CFS's counters change every second step whatever runs, so the burst below, started after
        # a quiet stats period, makes the scheduler log them. FairScheduler's change only when it
        # makes room for a waiting request, which the burst below never needs: it may log no line,
        # and the gauges above are what this run determines for it.
        asyncio.run(asyncio.sleep(STATS_LOG_PERIOD_S + 0.5))

    # The server keeps serving. These requests are small enough that nothing is swapped while
    # they run.
    after = asyncio.run(complete(server, 4))
    assert [(r.status, r.finished, r.completion_tokens) for r in after] == [(200, True, 24)] * 4
    assert preemptions_counted(server.base_url) == preempted
    idle = wait_until_idle(server.base_url)
    assert idle["vllm:gpu_cache_usage_perc"] == 0 and idle["vllm:cpu_cache_usage_perc"] == 0
    log = server.log_text()
    assert "Traceback" not in log

    if policy.counts_steps_on_a_timer:
        stats = last_cfs_stats(log)
        assert log.rfind("CFS stats:") > log.rfind("Aborted request")
        # With nothing swapped out any more, KV that went out to CPU memory and never came back
        # belonged to requests aborted while swapped out: their CPU blocks were freed by the abort.
        assert stats["blocks_swapped_out"] > stats["blocks_swapped_in"]
