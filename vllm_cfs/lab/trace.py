"""Drive a real vLLM V0 scheduler through a request trace, standing in for the engine's token loop.

No model and no executor: each scheduled sequence gets one token per step, exactly as
``LLMEngine`` would record it (computed tokens first, then the sampled token, then the finish
check). Time is counted in scheduling steps. Tests, the scheduler benchmark and the admission
study use it to compare policies on identical inputs.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence as Seq, Type

from vllm.config import CacheConfig, SchedulerConfig
from vllm.core.scheduler import Scheduler, SchedulerOutputs
from vllm.inputs import token_inputs
from vllm.sampling_params import SamplingParams
from vllm.sequence import Logprob, Sequence, SequenceGroup, SequenceStatus

BLOCK_SIZE = 16


@dataclass(frozen=True)
class TraceRequest:
    request_id: str
    arrival_step: int
    prompt_len: int
    max_tokens: int
    priority: int = 0


@dataclass
class RequestOutcome:
    request_id: str
    arrival_step: int
    first_token_step: Optional[int] = None
    finish_step: Optional[int] = None
    output_tokens: int = 0
    ignored: bool = False

    @property
    def ttft_steps(self) -> Optional[int]:
        if self.first_token_step is None:
            return None
        return self.first_token_step - self.arrival_step


@dataclass(frozen=True)
class Pools:
    """KV block pools and batch limits of the scheduler under test."""

    num_gpu_blocks: int
    num_cpu_blocks: int
    max_num_seqs: int = 256
    max_model_len: int = 2048
    max_num_batched_tokens: int = 2048
    preemption_mode: Optional[str] = "swap"


def make_scheduler(scheduler_cls: Type[Scheduler], pools: Pools) -> Scheduler:
    scheduler_config = SchedulerConfig(
        runner_type="generate",
        max_num_batched_tokens=pools.max_num_batched_tokens,
        max_num_seqs=pools.max_num_seqs,
        max_model_len=pools.max_model_len,
        preemption_mode=pools.preemption_mode,
        enable_chunked_prefill=False,
    )
    cache_config = CacheConfig(block_size=BLOCK_SIZE, gpu_memory_utilization=1.0, swap_space=0,
                               cache_dtype="auto")
    cache_config.num_gpu_blocks = pools.num_gpu_blocks
    cache_config.num_cpu_blocks = pools.num_cpu_blocks
    return scheduler_cls(scheduler_config, cache_config, None)


def random_trace(rng: random.Random, num_requests: int, *, max_arrival_step: int,
                 prompt_lens: tuple[int, int], max_tokens: tuple[int, int]) -> List[TraceRequest]:
    """Requests with uniformly drawn arrival steps, prompt lengths and output lengths."""
    arrivals = sorted(rng.randint(0, max_arrival_step) for _ in range(num_requests))
    return [TraceRequest(f"r{i}", arrival, rng.randint(*prompt_lens), rng.randint(*max_tokens))
            for i, arrival in enumerate(arrivals)]


@dataclass
class TraceDriver:
    """Feeds a trace to one scheduler and plays the engine's part after every ``schedule()``."""

    scheduler: Scheduler
    trace: Seq[TraceRequest]
    step: int = 0
    outcomes: Dict[str, RequestOutcome] = field(default_factory=dict)
    groups: Dict[str, SequenceGroup] = field(default_factory=dict)
    # Process CPU time of the last schedule() call, for the scheduler benchmark.
    last_schedule_cpu_ns: int = 0

    def __post_init__(self) -> None:
        self._pending = sorted(self.trace, key=lambda r: (r.arrival_step, r.request_id))
        self._next_seq_id = itertools.count()

    @property
    def done(self) -> bool:
        return not self._pending and not self.scheduler.has_unfinished_seqs()

    def run_step(self) -> SchedulerOutputs:
        """Admit this step's arrivals, schedule once, and emit one token per scheduled sequence."""
        while self._pending and self._pending[0].arrival_step <= self.step:
            self._arrive(self._pending.pop(0))
        started = time.process_time_ns()
        _, outputs, _ = self.scheduler.schedule()
        self.last_schedule_cpu_ns = time.process_time_ns() - started
        for scheduled in outputs.scheduled_seq_groups:
            self._emit_token(scheduled.seq_group, scheduled.token_chunk_size)
        for group in outputs.ignored_seq_groups:
            self.outcomes[group.request_id].ignored = True
            self.outcomes[group.request_id].finish_step = self.step
        self.scheduler.free_finished_seq_groups()
        self.step += 1
        return outputs

    def run(self, max_steps: int = 100_000) -> Dict[str, RequestOutcome]:
        while not self.done:
            if self.step >= max_steps:
                raise RuntimeError(f"trace did not finish within {max_steps} steps")
            self.run_step()
        return self.outcomes

    def _arrive(self, request: TraceRequest) -> None:
        seq = Sequence(next(self._next_seq_id),
                       token_inputs([1 + (i % 31999) for i in range(request.prompt_len)]),
                       block_size=BLOCK_SIZE)
        group = SequenceGroup(request.request_id, [seq], arrival_time=float(request.arrival_step),
                              sampling_params=SamplingParams(max_tokens=request.max_tokens,
                                                             ignore_eos=True),
                              priority=request.priority)
        self.groups[request.request_id] = group
        self.outcomes[request.request_id] = RequestOutcome(request.request_id, request.arrival_step)
        self.scheduler.add_seq_group(group)

    def _emit_token(self, group: SequenceGroup, token_chunk_size: int) -> None:
        group.update_num_computed_tokens(token_chunk_size)
        outcome = self.outcomes[group.request_id]
        max_tokens = group.sampling_params.max_tokens
        for seq in group.get_seqs(status=SequenceStatus.RUNNING):
            token = 1 + (seq.seq_id * 7919 + seq.get_len()) % 31999
            seq.append_token_id(token, {token: Logprob(0.0)})
            if seq.get_output_len() >= max_tokens:
                seq.status = SequenceStatus.FINISHED_LENGTH_CAPPED
                self.scheduler.free_seq(seq)
        if outcome.first_token_step is None:
            outcome.first_token_step = self.step
        outcome.output_tokens = max(s.get_output_len() for s in group.seqs)
        if group.is_finished():
            outcome.finish_step = self.step
