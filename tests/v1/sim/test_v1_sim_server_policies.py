"""One live ``vllm-cfs serve --engine v1`` server per policy on the simulated GPU: vLLM V1's own
scheduler, the assignment's CFS (``vllm_cfs.v1.CFSScheduler``, CFS_INTERVAL=10) and our
``vllm_cfs.v1.FairScheduler``, each with vllm-cfs serve's V1 setup (CPU offloading included) on a
small KV budget, under one burst from our HTTP client (vllm_cfs.bench.client).

The burst overfills the cache by construction: 6 prompts of 200 tokens, all sent at once, each
asking for 128 tokens, on 64 GPU blocks of 16 tokens (block 0 is vLLM's null block: 63 usable).
A prompt needs 13 blocks to be admitted, so at most 4 run at once (a fifth finds 11 free), and 4
grow to 4 x 21 = 84 blocks before any finishes: vLLM's own scheduler must preempt on its own, and
2 requests wait while 4 run, so CFS (a CFS step every 10 steps) and Fair (after 8 steps of
patience) take room for them. That holds whenever the six requests reach the server before the
first of them has produced its 128 tokens (128 decode steps; the client sends them together).

The whole module runs the three servers one after another (module-scoped, parametrized fixture).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vllm_cfs.analysis.prometheus import PREEMPTIONS, parse_metrics
from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.bench.workload import WorkloadConfig, build_workload
from vllm_cfs.results import RunResult
from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME, codellama_34b_dir
from vllm_cfs.sim.profile import PROFILE_ENV
from vllm_cfs.sim.server import RunningServer, free_port, running_server

GPU_BLOCKS = 64
BURST = WorkloadConfig("random", num_prompts=6, request_rate=math.inf, seed=0, random_input_len=200,
                       random_output_len=128)
KV_USAGE = "vllm:kv_cache_usage_perc"
IDLE = {KV_USAGE: 0.0, "vllm:num_requests_running": 0.0, "vllm:num_requests_waiting": 0.0}
# A hang guard, not a speed target: how long the server may take to report itself idle.
IDLE_TIMEOUT_S = 120.0

# name -> (--scheduler-cls, extra environment); the default is vLLM's own class, the one vLLM builds
# here by itself (the simulated GPU has no async scheduling).
POLICIES = {
    "v1-default": ("vllm.v1.core.sched.scheduler.Scheduler", {}),
    "cfs-10": ("vllm_cfs.v1.CFSScheduler", {"CFS_INTERVAL": "10"}),
    "fair": ("vllm_cfs.v1.FairScheduler", {}),
}
OURS = ("cfs-10", "fair")


@dataclasses.dataclass
class Served:
    policy: str
    server: RunningServer
    burst: RunResult
    after_burst: dict[str, float]  # /metrics once the burst is done
    at_end: dict[str, float]  # /metrics once the server reports itself idle (or the guard ran out)
    log: str  # the server log once the burst is done

    def stats_lines(self) -> list[dict[str, str]]:
        """Our scheduler's cumulative counters, each line's key=value pairs (keys added later are kept)."""
        name = POLICIES[self.policy][0].rsplit(".", 1)[1]
        return [dict(pair.split("=", 1) for pair in match.split(", "))
                for match in re.findall(rf"\b{name} stats: (.*)$", self.log, re.M)]


def metrics(server: RunningServer) -> dict[str, float]:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=30) as response:
        return parse_metrics(response.read().decode())


def metrics_once_idle(server: RunningServer) -> dict[str, float]:
    """/metrics as soon as its gauges say idle. They come with the engine's steps: the last one may
    reach the API server a moment after the last stream ends, and with CPU offloading a finished
    request's blocks are freed once their copy to host memory is done, a step or more later."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while True:
        now = metrics(server)
        if all(now[name] == value for name, value in IDLE.items()) or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def client_config(server: RunningServer) -> ClientConfig:
    return ClientConfig(base_url=server.base_url, model=SERVED_MODEL_NAME, progress=False)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(codellama_34b_dir())


@pytest.fixture(scope="module", params=list(POLICIES))
def served(request, tokenizer, tmp_path_factory) -> Served:
    policy = request.param
    scheduler_cls, policy_env = POLICIES[policy]
    port = free_port()
    vllm_cfs = Path(sys.executable).with_name("vllm-cfs")  # this venv's: .venv-v1/bin/vllm-cfs
    command = [str(vllm_cfs), "serve", SERVED_MODEL_NAME, "--engine", "v1", "-tp", "2", "--port", str(port),
               "--scheduler-cls", scheduler_cls, "--num-gpu-blocks-override", str(GPU_BLOCKS),
               "--max-model-len", "512"]
    env = {**os.environ, PROFILE_ENV: "a100-40gb", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
           "PYTHONUNBUFFERED": "1", **policy_env}
    log = tmp_path_factory.mktemp(policy) / "vllm_server.log"
    workload = build_workload(BURST, tokenizer)
    with running_server(command, env, port, log, SERVED_MODEL_NAME, startup_timeout_s=600) as server:
        burst = run_burst(workload.requests, client_config(server), {"label": policy})
        after_burst = metrics(server)
        # Our schedulers log their counters when they drain, before the last tokens go out: once
        # the burst is done, the last line holds the whole burst's counts.
        at_end = metrics_once_idle(server)
        yield Served(policy, server, burst, after_burst, at_end, server.log_text())


def test_every_request_completes_with_all_its_tokens(served):
    assert served.burst.summary.completed == BURST.num_prompts and served.burst.summary.failed == 0
    assert [(r.output_tokens, r.expected_output_tokens) for r in served.burst.records] == [(128, 128)] * 6
    assert all(r.success and r.ttft_s is not None for r in served.burst.records)


def test_the_server_ran_the_policy_on_the_small_budget_with_offloading(served):
    (args,) = re.findall(r"non-default args: (\{.*\})$", served.log, re.M)
    assert f"'scheduler_cls': '{POLICIES[served.policy][0]}'" in args
    assert f"'num_gpu_blocks_override': {GPU_BLOCKS}" in args and "'kv_offloading_size': 16" in args
    assert f"Simulated GPU KV cache: {GPU_BLOCKS} blocks of 16 tokens per GPU" in served.log


def test_the_cache_overfilled_so_requests_were_preempted(served):
    # vLLM counts every preemption, its own and our policies' victims (both go through its
    # _preempt_request): 4 running requests outgrow the 63 usable blocks.
    assert served.after_burst[PREEMPTIONS] > 0


def test_our_policies_chose_victims_and_vllm_counted_them(served):
    lines = served.stats_lines()
    if served.policy not in OURS:
        assert lines == []  # vLLM's own scheduler: no policy of ours ran
        return
    last = lines[-1]
    assert int(last["victims"]) > 0 and int(last["policy_steps"]) > 0 and int(last["victim_blocks"]) > 0
    # Counted once by vLLM, which also counts its own preemptions.
    assert int(last["victims"]) <= served.after_burst[PREEMPTIONS]
    # The line at drain holds the burst: every token computed once, plus the recomputed ones.
    assert int(last["tokens_computed"]) == BURST.num_prompts * (200 + 128 - 1) + int(last["tokens_recomputed"])


def test_every_block_is_free_and_no_request_left_at_the_end(served):
    assert {name: served.at_end[name] for name in IDLE} == IDLE

