"""Replay a workload through vLLM's real V0 engine on the simulated GPU, in virtual time.

No server, no sleeping: each engine step advances a virtual clock by its modeled duration, and
requests join the engine when the clock reaches their arrival time. Same inputs, same outputs.
Every output token gets the virtual time of the step that produced it, so TTFT, TPOT and the
inter-token gaps a streaming client would see all come out of one replay.

    result = replay([ReplayRequest(0.0, (1, 450, 9), 64), ...], ReplayConfig(scheduler_cls="vllm_cfs.CFSScheduler", cfs_interval=10))

vLLM picks its platform once per process. ``replay`` runs in this process when this process's
platform already is the simulated GPU with the requested profile (``VLLM_CFS_SIM_GPU`` and
``VLLM_USE_V1=0`` were set before vLLM was used); otherwise it runs in a fresh child process.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Iterator, Optional, Sequence

from vllm_cfs.results import RequestRecord, RunResult, time_per_output_token
from vllm_cfs.settings import CFS_INTERVAL_ENV, MIN_GRANULARITY_ENV
from vllm_cfs.sim.clock import CLOCK_ENV, HostGap, VirtualClock
from vllm_cfs.sim.profile import PROFILE_ENV
from vllm_cfs.sim.reply_length import reply_seed

DEFAULT_SCHEDULER = "vllm.core.scheduler.Scheduler"
LOG_LEVEL_ENV = "VLLM_LOGGING_LEVEL"
HOST_TIMES = ("modeled", "measured")


@dataclasses.dataclass(frozen=True)
class ReplayRequest:
    arrival_s: float
    prompt_token_ids: tuple[int, ...]
    max_tokens: int  # the cap the client sends
    priority: int = 0  # vLLM's request priority (smaller is served first); read with scheduling_policy="priority"
    # The reply's true length, EOS included: the simulated model says EOS there (or the cap ends
    # it first). None: ignore_eos, every request runs to max_tokens (the assignment's setup).
    reply_tokens: Optional[int] = None

    def kv_blocks(self, block_size: int = 16) -> int:
        """KV blocks the request may hold at its longest (prompt and max_tokens output tokens)."""
        return -(-(len(self.prompt_token_ids) + self.max_tokens) // block_size)

    def sampling(self) -> dict:
        """Its vLLM SamplingParams: the cap, and either ignore_eos or the true length in the seed,
        where only the simulated model reads it (vllm_cfs.sim.reply_length)."""
        if self.reply_tokens is None:
            return {"max_tokens": self.max_tokens, "ignore_eos": True}
        return {"max_tokens": self.max_tokens, "ignore_eos": False, "seed": reply_seed(self.reply_tokens)}


def requests_of(workload, tokenizer) -> list[ReplayRequest]:
    """A workload (vllm_cfs.bench.workload) as replay requests: the prompts as the server would tokenize them."""
    return [ReplayRequest(s.issue_offset_s, tuple(tokenizer.encode(s.prompt)), s.output_tokens,
                          reply_tokens=s.reply_tokens)
            for s in workload.requests]


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    profile: str = "a100-40gb"
    tensor_parallel_size: int = 2
    preemption_mode: str = "swap"
    swap_space_gib: float = 16
    gpu_memory_utilization: float = 0.9
    scheduler_cls: str = DEFAULT_SCHEDULER  # e.g. "vllm_cfs.CFSScheduler"
    # CFS_INTERVAL and CFS_MIN_GRANULARITY while the scheduler is built; None: the scheduler's
    # default, whatever this process's environment says.
    cfs_interval: Optional[int] = None
    cfs_min_granularity: Optional[int] = None
    scheduling_policy: str = "fcfs"  # vLLM's --scheduling-policy: "fcfs" or "priority"
    enable_chunked_prefill: bool = False
    max_num_batched_tokens: Optional[int] = None  # None: vLLM's default for the chunking mode
    # GPU KV blocks instead of what fits in the modeled memory (vLLM's num_gpu_blocks_override):
    # more than fits describes a GPU with unlimited KV memory and the same speed.
    num_gpu_blocks_override: Optional[int] = None
    worker_cls: str = "auto"  # vllm_cfs.swap.WORKER_CLS: the staged swap path
    seed: int = 0
    max_num_seqs: int = 256
    model_dir: Optional[Path] = None  # default: the cached CodeLlama-34B folder
    # "modeled": the profile's fixed per-step overhead stands for the host's work between steps
    # (deterministic). "measured": this machine's host time between steps beyond that overhead is
    # charged too, as the real-time server pays it (sim.clock.HostGap); for comparing with it.
    host_time: str = "modeled"

    def __post_init__(self) -> None:
        if self.host_time not in HOST_TIMES:
            raise ValueError(f"host_time={self.host_time!r}: use one of {', '.join(HOST_TIMES)}")


@dataclasses.dataclass(frozen=True)
class RequestTiming:
    """Virtual seconds since the replay started."""

    index: int  # position in the input list
    arrival_s: float
    first_token_s: float
    finish_s: float
    prompt_tokens: int
    output_tokens: int
    token_times_s: tuple[float, ...] = ()  # when each output token came out (the end of its step)
    finish_reason: Optional[str] = None  # vLLM's: "stop" (EOS), "length" (max_tokens)

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def itl_s(self) -> list[float]:
        """Gaps between consecutive deliveries, as a streaming client measures them: a step's
        tokens go out as one chunk, so a step that brought several tokens counts once."""
        times = sorted(set(self.token_times_s))
        return [later - earlier for earlier, later in zip(times, times[1:])]

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first."""
        return (self.finish_s - self.first_token_s) / max(1, self.output_tokens - 1)


@dataclasses.dataclass(frozen=True)
class KVSample:
    """One engine step that ran: what it did, and the state after it (usage is a fraction of the blocks, 0..1)."""

    time_s: float  # when the step ended
    gpu_kv_usage: float
    cpu_kv_usage: float
    running: int
    swapped: int
    waiting: int
    duration_s: float = 0.0
    batch: int = 0  # sequence groups the step computed
    swapped_out_blocks: int = 0
    swapped_in_blocks: int = 0
    preempted: int = 0  # requests preempted while it was scheduled (swap or recompute)
    waiting_blocks: int = 0  # GPU blocks the waiting requests' prompts need, after the step


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    config: ReplayConfig  # or, from a V1 replay, vllm_cfs.sim.v1.replay.V1ReplayConfig
    gpu_blocks: int
    cpu_blocks: int
    steps: int
    requests: tuple[RequestTiming, ...]  # in input order
    kv_samples: tuple[KVSample, ...]
    # Totals over the whole replay, steps that ran nothing included.
    blocks_swapped_out: int = 0
    blocks_swapped_in: int = 0
    preemptions: int = 0
    # Counted by the simulated GPU (V1 replays): every scheduled token, and those at positions
    # their request had computed before (recomputed after a preemption).
    tokens_computed: int = 0
    tokens_recomputed: int = 0
    # Of the preemptions, those a vllm_cfs V1 policy chose itself (its stats line's victims);
    # None under a scheduler without that count.
    policy_victims: Optional[int] = None

    @property
    def recompute_tax(self) -> float:
        """The share of the GPU's token work spent recomputing what it had computed before."""
        return self.tokens_recomputed / self.tokens_computed if self.tokens_computed else 0.0


def to_run_result(result: ReplayResult, requests: Sequence[ReplayRequest],
                  setup: Optional[dict] = None) -> RunResult:
    """The replay in the results schema the live client writes, so that one analysis reads both.

    Every replayed request completes; ``itl_s`` holds its inter-token gaps, so TTFT plus their
    sum is its end-to-end time.
    """
    config = result.config
    v1 = getattr(config, "engine", "v0") == "v1"
    records = [
        RequestRecord(
            index=t.index, issue_offset_s=t.arrival_s, issued_at_s=t.arrival_s,
            prompt_tokens=t.prompt_tokens, expected_output_tokens=requests[t.index].max_tokens,
            output_tokens=t.output_tokens, ttft_s=t.ttft_s,
            tpot_s=time_per_output_token(t.finish_s - t.arrival_s, t.ttft_s, t.output_tokens),
            itl_s=t.itl_s, e2e_s=t.finish_s - t.arrival_s, success=True, finish_reason=t.finish_reason,
        )
        for t in result.requests
    ]
    start = min((t.arrival_s for t in result.requests), default=0.0)
    end = max((t.finish_s for t in result.requests), default=start)
    described = {
        "gpu": f"simulated {config.profile} x{config.tensor_parallel_size} (virtual-time replay"
               + (", vLLM V1" if v1 else "")
               + (", this machine's host time measured)" if config.host_time == "measured" else ")"),
        "scheduler": config.scheduler_cls,
        "cfs_interval": config.cfs_interval,
        "cfs_min_granularity": config.cfs_min_granularity,
        "scheduling_policy": config.scheduling_policy,
        "preemption_mode": config.preemption_mode,
        "enable_chunked_prefill": config.enable_chunked_prefill,
        "gpu_blocks": result.gpu_blocks,
        "num_prompts": len(records),
        **({"engine": "v1", "enable_prefix_caching": config.enable_prefix_caching,
            "preemptions": result.preemptions, "tokens_computed": result.tokens_computed,
            "tokens_recomputed": result.tokens_recomputed} if v1 else {}),
        **(setup or {}),
    }
    return RunResult.build(described, start_time=0.0, duration_s=end - start, records=records)


def replay(requests: Sequence[ReplayRequest], config: ReplayConfig = ReplayConfig()) -> ReplayResult:
    return replay_many([(requests, config)])[0]


def replay_many(jobs: Sequence[tuple[Sequence[ReplayRequest], ReplayConfig]]) -> list[ReplayResult]:
    """Several replays, one after another, each on a fresh engine, in one process (one start-up cost)."""
    return list(replay_each(jobs))


def replay_each(jobs: Sequence[tuple[Sequence[ReplayRequest], ReplayConfig]]) -> Iterator[ReplayResult]:
    """``replay_many``, handing over each result as soon as it is done (for progress bars)."""
    if not jobs:
        return
    with ReplayProcess(jobs[0][1].profile) as process:
        yield from process.each(jobs)


class ReplayProcess:
    """Where replays of one GPU profile run: this process when it already is on that simulated GPU,
    else one spawned child, reused for every replay. The child starts importing vLLM as soon as
    this object exists, so a caller can prepare its jobs (load a tokenizer, build workloads)
    meanwhile.

        with ReplayProcess("a100-40gb") as process:
            jobs = ...
            for result in process.each(jobs): ...
    """

    def __init__(self, profile: str = ReplayConfig.profile):
        self.profile = profile
        self._pool: Optional[ProcessPoolExecutor] = None
        if not self._can_run_here(profile):
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_set_env, initargs=(self._child_env(profile),))
            self._pool.submit(self._warm_up)

    # What differs between engines (vllm_cfs.sim.v1.replay.V1ReplayProcess has its own).
    @staticmethod
    def _child_env(profile: str) -> dict[str, str]:
        return {PROFILE_ENV: profile, "VLLM_USE_V1": "0", CLOCK_ENV: "virtual", "HF_HUB_OFFLINE": "1",
                # vLLM logs to stdout; a replay's lines (engine set-up, preemption warnings) would
                # bury the caller's output, and its results carry what matters. Set it to see them.
                LOG_LEVEL_ENV: os.environ.get(LOG_LEVEL_ENV, "ERROR")}

    @staticmethod
    def _can_run_here(profile: str) -> bool:
        return _this_process_can_run(profile)

    @staticmethod
    def _warm_up() -> None:
        _import_engine()

    @staticmethod
    def _run(requests: tuple[ReplayRequest, ...], config) -> ReplayResult:
        return _replay_here(requests, config)

    def submit(self, requests: Sequence[ReplayRequest], config: ReplayConfig) -> Future:
        """One replay, queued behind those already submitted; in this process it runs right away."""
        if config.profile != self.profile:
            raise ValueError(f"replays run one GPU profile per process: this one runs {self.profile!r}, "
                             f"got {config.profile!r}")
        if self._pool is not None:
            return self._pool.submit(self._run, tuple(requests), config)
        future: Future = Future()
        try:
            future.set_result(self._run(tuple(requests), config))
        except Exception as exc:  # noqa: BLE001 - handed over through the future, as from the child
            future.set_exception(exc)
        return future

    def each(self, jobs: Sequence[tuple[Sequence[ReplayRequest], ReplayConfig]]) -> Iterator[ReplayResult]:
        """The results of ``jobs``, in order, each as soon as it is done."""
        if self._pool is None:
            for requests, config in jobs:
                yield self.submit(requests, config).result()
            return
        futures = [self.submit(requests, config) for requests, config in jobs]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "ReplayProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _import_engine() -> None:
    """The start-up cost of a replay process (vLLM's import and platform), paid ahead of the jobs."""
    from vllm import LLMEngine  # noqa: F401
    from vllm.platforms import current_platform

    current_platform.get_device_name()


def _this_process_can_run(profile: str) -> bool:
    if os.environ.get(PROFILE_ENV) != profile or os.environ.get("VLLM_USE_V1") != "0":
        return False  # resolving vLLM's platform now would pin this process to another one
    from vllm.platforms import current_platform

    from vllm_cfs.sim.platform import SimulatedGPUPlatform

    return isinstance(current_platform, SimulatedGPUPlatform) and current_platform.profile_name == profile


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
        scheduling_policy=config.scheduling_policy,
        enable_chunked_prefill=config.enable_chunked_prefill,
        max_num_batched_tokens=config.max_num_batched_tokens,
        num_gpu_blocks_override=config.num_gpu_blocks_override,
        worker_cls=config.worker_cls,
        seed=config.seed,
        max_num_seqs=config.max_num_seqs,
        disable_log_stats=True,
    )
    with _environment({CFS_INTERVAL_ENV: config.cfs_interval, MIN_GRANULARITY_ENV: config.cfs_min_granularity}):
        engine = LLMEngine.from_engine_args(engine_args)
    worker = engine.model_executor.worker
    clock = VirtualClock(host=HostGap(worker.gpu.step_overhead_s) if config.host_time == "measured" else None)
    worker.clock = clock
    scheduler = engine.scheduler[0]
    probe = _SchedulerProbe(scheduler)
    cache = engine.cache_config
    block_size = cache.block_size

    pending = collections.deque(sorted(range(len(requests)), key=lambda i: (requests[i].arrival_s, i)))
    token_times: dict[int, list[float]] = {i: [] for i in range(len(requests))}
    finished: set[int] = set()
    finish_reasons: dict[int, Optional[str]] = {}
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
                SamplingParams(**requests[i].sampling()),
                arrival_time=requests[i].arrival_s,
                priority=requests[i].priority,
            )
        before = clock.now()
        counted = probe.step_begins()
        outputs = engine.step()
        steps += 1
        now = clock.now()
        for out in outputs:
            i = int(out.request_id)
            times = token_times[i]
            new_tokens = len(out.outputs[0].token_ids) - len(times)
            times.extend([now] * new_tokens)
            if out.finished:
                finished.add(i)
                finish_reasons[i] = out.outputs[0].finish_reason
        if now == before:  # nothing ran: wait for the next arrival, or the engine is stuck
            idle_steps += 1
            if pending:
                clock.advance_to(requests[pending[0]].arrival_s)
            elif idle_steps > 10:
                raise RuntimeError(f"replay stalled at {now:.3f} s: the engine holds requests it never runs")
            continue
        idle_steps = 0
        bm = scheduler.block_manager
        samples.append(KVSample(
            time_s=now,
            gpu_kv_usage=1 - bm.get_num_free_gpu_blocks() / cache.num_gpu_blocks,
            cpu_kv_usage=1 - bm.get_num_free_cpu_blocks() / cache.num_cpu_blocks if cache.num_cpu_blocks else 0.0,
            running=len(scheduler.running),
            swapped=len(scheduler.swapped),
            waiting=len(scheduler.waiting),
            duration_s=now - before,
            batch=probe.batch,
            swapped_out_blocks=probe.totals.swapped_out - counted.swapped_out,
            swapped_in_blocks=probe.totals.swapped_in - counted.swapped_in,
            preempted=probe.totals.preempted - counted.preempted,
            waiting_blocks=sum(-(-group.first_seq.get_len() // block_size) for group in scheduler.waiting),
        ))
    timings = tuple(
        RequestTiming(i, r.arrival_s, token_times[i][0], token_times[i][-1], len(r.prompt_token_ids),
                      len(token_times[i]), tuple(token_times[i]), finish_reasons.get(i))
        for i, r in enumerate(requests)
    )
    assert finished == set(range(len(requests))), "the replay ended with unfinished requests"
    totals = probe.totals
    return ReplayResult(config, cache.num_gpu_blocks, cache.num_cpu_blocks, steps, timings, tuple(samples),
                        totals.swapped_out, totals.swapped_in, totals.preempted)


@dataclasses.dataclass(frozen=True)
class _Counts:
    swapped_out: int = 0
    swapped_in: int = 0
    preempted: int = 0


class _SchedulerProbe:
    """Counts what a scheduler decides, whatever its class: blocks swapped each way (from every
    ``schedule()`` output), the batch of the last schedule, and preemptions (every call of
    ``_preempt``: all of vLLM's preemption paths and CFSScheduler's go through it, while vLLM's
    own counter misses those of the priority policy and of CFS steps)."""

    def __init__(self, scheduler) -> None:
        self.totals = _Counts()
        self.batch = 0
        schedule, preempt = scheduler.schedule, scheduler._preempt

        def counted_schedule(*args, **kwargs):
            result = schedule(*args, **kwargs)
            outputs = result[1]
            self.batch = len(outputs.scheduled_seq_groups)
            self._add(swapped_out=len(outputs.blocks_to_swap_out), swapped_in=len(outputs.blocks_to_swap_in))
            return result

        def counted_preempt(*args, **kwargs):
            self._add(preempted=1)
            return preempt(*args, **kwargs)

        scheduler.schedule, scheduler._preempt = counted_schedule, counted_preempt

    def _add(self, swapped_out: int = 0, swapped_in: int = 0, preempted: int = 0) -> None:
        t = self.totals
        self.totals = _Counts(t.swapped_out + swapped_out, t.swapped_in + swapped_in, t.preempted + preempted)

    def step_begins(self) -> _Counts:
        """The totals so far; the step's own counts are the totals after it minus these."""
        self.batch = 0
        return self.totals


@contextlib.contextmanager
def _environment(values: dict[str, Optional[int]]) -> Iterator[None]:
    """Sets (or, for None, removes) environment variables, and restores them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _put_env(name, None if value is None else str(value))
        yield
    finally:
        for name, value in saved.items():
            _put_env(name, value)


def _put_env(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _set_env(values: dict[str, str]) -> None:
    os.environ.update(values)
