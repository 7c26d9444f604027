"""Replay a workload through vLLM's real V1 engine on the simulated GPU, in virtual time.

The V1 counterpart of vllm_cfs.sim.replay (same requests in, same ReplayResult out): vLLM's
LLMEngine runs in-process (no engine-core process), each step advances a virtual clock by its
modeled duration, and requests join when the clock reaches their arrival. Same inputs, same
outputs.

    result = replay([ReplayRequest(0.0, (1, 450, 9), 64), ...], V1ReplayConfig(num_gpu_blocks_override=400))
    print(result.preemptions, result.recompute_tax)

V1 preempts by recompute, so a sample's ``swapped`` is 0; with KV offloading
(``kv_offloading_size``), ``swapped_out_blocks`` / ``swapped_in_blocks`` count the blocks whose
copy to / from host memory began in that step, and the result's totals all of them.

vLLM picks its platform once per process and freezes its environment once an engine exists, so
a replay runs in this process only when it already is on the simulated GPU with that profile
and without V1 multiprocessing; otherwise in one spawned child, reused for every replay.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import ClassVar, Iterator, Optional, Sequence

from vllm_cfs.settings import CFS_INTERVAL_ENV, MIN_GRANULARITY_ENV
from vllm_cfs.sim.clock import CLOCK_ENV, HostGap, VirtualClock
from vllm_cfs.sim.profile import PROFILE_ENV
from vllm_cfs.sim.replay import (
    HOST_TIMES,
    LOG_LEVEL_ENV,
    KVSample,
    ReplayProcess,
    ReplayRequest,
    ReplayResult,
    RequestTiming,
    _environment,
)

DEFAULT_SCHEDULER = "vllm.v1.core.sched.scheduler.Scheduler"
MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
# vLLM appends random characters to request ids (to keep duplicates apart); a replay's ids are
# unique, and random ones would break ties between equal arrivals differently on every run.
REQUEST_ID_RANDOMIZATION_ENV = "VLLM_DISABLE_REQUEST_ID_RANDOMIZATION"


@dataclasses.dataclass(frozen=True)
class V1ReplayConfig:
    engine: ClassVar[str] = "v1"
    # V1 preempts by recompute only and always chunks prefills (for sim.replay.to_run_result).
    preemption_mode: ClassVar[str] = "recompute"
    enable_chunked_prefill: ClassVar[bool] = True

    profile: str = "a100-40gb"
    tensor_parallel_size: int = 2
    gpu_memory_utilization: float = 0.9
    scheduler_cls: str = DEFAULT_SCHEDULER
    # CFS_INTERVAL and CFS_MIN_GRANULARITY while the engine is built; None: the scheduler's
    # default, whatever this process's environment says.
    cfs_interval: Optional[int] = None
    cfs_min_granularity: Optional[int] = None
    scheduling_policy: str = "fcfs"  # vLLM's --scheduling-policy: "fcfs" or "priority"
    enable_prefix_caching: bool = True  # V1's default
    # None: what `vllm serve` picks for the profile's GPU (2048 tokens and 256 sequences on an A100)
    max_num_batched_tokens: Optional[int] = None
    max_num_seqs: Optional[int] = None
    # GPU KV blocks instead of what fits in the modeled memory (vLLM's num_gpu_blocks_override)
    num_gpu_blocks_override: Optional[int] = None
    # vLLM V1 refuses a KV cache that cannot hold one sequence of max_model_len tokens, overridden
    # or not: a small cache needs a shorter limit. None: the model's (16384 for CodeLlama-34B).
    max_model_len: Optional[int] = None
    seed: int = 0
    # vLLM's --kv-offloading-backend / --kv-offloading-size (GiB of host memory); None: off
    kv_offloading_backend: str = "native"
    kv_offloading_size: Optional[float] = None
    model_dir: Optional[Path] = None  # default: the cached CodeLlama-34B folder
    host_time: str = "modeled"  # as sim.replay.ReplayConfig.host_time
    # vLLM's async scheduling, its default on a GPU (step n+1 planned while step n runs:
    # sim.clock.PipelinedClock); off, the synchronous loop the policy lab's figures come from.
    async_scheduling: bool = False

    def __post_init__(self) -> None:
        if self.host_time not in HOST_TIMES:
            raise ValueError(f"host_time={self.host_time!r}: use one of {', '.join(HOST_TIMES)}")
        if self.async_scheduling and self.host_time == "measured":
            raise ValueError("host_time='measured' charges host time between steps, which async scheduling hides")


def replay(requests: Sequence[ReplayRequest], config: V1ReplayConfig = V1ReplayConfig()) -> ReplayResult:
    return replay_many([(requests, config)])[0]


def replay_many(jobs: Sequence[tuple[Sequence[ReplayRequest], V1ReplayConfig]]) -> list[ReplayResult]:
    """Several replays, one after another, each on a fresh engine, in one process (one start-up cost)."""
    return list(replay_each(jobs))


def replay_each(jobs: Sequence[tuple[Sequence[ReplayRequest], V1ReplayConfig]]) -> Iterator[ReplayResult]:
    """``replay_many``, handing over each result as soon as it is done."""
    if not jobs:
        return
    with V1ReplayProcess(jobs[0][1].profile) as process:
        yield from process.each(jobs)


class V1ReplayProcess(ReplayProcess):
    """sim.replay.ReplayProcess for V1 replays: ``submit``, ``each`` and ``close`` as there."""

    @staticmethod
    def _child_env(profile: str) -> dict[str, str]:
        return {PROFILE_ENV: profile, CLOCK_ENV: "virtual", MULTIPROCESSING_ENV: "0", "HF_HUB_OFFLINE": "1",
                REQUEST_ID_RANDOMIZATION_ENV: "1", "VLLM_NO_USAGE_STATS": "1",
                # vLLM logs to stdout; a replay's lines would bury the caller's output, and its
                # results carry what matters. Set it to see them.
                LOG_LEVEL_ENV: os.environ.get(LOG_LEVEL_ENV, "ERROR")}

    @staticmethod
    def _can_run_here(profile: str) -> bool:
        if os.environ.get(PROFILE_ENV) != profile or os.environ.get(MULTIPROCESSING_ENV) != "0":
            return False  # resolving vLLM's platform now would pin this process to another one
        from vllm.platforms import current_platform

        from vllm_cfs.sim.v1.platform import SimulatedGPUPlatform

        return isinstance(current_platform, SimulatedGPUPlatform) and current_platform.profile_name == profile

    @staticmethod
    def _warm_up() -> None:
        from vllm import LLMEngine  # noqa: F401
        from vllm.platforms import current_platform

        current_platform.get_device_name()

    @staticmethod
    def _run(requests: tuple[ReplayRequest, ...], config: V1ReplayConfig) -> ReplayResult:
        return _replay_here(requests, config)


def _engine(config: V1ReplayConfig):
    from vllm import EngineArgs, LLMEngine
    from vllm.usage.usage_lib import UsageContext

    from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME, codellama_34b_dir
    from vllm_cfs.sim.v1.executor import SimulatedExecutor

    engine_args = EngineArgs(
        model=str(config.model_dir or codellama_34b_dir()),
        served_model_name=SERVED_MODEL_NAME,
        tensor_parallel_size=config.tensor_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization,
        # vLLM's own is its pick: Scheduler, or AsyncScheduler with async scheduling on.
        scheduler_cls=None if config.scheduler_cls == DEFAULT_SCHEDULER else config.scheduler_cls,
        scheduling_policy=config.scheduling_policy,
        enable_prefix_caching=config.enable_prefix_caching,
        max_num_batched_tokens=config.max_num_batched_tokens,
        max_num_seqs=config.max_num_seqs,
        num_gpu_blocks_override=config.num_gpu_blocks_override,
        max_model_len=config.max_model_len,
        kv_offloading_backend=config.kv_offloading_backend,
        kv_offloading_size=config.kv_offloading_size,
        seed=config.seed,
        distributed_executor_backend=SimulatedExecutor,
        async_scheduling=config.async_scheduling,
        disable_log_stats=True,
    )
    with _environment({CFS_INTERVAL_ENV: config.cfs_interval, MIN_GRANULARITY_ENV: config.cfs_min_granularity}):
        # The server's defaults (batch sizes for the modeled GPU), not the offline engine's.
        return LLMEngine.from_engine_args(engine_args, usage_context=UsageContext.OPENAI_API_SERVER)


def _replay_here(requests: tuple[ReplayRequest, ...], config: V1ReplayConfig) -> ReplayResult:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    os.environ.setdefault(REQUEST_ID_RANDOMIZATION_ENV, "1")  # read from the first engine on
    engine = _engine(config)
    try:
        return _drive(engine, requests, config, SamplingParams, TokensPrompt)
    finally:
        engine.engine_core.shutdown()


def _drive(engine, requests, config: V1ReplayConfig, SamplingParams, TokensPrompt) -> ReplayResult:
    core = engine.engine_core.engine_core
    scheduler = core.scheduler
    block_pool = scheduler.kv_cache_manager.block_pool
    block_size = core.vllm_config.cache_config.block_size
    worker = engine.model_executor.worker
    if config.async_scheduling:
        clock = worker.clock  # the worker's PipelinedClock
    else:
        clock = VirtualClock(host=HostGap(worker.gpu.step_overhead_s) if config.host_time == "measured" else None)
        worker.clock = clock

    pending = collections.deque(sorted(range(len(requests)), key=lambda i: (requests[i].arrival_s, i)))
    token_times: dict[int, list[float]] = {i: [] for i in range(len(requests))}
    live: dict[str, object] = {}  # vLLM's Request of each unfinished replay request, by id
    preemptions_seen: dict[str, int] = {}
    finished: set[int] = set()
    finish_reasons: dict[int, Optional[str]] = {}
    samples: list[KVSample] = []
    steps = idle_steps = preemptions = 0
    while pending or engine.has_unfinished_requests():
        if not engine.has_unfinished_requests():
            clock.advance_to(requests[pending[0]].arrival_s)
        while pending and requests[pending[0]].arrival_s <= clock.now():
            i = pending.popleft()
            request_id = engine.add_request(
                str(i),
                TokensPrompt(prompt_token_ids=list(requests[i].prompt_token_ids)),
                SamplingParams(**requests[i].sampling(), detokenize=False),
                arrival_time=requests[i].arrival_s,
                priority=requests[i].priority,
            )
            live[str(i)] = scheduler.requests[request_id]
            preemptions_seen[str(i)] = 0
        before = clock.now()
        outputs = engine.step()
        now = clock.now()
        if now == before and clock.gpu_now() > now:
            continue  # a step was handed to the GPU; the next one is planned while it runs
        steps += 1
        # vLLM counts preemptions on the request (Request.num_preemptions), whatever the scheduler class.
        preempted = 0
        for key, request in live.items():
            preempted += request.num_preemptions - preemptions_seen[key]
            preemptions_seen[key] = request.num_preemptions
        preemptions += preempted
        for out in outputs:
            i = int(out.request_id)
            times = token_times[i]
            times.extend([now] * (len(out.outputs[0].token_ids) - len(times)))
            if out.finished:
                finished.add(i)
                finish_reasons[i] = out.outputs[0].finish_reason
                live.pop(out.request_id, None)
        if now == before:  # nothing ran: wait for the next arrival or KV transfer, or the engine is stuck
            idle_steps += 1
            wake = [t for t in (requests[pending[0]].arrival_s if pending else None, worker.next_event_s())
                    if t is not None and t > now]
            if wake:
                clock.advance_to(min(wake))
            elif idle_steps > 10:
                raise RuntimeError(f"replay stalled at {now:.3f} s: the engine holds requests it never runs")
            continue
        idle_steps = 0
        step = worker.last_step
        waiting = [*scheduler.waiting, *getattr(scheduler, "skipped_waiting", ())]
        samples.append(KVSample(
            time_s=now,
            gpu_kv_usage=block_pool.get_usage(),
            cpu_kv_usage=0.0,
            running=len(scheduler.running),
            swapped=0,  # V1 preempts by recompute: a preempted request waits
            waiting=len(waiting),
            duration_s=now - before,
            batch=step.prefill_chunks + step.decodes if step is not None else 0,
            swapped_out_blocks=step.blocks_stored if step is not None else 0,
            swapped_in_blocks=step.blocks_loaded if step is not None else 0,
            preempted=preempted,
            waiting_blocks=sum(-(-request.num_tokens // block_size) for request in waiting),
        ))
    assert finished == set(range(len(requests))), "the replay ended with unfinished requests"
    timings = tuple(
        RequestTiming(i, r.arrival_s, token_times[i][0], token_times[i][-1], len(r.prompt_token_ids),
                      len(token_times[i]), tuple(token_times[i]), finish_reasons.get(i))
        for i, r in enumerate(requests)
    )
    return ReplayResult(
        config, core.vllm_config.cache_config.num_gpu_blocks, 0, steps, timings, tuple(samples),
        blocks_swapped_out=worker.offload.blocks_stored if worker.offload is not None else 0,
        blocks_swapped_in=worker.offload.blocks_loaded if worker.offload is not None else 0,
        preemptions=preemptions,
        tokens_computed=worker.tokens_computed,
        tokens_recomputed=worker.tokens_recomputed,
        policy_victims=scheduler.policy_stats.victims if hasattr(scheduler, "policy_stats") else None,
    )
