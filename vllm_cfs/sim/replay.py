"""Replay a workload through vLLM's real V0 engine on the simulated GPU, in virtual time.

No server, no sleeping: each engine step advances a virtual clock by its modeled duration, and
requests join the engine when the clock reaches their arrival time. Same inputs, same outputs.

    result = replay([ReplayRequest(0.0, (1, 450, 9), 64), ...], ReplayConfig(scheduler_cls="vllm_cfs.CFSScheduler", cfs_interval=10))

vLLM picks its platform once per process. ``replay`` runs in this process when this process's
platform already is the simulated GPU with the requested profile (``VLLM_CFS_SIM_GPU`` and
``VLLM_USE_V1=0`` were set before vLLM was used); otherwise it runs in a fresh child process.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from vllm_cfs.bench.results import RequestRecord, RunResult, time_per_output_token
from vllm_cfs.sim.clock import CLOCK_ENV, VirtualClock
from vllm_cfs.sim.profile import PROFILE_ENV

DEFAULT_SCHEDULER = "vllm.core.scheduler.Scheduler"


@dataclasses.dataclass(frozen=True)
class ReplayRequest:
    arrival_s: float
    prompt_token_ids: tuple[int, ...]
    max_tokens: int


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    profile: str = "a100-40gb"
    tensor_parallel_size: int = 2
    preemption_mode: str = "swap"
    swap_space_gib: float = 16
    gpu_memory_utilization: float = 0.9
    scheduler_cls: str = DEFAULT_SCHEDULER  # e.g. "vllm_cfs.CFSScheduler"
    cfs_interval: Optional[int] = None  # CFS_INTERVAL while the scheduler is built
    seed: int = 0
    max_num_seqs: int = 256
    model_dir: Optional[Path] = None  # default: the cached CodeLlama-34B folder


@dataclasses.dataclass(frozen=True)
class RequestTiming:
    """Virtual seconds since the replay started."""

    index: int  # position in the input list
    arrival_s: float
    first_token_s: float
    finish_s: float
    prompt_tokens: int
    output_tokens: int

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first."""
        return (self.finish_s - self.first_token_s) / max(1, self.output_tokens - 1)


@dataclasses.dataclass(frozen=True)
class KVSample:
    """State after one engine step (usage is a fraction of the blocks, 0..1)."""

    time_s: float
    gpu_kv_usage: float
    cpu_kv_usage: float
    running: int
    swapped: int
    waiting: int


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    config: ReplayConfig
    gpu_blocks: int
    cpu_blocks: int
    steps: int
    requests: tuple[RequestTiming, ...]  # in input order
    kv_samples: tuple[KVSample, ...]


def to_run_result(result: ReplayResult, requests: Sequence[ReplayRequest],
                  setup: Optional[dict] = None) -> RunResult:
    """The replay in the results schema the live client writes, so that one analysis reads both.

    Every replayed request completes; per-token times are not kept, so ``itl_s`` is empty.
    """
    config = result.config
    records = [
        RequestRecord(
            index=t.index, issue_offset_s=t.arrival_s, issued_at_s=t.arrival_s,
            prompt_tokens=t.prompt_tokens, expected_output_tokens=requests[t.index].max_tokens,
            output_tokens=t.output_tokens, ttft_s=t.ttft_s,
            tpot_s=time_per_output_token(t.finish_s - t.arrival_s, t.ttft_s, t.output_tokens),
            itl_s=[], e2e_s=t.finish_s - t.arrival_s, success=True,
        )
        for t in result.requests
    ]
    start = min((t.arrival_s for t in result.requests), default=0.0)
    end = max((t.finish_s for t in result.requests), default=start)
    described = {
        "gpu": f"simulated {config.profile} x{config.tensor_parallel_size} (virtual-time replay)",
        "scheduler": config.scheduler_cls,
        "cfs_interval": config.cfs_interval,
        "num_prompts": len(records),
        **(setup or {}),
    }
    return RunResult.build(described, start_time=0.0, duration_s=end - start, records=records)


def replay(requests: Sequence[ReplayRequest], config: ReplayConfig = ReplayConfig()) -> ReplayResult:
    return replay_many([(requests, config)])[0]


def replay_many(jobs: Sequence[tuple[Sequence[ReplayRequest], ReplayConfig]]) -> list[ReplayResult]:
    """Several replays, one after another, each on a fresh engine, in one process (one start-up cost)."""
    profiles = {config.profile for _, config in jobs}
    if len(profiles) > 1:
        raise ValueError(f"replay_many runs one GPU profile per process, got {sorted(profiles)}")
    frozen = [(tuple(requests), config) for requests, config in jobs]
    if not frozen:
        return []
    if _this_process_can_run(frozen[0][1]):
        return _replay_all(frozen)
    env = {PROFILE_ENV: profiles.pop(), "VLLM_USE_V1": "0", CLOCK_ENV: "virtual", "HF_HUB_OFFLINE": "1"}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_set_env,
                             initargs=(env,)) as pool:
        return pool.submit(_replay_all, frozen).result()


def _replay_all(jobs: list[tuple[tuple[ReplayRequest, ...], ReplayConfig]]) -> list[ReplayResult]:
    return [_replay_here(requests, config) for requests, config in jobs]


def _this_process_can_run(config: ReplayConfig) -> bool:
    if os.environ.get(PROFILE_ENV) != config.profile or os.environ.get("VLLM_USE_V1") != "0":
        return False  # resolving vLLM's platform now would pin this process to another one
    from vllm.platforms import current_platform

    from vllm_cfs.sim.platform import SimulatedGPUPlatform

    return isinstance(current_platform, SimulatedGPUPlatform) and current_platform.profile_name == config.profile


def _replay_here(requests: tuple[ReplayRequest, ...], config: ReplayConfig) -> ReplayResult:
    from vllm import EngineArgs, LLMEngine, SamplingParams
    from vllm.inputs import TokensPrompt

    from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME, codellama_34b_dir

    engine_args = EngineArgs(
        model=str(config.model_dir or codellama_34b_dir()),
        served_model_name=SERVED_MODEL_NAME,
        tensor_parallel_size=config.tensor_parallel_size,
        preemption_mode=config.preemption_mode,
        swap_space=config.swap_space_gib,
        gpu_memory_utilization=config.gpu_memory_utilization,
        scheduler_cls=config.scheduler_cls,
        seed=config.seed,
        max_num_seqs=config.max_num_seqs,
        disable_log_stats=True,
    )
    saved_interval = os.environ.get("CFS_INTERVAL")
    if config.cfs_interval is not None:
        os.environ["CFS_INTERVAL"] = str(config.cfs_interval)
    try:
        engine = LLMEngine.from_engine_args(engine_args)
    finally:
        if config.cfs_interval is not None:
            _restore_env("CFS_INTERVAL", saved_interval)
    clock = VirtualClock()
    engine.model_executor.worker.clock = clock
    scheduler = engine.scheduler[0]
    cache = engine.cache_config

    pending = collections.deque(sorted(range(len(requests)), key=lambda i: (requests[i].arrival_s, i)))
    first_token: dict[int, float] = {}
    finish: dict[int, float] = {}
    output_tokens: dict[int, int] = {}
    samples: list[KVSample] = []
    steps = idle_steps = 0
    while pending or engine.has_unfinished_requests():
        if not engine.has_unfinished_requests():
            clock.advance_to(requests[pending[0]].arrival_s)
        while pending and requests[pending[0]].arrival_s <= clock.now():
            i = pending.popleft()
            engine.add_request(
                str(i),
                TokensPrompt(prompt_token_ids=list(requests[i].prompt_token_ids)),
                SamplingParams(max_tokens=requests[i].max_tokens, ignore_eos=True),
                arrival_time=requests[i].arrival_s,
            )
        before = clock.now()
        outputs = engine.step()
        steps += 1
        for out in outputs:
            i, n = int(out.request_id), len(out.outputs[0].token_ids)
            if n and i not in first_token:
                first_token[i] = clock.now()
            if out.finished:
                finish[i], output_tokens[i] = clock.now(), n
        if clock.now() == before:  # nothing ran: wait for the next arrival, or the engine is stuck
            idle_steps += 1
            if pending:
                clock.advance_to(requests[pending[0]].arrival_s)
            elif idle_steps > 10:
                raise RuntimeError(f"replay stalled at {clock.now():.3f} s: the engine holds requests it never runs")
            continue
        idle_steps = 0
        bm = scheduler.block_manager
        samples.append(KVSample(
            time_s=clock.now(),
            gpu_kv_usage=1 - bm.get_num_free_gpu_blocks() / cache.num_gpu_blocks,
            cpu_kv_usage=1 - bm.get_num_free_cpu_blocks() / cache.num_cpu_blocks if cache.num_cpu_blocks else 0.0,
            running=len(scheduler.running),
            swapped=len(scheduler.swapped),
            waiting=len(scheduler.waiting),
        ))
    timings = tuple(
        RequestTiming(i, r.arrival_s, first_token[i], finish[i], len(r.prompt_token_ids), output_tokens[i])
        for i, r in enumerate(requests)
    )
    return ReplayResult(config, cache.num_gpu_blocks, cache.num_cpu_blocks, steps, timings, tuple(samples))


def _set_env(values: dict[str, str]) -> None:
    os.environ.update(values)


def _restore_env(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
