"""Drive a real vLLM V0 scheduler through a request trace, standing in for the engine's token loop.

No model and no executor: each scheduled sequence gets one token per step, exactly as
``LLMEngine`` would record it (computed tokens first, then the sampled token, then the finish
check). Time is counted in scheduling steps. Tests, the scheduler benchmark and the admission
study use it to compare policies on identical inputs.

Like the engine, the driver splits a request with ``n > 1`` into n single-sequence groups
(through vLLM's own ``ParallelSampleSequenceGroup``) and aborts requests between steps through
the scheduler's ``abort_seq_group``.
"""

from __future__ import annotations

import cProfile
import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence as Seq, Type

from vllm.config import CacheConfig, SchedulerConfig
from vllm.core.scheduler import Scheduler, SchedulerOutputs
from vllm.inputs import token_inputs
from vllm.sampling_params import SamplingParams
from vllm.sequence import (Logprob, ParallelSampleSequenceGroup, Sequence, SequenceGroup,
                           SequenceGroupBase, SequenceGroupMetadata, SequenceStatus)

from vllm_cfs.lab.traces import RequestOutcome, TraceRequest, random_trace  # noqa: F401 (random_trace: public)

BLOCK_SIZE = 16


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
    # When set, profiles each schedule() call (and not the token loop around it).
    schedule_profiler: Optional[cProfile.Profile] = None
    # Called with what schedule() returned, before any token is emitted: the moment the worker
    # would run the step, so a checker sees exactly what the worker would see.
    on_schedule: Optional[Callable[[List[SequenceGroupMetadata], SchedulerOutputs], None]] = None
    # Trace request id -> the scheduler's request ids for it (one per sample when n > 1).
    samples: Dict[str, List[str]] = field(default_factory=dict)
    # LLMEngine's map from a sample's request id to its parent request, which abort_seq_group
    # uses to find every sample of an aborted request.
    seq_id_to_seq_group: Dict[str, SequenceGroupBase] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pending = sorted(self.trace, key=lambda r: (r.arrival_step, r.request_id))
        self._next_seq_id = itertools.count()
        self._reply_tokens: Dict[str, int] = {}  # request id -> where its reply ends at EOS

    @property
    def done(self) -> bool:
        return not self._pending and not self.scheduler.has_unfinished_seqs()

    def run_step(self) -> SchedulerOutputs:
        """Admit this step's arrivals, schedule once, and emit one token per scheduled sequence."""
        while self._pending and self._pending[0].arrival_step <= self.step:
            self._arrive(self._pending.pop(0))
        started = time.process_time_ns()
        if self.schedule_profiler is None:
            metadata, outputs, _ = self.scheduler.schedule()
        else:
            metadata, outputs, _ = self.schedule_profiler.runcall(self.scheduler.schedule)
        self.last_schedule_cpu_ns = time.process_time_ns() - started
        # As LLMEngine.step does: forget the sample map entries of requests that have finished.
        for finished_id in self.scheduler.get_and_reset_finished_requests_ids():
            self.seq_id_to_seq_group.pop(finished_id, None)
        if self.on_schedule is not None:
            self.on_schedule(metadata, outputs)
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

    def abort(self, request_id: str) -> None:
        """Abort a trace request (all its samples) between steps, as LLMEngine.abort_request does.

        Aborting a request that has finished or not arrived yet changes nothing, as in the engine.
        """
        self.scheduler.abort_seq_group(request_id, seq_id_to_seq_group=self.seq_id_to_seq_group)
        for sample_id in self.samples.get(request_id, ()):
            if self.groups[sample_id].first_seq.status == SequenceStatus.FINISHED_ABORTED:
                outcome = self.outcomes[sample_id]
                if not outcome.aborted:
                    outcome.aborted = True
                    outcome.finish_step = self.step

    def _arrive(self, request: TraceRequest) -> None:
        params = SamplingParams(max_tokens=request.max_tokens, ignore_eos=request.reply_tokens is None, n=request.n)
        if request.reply_tokens is not None:
            self._reply_tokens[request.request_id] = request.reply_tokens
        inputs = token_inputs([1 + (i % 31999) for i in range(request.prompt_len)])
        if request.n > 1:
            # vLLM's own split; it calls back _add_processed_request once per sample.
            ParallelSampleSequenceGroup.add_request(
                request.request_id, self, params, processed_inputs=inputs,
                arrival_time=float(request.arrival_step), lora_request=None, trace_headers=None,
                prompt_adapter_request=None, priority=request.priority)
            self.samples[request.request_id] = [
                sample_id for sample_id, parent in self.seq_id_to_seq_group.items()
                if parent.group_id == request.request_id]
        else:
            self._add_processed_request(request.request_id, params, processed_inputs=inputs,
                                        arrival_time=float(request.arrival_step),
                                        priority=request.priority)
            self.samples[request.request_id] = [request.request_id]

    def _add_processed_request(self, request_id: str, params: SamplingParams, *,
                               processed_inputs, arrival_time: float, priority: int,
                               **_unused) -> SequenceGroup:
        """Named and shaped like LLMEngine's method, which ParallelSampleSequenceGroup calls."""
        seq = Sequence(next(self._next_seq_id), processed_inputs, block_size=BLOCK_SIZE)
        group = SequenceGroup(request_id, [seq], arrival_time=arrival_time,
                              sampling_params=params, priority=priority)
        self.groups[request_id] = group
        self.outcomes[request_id] = RequestOutcome(request_id, int(arrival_time))
        self.scheduler.add_seq_group(group)
        return group

    def _emit_token(self, group: SequenceGroup, token_chunk_size: int) -> None:
        group.update_num_computed_tokens(token_chunk_size)
        outcome = self.outcomes[group.request_id]
        max_tokens = group.sampling_params.max_tokens
        # The driver's own record, never the scheduler's: the model knows where its reply ends.
        reply_tokens = self._reply_tokens.get(group.request_id)
        for seq in group.get_seqs(status=SequenceStatus.RUNNING):
            token = 1 + (seq.seq_id * 7919 + seq.get_len()) % 31999
            seq.append_token_id(token, {token: Logprob(0.0)})
            if reply_tokens is not None and seq.get_output_len() >= reply_tokens:
                seq.status = SequenceStatus.FINISHED_STOPPED
                self.scheduler.free_seq(seq)
            elif seq.get_output_len() >= max_tokens:
                seq.status = SequenceStatus.FINISHED_LENGTH_CAPPED
                self.scheduler.free_seq(seq)
        if outcome.first_token_step is None:
            outcome.first_token_step = self.step
        outcome.output_tokens = max(s.get_output_len() for s in group.seqs)
        if group.is_finished():
            outcome.finish_step = self.step
