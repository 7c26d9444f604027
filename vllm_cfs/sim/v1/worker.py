"""The simulated GPU for vLLM's V1 engine: what a V1 worker answers, with the GPU's work modeled.

One SimulatedWorker stands for the whole tensor-parallel group (its GPUs work in lockstep on
equal shards), so everything here is per GPU of the group and runs in the engine core's process.
It keeps, per request, what the model runner's request cache keeps on a real GPU: the prompt
length and how far the request has ever been computed. From that it decides which scheduled
requests sample a token, prices the step with the cost model, and counts the recompute tax.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

from vllm.config import VllmConfig
from vllm.logger import init_logger
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheSpec
from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput
from vllm.v1.worker.worker_base import CompilationTimes

from vllm_cfs.sim.clock import RealClock, VirtualClock, clock_from_env
from vllm_cfs.sim.cost_model import CostModel, MixedStepCost, PrefillChunk
from vllm_cfs.sim.memory import KVCachePlan, plan_kv_cache
from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import GPUProfile
from vllm_cfs.sim.sampler import TokenSampler, eos_token_id
from vllm_cfs.sim.v1.offload import CONNECTOR, SimulatedOffload

# Under "vllm." so that vLLM's log handler (and so the server log) carries our lines.
logger = init_logger(f"vllm.{__name__}")

# vLLM's own attention layer names for a Llama decoder, so that anything keyed by layer (the KV
# cache config, a KV connector) sees the layers a real model runner would report.
LAYER_NAME = "model.layers.{}.self_attn.attn"


@dataclasses.dataclass
class _RequestState:
    sequence: int  # the sampler's sequence number: the order requests first ran in
    seed: int
    prompt_tokens: int
    ignore_eos: bool = True
    computed_high: int = 0  # tokens of this request computed at least once (the recompute line)


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """What the last step computed, for the replay and for tests."""

    cost: MixedStepCost
    prefill_chunks: int
    decodes: int
    tokens: int
    recomputed: int
    preempted: int  # requests the scheduler preempted while building this step
    blocks_stored: int = 0  # GPU blocks whose copy to host memory began in this step
    blocks_loaded: int = 0  # GPU blocks whose copy from host memory began in this step


class SimulatedWorker:
    def __init__(self, vllm_config: VllmConfig, gpu: GPUProfile):
        self.config = vllm_config
        self.gpu = gpu
        model_config = vllm_config.model_config
        self.model = ModelSpec.served(model_config)
        self.cost_model = CostModel(gpu, self.model, vllm_config.parallel_config.tensor_parallel_size,
                                    vllm_config.cache_config.block_size)
        self.clock: RealClock | VirtualClock = clock_from_env(gpu.step_overhead_s,
                                                             vllm_config.scheduler_config.async_scheduling)
        self.sampler = TokenSampler(self.model.vocab_size, eos_token_id(model_config.hf_config))
        self.seed = model_config.seed or 0
        self.plan: Optional[KVCachePlan] = None
        self.kv_cache_config: Optional[KVCacheConfig] = None
        self.offload: Optional[SimulatedOffload] = None  # with --kv-offloading-backend native
        self.last_step: Optional[StepRecord] = None
        # Over the worker's life: every scheduled token, and those at positions their request
        # had computed before (recompute after preemption; prefix-cache hits are not scheduled).
        self.tokens_computed = 0
        self.tokens_recomputed = 0
        self.steps = 0
        self._requests: dict[str, _RequestState] = {}
        self._next_sequence = 0
        self._logged_at: Optional[float] = None
        self._logged_tokens = 0

    # --- the worker methods the V1 executor calls through collective_rpc ---

    def determine_available_memory(self) -> int:
        """Bytes per GPU left for the KV cache, by V0's memory plan (weights, activations, overhead)."""
        cfg = self.config
        scheduler = cfg.scheduler_config
        self.plan = plan_kv_cache(
            memory_bytes=self.gpu.memory_bytes,
            gpu_memory_utilization=cfg.cache_config.gpu_memory_utilization,
            weight_bytes=self.cost_model.weight_bytes_per_gpu,
            activation_bytes=self.cost_model.activation_peak_bytes(
                scheduler.max_num_batched_tokens, scheduler.max_num_seqs),
            overhead_bytes=self.gpu.non_kv_overhead_bytes,
            block_bytes=self.cost_model.block_bytes,
            swap_space_bytes=0,  # V1 has no swap space
            block_size=cfg.cache_config.block_size,
            max_model_len=cfg.model_config.max_model_len,
        )
        logger.info("Simulated GPU memory per GPU (%s): %s", self.gpu.name, self.plan.describe())
        return int(self.plan.kv_cache_bytes)

    def get_kv_cache_spec(self) -> dict[str, KVCacheSpec]:
        spec = FullAttentionSpec(
            block_size=self.config.cache_config.block_size,
            num_kv_heads=self.cost_model.kv_heads_per_gpu,
            head_size=self.model.head_dim,
            dtype=self.config.model_config.dtype,
        )
        return {LAYER_NAME.format(i): spec for i in range(self.model.num_layers)}

    def initialize_from_config(self, kv_cache_configs: list[KVCacheConfig]) -> None:
        # The engine core sends one config per worker; every GPU of the group gets the same one.
        self.kv_cache_config = kv_cache_configs[0]
        transfer = self.config.kv_transfer_config
        if transfer is not None and transfer.kv_connector == CONNECTOR:
            self.offload = SimulatedOffload(self.cost_model, self.config.parallel_config.world_size)
        logger.info("Simulated GPU KV cache: %d blocks of %d tokens per GPU (nothing allocated)",
                    self.kv_cache_config.num_blocks, self.config.cache_config.block_size)

    def compile_or_warm_up_model(self) -> CompilationTimes:
        return CompilationTimes(language_model=0.0, encoder=0.0)

    def get_supported_tasks(self) -> tuple[str, ...]:
        return ("generate",)

    def execute_model(self, scheduler_output: SchedulerOutput) -> ModelRunnerOutput:
        step_start = time.monotonic()
        out = scheduler_output
        self.last_step = None
        for request_id in out.finished_req_ids:
            self._requests.pop(request_id, None)
        offload_meta = out.kv_connector_metadata if self.offload is not None else None
        flush_wait = self.offload.begin_step(offload_meta, self.clock.gpu_now()) if self.offload is not None else 0.0
        if out.total_num_scheduled_tokens == 0:
            # No forward pass; transfers still start, finish and are reported, as vLLM's model
            # runner does for a step without tokens.
            if self.offload is None:
                return EMPTY_MODEL_RUNNER_OUTPUT
            if flush_wait > 0:
                self.clock.run_step(flush_wait, step_start)
            self.last_step = StepRecord(
                MixedStepCost(overhead=0.0, forward=0.0, allreduce=0.0, kv_transfer=flush_wait), 0, 0, 0, 0,
                len(out.preempted_req_ids or ()), self.offload.step_blocks_stored, self.offload.step_blocks_loaded)
            return ModelRunnerOutput.with_kv_conn_output_only(self.offload.end_step(offload_meta, self.clock.gpu_now()))

        # (tokens computed before this step, output tokens so far) per scheduled request
        progress: dict[str, tuple[int, int]] = {}
        for new in out.scheduled_new_reqs:
            state = self._requests[new.req_id] = self._new_request_state(new)
            # vLLM's V2 model runner gets resumed requests as new ones, with all their tokens.
            known = len(new.prefill_token_ids) if new.prefill_token_ids is not None else state.prompt_tokens
            progress[new.req_id] = (new.num_computed_tokens, known - state.prompt_tokens)
        cached = out.scheduled_cached_reqs
        for i, request_id in enumerate(cached.req_ids):
            progress[request_id] = (cached.num_computed_tokens[i], cached.num_output_tokens[i])

        req_ids = list(out.num_scheduled_tokens)
        sampled: list[list[int]] = []
        prefills: list[PrefillChunk] = []
        decode_contexts: list[int] = []
        recomputed = 0
        for request_id in req_ids:
            scheduled = out.num_scheduled_tokens[request_id]
            computed, outputs = progress[request_id]
            state = self._requests[request_id]
            known = state.prompt_tokens + outputs
            end = computed + scheduled
            recomputed += max(0, min(end, state.computed_high) - computed)
            state.computed_high = max(state.computed_high, end)
            if outputs > 0 and scheduled == 1 and end == known:
                decode_contexts.append(end)
            else:
                prefills.append(PrefillChunk(tokens=scheduled, cached_tokens=computed))
            # A chunk that stops short of the request's known tokens samples nothing.
            sampled.append([self.sampler.next_token(state.seed, state.sequence, outputs, state.ignore_eos)] if end >= known else [])

        cost = dataclasses.replace(self.cost_model.mixed_step_cost(prefills, decode_contexts), kv_transfer=flush_wait)
        self.tokens_computed += out.total_num_scheduled_tokens
        self.tokens_recomputed += recomputed
        self.steps += 1
        self.clock.run_step(cost.total, step_start)
        connector_output = None
        if self.offload is not None:
            connector_output = self.offload.end_step(offload_meta, self.clock.gpu_now())
        self.last_step = StepRecord(
            cost, len(prefills), len(decode_contexts), out.total_num_scheduled_tokens, recomputed,
            len(out.preempted_req_ids or ()),
            *((self.offload.step_blocks_stored, self.offload.step_blocks_loaded) if self.offload else ()),
        )
        self._maybe_log_stats()
        return ModelRunnerOutput(
            req_ids=req_ids,
            req_id_to_index={request_id: i for i, request_id in enumerate(req_ids)},
            sampled_token_ids=sampled,
            kv_connector_output=connector_output,
        )

    def next_event_s(self) -> Optional[float]:
        """When something the engine waits for happens without a step (a KV transfer ends), or None."""
        return self.offload.next_completion_s() if self.offload is not None else None

    def take_draft_token_ids(self) -> None:
        return None

    def update_max_model_len(self, max_model_len: int) -> None:
        self.config.model_config.max_model_len = max_model_len

    def reset_mm_cache(self) -> None:
        return

    def reset_encoder_cache(self) -> None:
        return

    def get_kv_connector_handshake_metadata(self) -> None:
        return None

    def sleep(self, level: int = 1) -> None:
        return  # nothing is allocated, so nothing is released

    def wake_up(self, tags: Optional[list[str]] = None) -> None:
        return

    def check_health(self) -> None:
        return

    def shutdown(self) -> None:
        self.log_stats()

    # --- the recompute tax ---

    def log_stats(self) -> None:
        tax = self.tokens_recomputed / self.tokens_computed if self.tokens_computed else 0.0
        logger.info("Simulated GPU: %d tokens computed in %d steps, %d of them recomputed (recompute tax %.1f%%)",
                    self.tokens_computed, self.steps, self.tokens_recomputed, 100 * tax)
        if self.offload is not None:
            logger.info("Simulated GPU KV offloading: %d blocks stored to host memory, %d loaded back, "
                        "%.3f s of steps waiting for flushes", self.offload.blocks_stored,
                        self.offload.blocks_loaded, self.offload.flush_wait_s)

    def _maybe_log_stats(self) -> None:
        """Every VLLM_LOG_STATS_INTERVAL seconds of the simulated GPU's clock while it computes,
        the cadence of vLLM's own stats line."""
        import vllm.envs as envs

        now = self.clock.now()
        if self._logged_at is None:
            self._logged_at = now
        elif now - self._logged_at >= envs.VLLM_LOG_STATS_INTERVAL and self.tokens_computed > self._logged_tokens:
            self.log_stats()
            self._logged_at, self._logged_tokens = now, self.tokens_computed

    # --- internals ---

    def _new_request_state(self, new) -> _RequestState:
        params = new.sampling_params
        seed = params.seed if params is not None and params.seed is not None else self.seed
        prompt = len(new.prompt_token_ids) if new.prompt_token_ids is not None else len(new.prompt_embeds)
        previous = self._requests.get(new.req_id)
        if previous is not None:
            return previous  # resumed, sent as new again: same tokens, same recompute line
        state = _RequestState(sequence=self._next_sequence, seed=seed, prompt_tokens=prompt,
                              ignore_eos=params is None or params.ignore_eos)
        self._next_sequence += 1
        return state
