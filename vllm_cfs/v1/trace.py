"""Drive a real vLLM V1 scheduler through a request trace, standing in for the engine and the model.

No executor: after every ``schedule()`` each scheduled request that reached the end of the tokens
the step carried for it gets one sampled token, as a model runner samples, and ``update_from_output``
takes it as the engine core would. A prefill chunk that stops short of the end samples nothing.
``pipelined=True`` plays vLLM's async scheduling: step n+1 is scheduled before step n's tokens are
handed back (the engine core's batch queue of two). Time is counted in scheduling steps.
The KV cache manager, block pool, prefix cache and request queues are vLLM's own.

    scheduler = make_scheduler(FairScheduler, Pools(num_gpu_blocks=42))
    outcomes = TraceDriver(scheduler, [TraceRequest("a", 0, 150, 100), ...]).run()
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Dict, Optional, Sequence, Type

from vllm.config import CacheConfig, DeviceConfig, ModelConfig, SchedulerConfig, VllmConfig
from vllm.sampling_params import SamplingParams
from vllm.utils.hashing import sha256
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
from vllm.v1.core.sched.interface import SchedulerInterface
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request
from vllm.v1.structured_output import StructuredOutputManager

from vllm_cfs.lab.traces import RequestOutcome, TraceRequest
from vllm_cfs.v1.recompute import RecomputeLedger

BLOCK_SIZE = 16


@dataclasses.dataclass(frozen=True)
class Pools:
    """KV blocks and batch limits of the scheduler under test (V1 always chunks prefills)."""

    num_gpu_blocks: int
    max_num_seqs: int = 256
    max_model_len: int = 4096
    max_num_batched_tokens: int = 2048
    enable_prefix_caching: bool = True


def make_scheduler(scheduler_cls: Type[SchedulerInterface], pools: Pools) -> SchedulerInterface:
    """A scheduler as vLLM's engine core builds it, for CodeLlama-34B's config (no weights)."""
    from vllm_cfs.sim.model_dir import codellama_34b_dir

    model_dir = str(codellama_34b_dir())
    vllm_config = VllmConfig(
        model_config=ModelConfig(model=model_dir, tokenizer=model_dir, max_model_len=pools.max_model_len,
                                 dtype="bfloat16", skip_tokenizer_init=True),
        cache_config=CacheConfig(block_size=BLOCK_SIZE, enable_prefix_caching=pools.enable_prefix_caching),
        scheduler_config=SchedulerConfig(max_num_seqs=pools.max_num_seqs,
                                         max_num_batched_tokens=pools.max_num_batched_tokens,
                                         max_model_len=pools.max_model_len, is_encoder_decoder=False,
                                         enable_chunked_prefill=True, async_scheduling=False),
        # No GPU here, and the driver runs no model: the device only has to be one vLLM knows.
        device_config=DeviceConfig(device="cpu"),
    )
    vllm_config.cache_config.num_gpu_blocks = pools.num_gpu_blocks
    spec = FullAttentionSpec(block_size=BLOCK_SIZE, num_kv_heads=4, head_size=128, dtype=vllm_config.model_config.dtype)
    kv_cache_config = KVCacheConfig(num_blocks=pools.num_gpu_blocks, kv_cache_tensors=[],
                                    kv_cache_groups=[KVCacheGroupSpec(["model.layers.0.self_attn.attn"], spec)])
    return scheduler_cls(vllm_config=vllm_config, kv_cache_config=kv_cache_config,
                         structured_output_manager=StructuredOutputManager(vllm_config), block_size=BLOCK_SIZE,
                         log_stats=True)


@dataclasses.dataclass
class TraceDriver:
    """Feeds a trace to one scheduler and plays the engine's part after every ``schedule()``."""

    scheduler: SchedulerInterface
    trace: Sequence[TraceRequest]
    step: int = 0
    outcomes: Dict[str, RequestOutcome] = dataclasses.field(default_factory=dict)
    requests: Dict[str, Request] = dataclasses.field(default_factory=dict)
    # Called with what schedule() returned, before any token is sampled.
    on_schedule: Optional[Callable[[SchedulerOutput], None]] = None
    recompute: RecomputeLedger = dataclasses.field(default_factory=RecomputeLedger)
    pipelined: bool = False

    def __post_init__(self) -> None:
        self._pending = sorted(self.trace, key=lambda r: (r.arrival_step, r.request_id))
        self._in_flight: list[tuple[SchedulerOutput, Dict[str, list[int]]]] = []
        self._block_hasher = None
        if self.scheduler.cache_config.enable_prefix_caching:
            init_none_hash(sha256)
            self._block_hasher = get_request_block_hasher(BLOCK_SIZE, sha256)

    @property
    def done(self) -> bool:
        return not self._pending and not self.scheduler.has_requests() and not self._in_flight

    def run_step(self) -> SchedulerOutput:
        """Admit this step's arrivals, schedule once, sample, and hand back the outputs of this step
        (or, pipelined, of the step before)."""
        while self._pending and self._pending[0].arrival_step <= self.step:
            self._arrive(self._pending.pop(0))
        had_requests = self.scheduler.has_requests()
        output = self.scheduler.schedule()
        if self.on_schedule is not None:
            self.on_schedule(output)
        self._count_computed(output)
        if had_requests or not self.pipelined:  # the engine core schedules only then
            self._in_flight.append((output, {rid: self._sample(rid) for rid in output.num_scheduled_tokens}))
        for rid in output.preempted_req_ids or ():
            self.outcomes[rid].preemptions += 1
        if self._in_flight and (not self.pipelined or len(self._in_flight) == 2 or not self.scheduler.has_requests()):
            self._hand_back(*self._in_flight.pop(0))
        self.step += 1
        return output

    def _hand_back(self, output: SchedulerOutput, sampled: Dict[str, list[int]]) -> None:
        req_ids = list(sampled)
        model_output = ModelRunnerOutput(req_ids=req_ids, req_id_to_index={rid: i for i, rid in enumerate(req_ids)},
                                         sampled_token_ids=[sampled[rid] for rid in req_ids])
        self.scheduler.update_from_output(output, model_output)
        self._note_tokens(sampled)

    def run(self, max_steps: int = 100_000) -> Dict[str, RequestOutcome]:
        while not self.done:
            if self.step >= max_steps:
                raise RuntimeError(f"trace did not finish within {max_steps} steps")
            self.run_step()
        return self.outcomes

    def abort(self, request_id: str) -> None:
        """Abort a request between steps, as the engine core does when a client goes away."""
        from vllm.v1.request import RequestStatus

        request = self.requests.get(request_id)
        if request is None or request.is_finished():
            return
        self.scheduler.finish_requests(request_id, RequestStatus.FINISHED_ABORTED)
        self.outcomes[request_id].aborted = True
        self.outcomes[request_id].finish_step = self.step

    def _arrive(self, trace_request: TraceRequest) -> None:
        # Distinct per request id and the same in every run: no prompt shares a cached prefix.
        seed = zlib.crc32(trace_request.request_id.encode())
        prompt = [1 + (seed + i * 7919) % 31999 for i in range(trace_request.prompt_len)]
        request = Request(trace_request.request_id, prompt,
                          SamplingParams(max_tokens=trace_request.max_tokens, ignore_eos=True), None,
                          arrival_time=float(trace_request.arrival_step), priority=trace_request.priority,
                          block_hasher=self._block_hasher)
        self.requests[request.request_id] = request
        self.outcomes[request.request_id] = RequestOutcome(request.request_id, trace_request.arrival_step)
        self.scheduler.add_request(request)

    def _count_computed(self, output: SchedulerOutput) -> None:
        for rid, tokens in output.num_scheduled_tokens.items():
            # schedule() has advanced num_computed_tokens already
            self.recompute.count(rid, self.requests[rid].num_computed_tokens - tokens, tokens)

    def _sample(self, request_id: str) -> list[int]:
        """A model runner samples where the step's tokens reach the end of those it knows for the
        request: with async scheduling these include an in-flight step's placeholder for a running
        request, and not for a request the step (re)admits."""
        request = self.requests[request_id]
        if request.num_computed_tokens < request.num_tokens:
            return []
        return [1 + (request.num_tokens * 7919) % 31999]

    def _note_tokens(self, sampled: Dict[str, list[int]]) -> None:
        for rid, tokens in sampled.items():
            if not tokens:
                continue
            request, outcome = self.requests[rid], self.outcomes[rid]
            if outcome.first_token_step is None:
                outcome.first_token_step = self.step
            outcome.output_tokens = request.num_output_tokens
            if request.is_finished() and outcome.finish_step is None:
                outcome.finish_step = self.step
