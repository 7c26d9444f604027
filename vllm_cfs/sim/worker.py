"""The simulated GPU itself: what a vLLM worker does, with the GPU's work replaced by models.

One SimulatedWorker stands for the whole tensor-parallel group (its GPUs work in lockstep on
equal shards), so everything here is per GPU of the group and runs in one process.
"""

from __future__ import annotations

import time
from typing import Optional

from vllm.config import VllmConfig
from vllm.logger import init_logger
from vllm.model_executor.layers.sampler import SamplerOutput
from vllm.sequence import CompletionSequenceGroupOutput, ExecuteModelRequest, Logprob, SequenceOutput
from vllm.worker.cache_engine import CacheEngine

from vllm_cfs.settings import staged_swap_blocks
from vllm_cfs.sim.clock import RealClock, VirtualClock, clock_from_env
from vllm_cfs.sim.cost_model import CostModel, PrefillChunk, StepCost, StepWork
from vllm_cfs.sim.kv_ledger import KVLedger, SeqWork
from vllm_cfs.sim.memory import KVCachePlan, plan_kv_cache
from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import GPUProfile
from vllm_cfs.sim.sampler import TokenSampler, eos_token_id
from vllm_cfs.swap import is_staged_worker

# Under "vllm." so that vLLM's log handler (and so the server log) carries our lines.
logger = init_logger(f"vllm.{__name__}")


class SimulatedWorker:
    def __init__(self, vllm_config: VllmConfig, gpu: GPUProfile):
        self.config = vllm_config
        self.gpu = gpu
        model_config = vllm_config.model_config
        self.model = ModelSpec.served(model_config)
        # --worker-cls vllm_cfs.swap.StagedSwapWorker on a real GPU: the staged swap path
        self.staging_blocks = (staged_swap_blocks() if is_staged_worker(vllm_config.parallel_config.worker_cls)
                               else None)
        self.cost_model = CostModel(
            gpu, self.model, vllm_config.parallel_config.tensor_parallel_size, vllm_config.cache_config.block_size,
            staging_blocks=self.staging_blocks,
        )
        self.clock: RealClock | VirtualClock = clock_from_env(gpu.step_overhead_s)
        self.sampler = TokenSampler(self.model.vocab_size, eos_token_id(model_config.hf_config))
        self.seed = model_config.seed or 0
        self.plan: Optional[KVCachePlan] = None
        self.ledger: Optional[KVLedger] = None
        self.last_step: Optional[StepCost] = None
        self._seq_ids_by_request: dict[str, set[int]] = {}

    # --- the worker methods ExecutorBase calls through collective_rpc ---

    def determine_num_available_blocks(self) -> tuple[int, int]:
        cfg = self.config
        block_bytes = CacheEngine.get_cache_block_size(cfg.cache_config, cfg.model_config, cfg.parallel_config)
        self.plan = plan_kv_cache(
            memory_bytes=self.gpu.memory_bytes,
            gpu_memory_utilization=cfg.cache_config.gpu_memory_utilization,
            weight_bytes=self.cost_model.weight_bytes_per_gpu,
            activation_bytes=self.cost_model.activation_peak_bytes(
                cfg.scheduler_config.max_num_batched_tokens, cfg.scheduler_config.max_num_seqs
            ),
            overhead_bytes=self.gpu.non_kv_overhead_bytes,
            block_bytes=block_bytes,
            swap_space_bytes=int(cfg.cache_config.swap_space_bytes),
            block_size=cfg.cache_config.block_size,
            max_model_len=cfg.model_config.max_model_len,
        )
        logger.info("Simulated GPU memory per GPU (%s): %s", self.gpu.name, self.plan.describe())
        if self.staging_blocks is None:
            return self.plan.gpu_blocks, self.plan.cpu_blocks
        # as on a real GPU, the staging buffer takes its blocks from the KV cache
        logger.info("Simulated staged swap (vllm_cfs.swap.StagedSwapWorker): a %d-block staging buffer",
                    self.staging_blocks)
        return max(self.plan.gpu_blocks - self.staging_blocks, 0), self.plan.cpu_blocks

    def initialize_cache(self, num_gpu_blocks: int, num_cpu_blocks: int) -> None:
        self.ledger = KVLedger(num_gpu_blocks, num_cpu_blocks, self.config.cache_config.block_size)

    def execute_model(self, execute_model_req: Optional[ExecuteModelRequest] = None) -> Optional[list[SamplerOutput]]:
        if execute_model_req is None:
            return None
        assert self.ledger is not None, "initialize_cache must run before execute_model"
        step_start = time.monotonic()
        req = execute_model_req
        batch, prefills, decode_contexts = [], [], []
        for meta in req.seq_group_metadata_list:
            for seq_id, data in meta.seq_data.items():
                self._seq_ids_by_request.setdefault(meta.request_id, set()).add(seq_id)
                computed = data.get_num_computed_tokens()
                new = meta.token_chunk_size if meta.is_prompt else 1
                batch.append(SeqWork(meta.request_id, seq_id, data.get_token_ids(), computed, new,
                                     meta.block_tables.get(seq_id, [])))
                if meta.is_prompt:
                    prefills.append(PrefillChunk(tokens=new, cached_tokens=computed))
                else:
                    decode_contexts.append(computed + new)

        # vLLM 0.9's CUDA worker issues the copies in this order, before the forward pass.
        self.ledger.swap_in(req.blocks_to_swap_in, batch)
        self.ledger.swap_out(req.blocks_to_swap_out)
        self.ledger.copy(req.blocks_to_copy)
        self.ledger.run(batch)

        outputs = [self._sample(meta) for meta in req.seq_group_metadata_list]
        work = StepWork(
            prefills=tuple(prefills),
            decode_contexts=tuple(decode_contexts),
            swap_in_blocks=len(req.blocks_to_swap_in),
            swap_out_blocks=len(req.blocks_to_swap_out),
        )
        self.last_step = self.cost_model.step_cost(work)
        self._forget(req.finished_requests_ids)
        self.clock.run_step(self.last_step.total, step_start)
        return [SamplerOutput(outputs=outputs)]

    def check_health(self) -> None:
        return

    # --- internals ---

    def _sample(self, meta) -> CompletionSequenceGroupOutput:
        if not meta.do_sample:
            # A prefill chunk that does not reach the end of the prompt samples nothing.
            return CompletionSequenceGroupOutput(samples=[], prompt_logprobs=None)
        params = meta.sampling_params
        seed = params.seed if params is not None and params.seed is not None else self.seed
        ignore_eos = params is None or params.ignore_eos
        samples = []
        for seq_id, data in meta.seq_data.items():
            token = self.sampler.next_token(seed, seq_id, data.get_output_len(), ignore_eos)
            samples.append(SequenceOutput(seq_id, token, {token: Logprob(0.0)}))
        return CompletionSequenceGroupOutput(samples=samples, prompt_logprobs=None)

    def _forget(self, finished_request_ids) -> None:
        for request_id in finished_request_ids:
            self.ledger.forget(self._seq_ids_by_request.pop(request_id, ()))
