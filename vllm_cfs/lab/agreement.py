"""Does the virtual-time replay tell the same story as the real-time simulated server?

The same workload (prompts, lengths, arrival offsets) goes once through ``vllm serve`` on the
simulated GPU with its real clock, streamed by the burst client, and once through the replay.
Both run vLLM's real V0 engine on the same cost model; what differs is what the replay leaves
out: HTTP, tokenization and detokenization, the engine's host work beyond the modeled per-step
overhead, and when exactly a request reaches the engine.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import statistics
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.results import RunResult
from vllm_cfs.bench.workload import Workload
from vllm_cfs.lab.policies import Policy
from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME, codellama_34b_dir
from vllm_cfs.sim.replay import ReplayConfig, ReplayProcess, ReplayRequest, ReplayResult, requests_of, to_run_result
from vllm_cfs.sim.server import ServerOptions, simulated_server

# One short request before the burst: a fresh server's first request pays one-off costs (~0.15 s
# here) that would shift every later step. The replay serves the same request, WARM_UP_LEAD_S
# before the burst, so that both engines have taken the same steps when the burst begins (a CFS
# scheduler counts steps).
WARM_UP_PROMPT = "def hello():"
WARM_UP_LEAD_S = 10.0
# The ReplayConfig settings that live_and_replayed gives the server too.
LIVE_SETTINGS = frozenset({"scheduler_cls", "cfs_interval"})


@dataclasses.dataclass(frozen=True)
class Agreement:
    requests: int
    median_ttft_rel_diff: float  # median over requests of |live - replay| / replay
    max_ttft_rel_diff: float
    p99_ttft_live_ms: float
    p99_ttft_replay_ms: float
    p99_tpot_live_ms: float
    p99_tpot_replay_ms: float
    p99_itl_live_ms: float
    p99_itl_replay_ms: float
    mean_itl_live_ms: float
    mean_itl_replay_ms: float
    duration_live_s: float
    duration_replay_s: float

    @property
    def p99_ttft_rel_diff(self) -> float:
        return abs(self.p99_ttft_live_ms - self.p99_ttft_replay_ms) / self.p99_ttft_replay_ms

    def describe(self, names: tuple[str, str] = ("live", "replay")) -> str:
        """One line; ``names`` are what the two sides are called (a live run against another, say)."""
        a, b = names
        return (f"{self.requests} requests: TTFT per request differs by {100 * self.median_ttft_rel_diff:.1f}% "
                f"(median), {100 * self.max_ttft_rel_diff:.1f}% (max); P99 TTFT {a} {self.p99_ttft_live_ms:.0f} ms, "
                f"{b} {self.p99_ttft_replay_ms:.0f} ms ({100 * self.p99_ttft_rel_diff:.1f}%); P99 TPOT {a} "
                f"{self.p99_tpot_live_ms:.1f} ms, {b} {self.p99_tpot_replay_ms:.1f} ms; P99 ITL {a} "
                f"{self.p99_itl_live_ms:.1f} ms, {b} {self.p99_itl_replay_ms:.1f} ms; mean ITL {a} "
                f"{self.mean_itl_live_ms:.1f} ms, {b} {self.mean_itl_replay_ms:.1f} ms; burst {a} "
                f"{self.duration_live_s:.1f} s, {b} {self.duration_replay_s:.1f} s")


def runs_live(policy: Policy) -> bool:
    """Whether ``live_and_replayed`` can run this lab policy on the server as the replay runs it
    (not chunked prefill, priorities or the ideal bound's unlimited KV)."""
    return set(policy.settings) <= LIVE_SETTINGS and not policy.unlimited_kv and policy.priorities is None


def compare(live: RunResult, replayed: RunResult) -> Agreement:
    if live.failed:
        raise ValueError(f"{len(live.failed)} live requests failed, the first: {live.failed[0].error}")
    replay_ttft = {r.index: r.ttft_s for r in replayed.records}
    diffs = [abs(r.ttft_s - replay_ttft[r.index]) / replay_ttft[r.index] for r in live.records]
    a, b = live.summary, replayed.summary
    return Agreement(len(diffs), statistics.median(diffs), max(diffs), a.p99_ttft_ms, b.p99_ttft_ms,
                     a.p99_tpot_ms, b.p99_tpot_ms, a.p99_itl_ms, b.p99_itl_ms, a.mean_itl_ms, b.mean_itl_ms,
                     live.duration_s, replayed.duration_s)


@dataclasses.dataclass(frozen=True)
class Pair:
    live: RunResult  # the burst client against the real-time simulated server
    replayed: RunResult  # the replay, in the same schema
    replay: ReplayResult  # the replay's own result (its steps)
    # The replay again, charging this machine's host time between steps (ReplayConfig.host_time
    # "measured"); run after the server has stopped, so that nothing else competes for the CPU.
    replayed_measured_host: Optional[RunResult] = None


def live_and_replayed(make_workload: Callable[[Any], Workload], scheduler_cls: Optional[str] = None,
                      cfs_interval: Optional[int] = None, log_path: Optional[Path] = None,
                      measure_host: bool = False) -> Pair:
    """A workload through the simulated server (real clock) and through the replay, same engine settings.

    ``make_workload`` builds the workload from the model's tokenizer. Everything that does not
    need the server (the tokenizer, the workload, the replay) runs while the server starts, and is
    done before the burst begins, so that it takes no CPU from the server while it is timed.
    ``measure_host`` adds the replay with this machine's host time, after the server has stopped.
    """
    config = ReplayConfig(scheduler_cls=scheduler_cls or ReplayConfig.scheduler_cls, cfs_interval=cfs_interval)
    prepared: dict[str, Any] = {}
    with ReplayProcess(config.profile) as process:
        def prepare() -> None:
            tokenizer = load_tokenizer(codellama_34b_dir())
            workload = make_workload(tokenizer)
            requests = requests_of(workload, tokenizer)
            warm_up = ReplayRequest(0.0, tuple(tokenizer.encode(WARM_UP_PROMPT)), 1)
            after_warm_up = [dataclasses.replace(r, arrival_s=r.arrival_s + WARM_UP_LEAD_S) for r in requests]
            jobs = [warm_up, *after_warm_up]
            prepared.update(workload=workload, requests=requests, jobs=jobs, replay=process.submit(jobs, config))

        preparing = _Worker(prepare)
        options = ServerOptions(scheduler_cls=scheduler_cls, cfs_interval=cfs_interval, log_path=log_path)
        with simulated_server(options) as server:
            preparing.join()
            workload, requests = prepared["workload"], prepared["requests"]
            replay = without_first_request(prepared["replay"].result(), WARM_UP_LEAD_S)
            setup = {"scheduler": config.scheduler_cls, "cfs_interval": cfs_interval, "num_prompts": len(requests)}
            _complete(server.base_url, WARM_UP_PROMPT, max_tokens=1)
            live = run_burst(workload.requests, ClientConfig(base_url=server.base_url, progress=False),
                             {**setup, "gpu": "simulated a100-40gb x2 (real-time server)"})
        measured = None
        if measure_host:
            measured_config = dataclasses.replace(config, host_time="measured")
            measured = to_run_result(without_first_request(
                process.submit(prepared["jobs"], measured_config).result(), WARM_UP_LEAD_S), requests, setup)
    return Pair(live, to_run_result(replay, requests, setup), replay, measured)


class _Worker(threading.Thread):
    """A function on a thread; ``join`` raises what it raised."""

    def __init__(self, target: Callable[[], None]):
        super().__init__(daemon=True)
        self._target_fn, self._error = target, None
        self.start()

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the joining thread
            self._error = exc

    def join(self, timeout: Optional[float] = None) -> None:
        super().join(timeout)
        if self._error is not None:
            raise self._error


def without_first_request(result: ReplayResult, lead_s: float) -> ReplayResult:
    """The replay as if it had begun ``lead_s`` later, without its first request (the warm-up)."""
    timings = tuple(
        dataclasses.replace(t, index=t.index - 1, arrival_s=t.arrival_s - lead_s, first_token_s=t.first_token_s - lead_s,
                            finish_s=t.finish_s - lead_s, token_times_s=tuple(x - lead_s for x in t.token_times_s))
        for t in result.requests[1:]
    )
    samples = tuple(dataclasses.replace(s, time_s=s.time_s - lead_s) for s in result.kv_samples if s.time_s > lead_s)
    return dataclasses.replace(result, requests=timings, kv_samples=samples)


def _complete(base_url: str, prompt: str, max_tokens: int) -> None:
    body = json.dumps({"model": SERVED_MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(base_url + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def arrival_margin_s(result: ReplayResult, long_step_s: float = 0.2) -> float:
    """How close (seconds) any request arrives to the start of a long step (a prefill) in the replay.

    A live engine sees a request a few ms after its arrival and drifts by its host work, so a
    request that arrives just before a long step starts could miss it there, and wait the whole
    step longer (a short decode step missed costs only that step). A workload whose margin is
    large tells the same story in both. A step that an arrival itself starts (on an idle engine)
    is no race and does not count."""
    starts = [s.time_s - s.duration_s for s in result.kv_samples if s.duration_s >= long_step_s]
    margins = []
    for t in result.requests:
        i = bisect.bisect_left(starts, t.arrival_s)
        margins += [abs(starts[j] - t.arrival_s) for j in (i - 1, i) if 0 <= j < len(starts)
                    and not math.isclose(starts[j], t.arrival_s, abs_tol=1e-9)]
    return min(margins, default=math.inf)
