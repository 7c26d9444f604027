"""Time and memory of one engine step on one GPU of a tensor-parallel group.

Units: bytes, seconds, FLOPs, tokens. Every time below is what one GPU of the TP group spends;
the GPUs of a group work in lockstep, so it is also the group's time. The formulas (see
docs/simulated-gpu.md) are roofline-style: a step costs the larger of its compute time and its
memory-traffic time, plus the communication and copies that cannot overlap with it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import GPUProfile

# Bytes of one logit: vLLM's sampler works on float32 logits.
_LOGIT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class PrefillChunk:
    tokens: int  # prompt tokens computed in this step
    cached_tokens: int = 0  # tokens of the same sequence whose KV is already in the cache


@dataclasses.dataclass(frozen=True)
class StepWork:
    """What the scheduler asked one step to do."""

    prefills: tuple[PrefillChunk, ...] = ()
    decode_contexts: tuple[int, ...] = ()  # per decoding sequence: tokens whose KV is read
    swap_in_blocks: int = 0
    swap_out_blocks: int = 0

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.prefills) + len(self.decode_contexts)


@dataclasses.dataclass(frozen=True)
class StepCost:
    """Seconds per part of one step; ``total`` is what the step takes."""

    overhead: float
    swap_in: float
    swap_out: float
    prefill: float
    decode: float
    allreduce: float

    @property
    def total(self) -> float:
        return self.overhead + self.swap_in + self.swap_out + self.prefill + self.decode + self.allreduce


@dataclasses.dataclass(frozen=True)
class MixedStepCost:
    """Seconds per part of one V1 step (one forward pass over prefill chunks and decodes together)."""

    overhead: float
    forward: float  # the roofline pass: the larger of its compute and its memory traffic
    allreduce: float
    compute: float = 0.0  # the pass's compute time, for reading which side bound it
    memory: float = 0.0  # the pass's memory-traffic time
    kv_transfer: float = 0.0  # KV copies to or from host memory that the step waits for

    @property
    def total(self) -> float:
        return self.overhead + self.forward + self.allreduce + self.kv_transfer


class CostModel:
    """`staging_blocks`: None for vLLM 0.9's per-block swap, else the staged swap worker's buffer size."""

    def __init__(self, gpu: GPUProfile, model: ModelSpec, tensor_parallel_size: int, block_size: int = 16,
                 staging_blocks: int | None = None):
        if tensor_parallel_size < 1:
            raise ValueError("tensor_parallel_size must be >= 1")
        if staging_blocks is not None and staging_blocks < 1:
            raise ValueError("staging_blocks must be >= 1")
        self.gpu = gpu
        self.model = model
        self.tp = tensor_parallel_size
        self.block_size = block_size
        self.staging_blocks = staging_blocks

    # --- memory (bytes, per GPU) ---

    @property
    def weight_bytes_per_gpu(self) -> float:
        """W = P * dtype_bytes / TP (norms are replicated, but they are ~1e-5 of P)."""
        return self.model.parameter_count * self.model.dtype_bytes / self.tp

    @property
    def kv_heads_per_gpu(self) -> int:
        # vLLM replicates KV heads when there are fewer than GPUs.
        return max(1, self.model.num_kv_heads // self.tp)

    @property
    def kv_bytes_per_token_per_gpu(self) -> int:
        """layers * 2 (K and V) * KV heads per GPU * head_dim * dtype_bytes."""
        m = self.model
        return m.num_layers * 2 * self.kv_heads_per_gpu * m.head_dim * m.dtype_bytes

    @property
    def block_bytes(self) -> int:
        """One KV block on one GPU: block_size tokens of KV."""
        return self.block_size * self.kv_bytes_per_token_per_gpu

    def activation_peak_bytes(self, max_num_batched_tokens: int, max_num_seqs: int) -> float:
        """Peak activation memory of the largest forward pass vLLM profiles at start.

        Layers run one after another, so the peak is one layer's live tensors for N tokens:
        the residual stream and a normed copy (2 * hidden), the fused QKV output, and the
        gated MLP's fused gate/up output plus its activation (3 * intermediate / TP); then the
        float32 logits (computed for one token per sequence) and their softmax copy.
        """
        m = self.model
        n = max_num_batched_tokens
        qkv = (m.num_attention_heads + 2 * m.num_kv_heads) * m.head_dim / self.tp
        per_token = 2 * m.hidden_size + qkv + 3 * m.intermediate_size / self.tp
        logits = 2 * min(n, max_num_seqs) * m.vocab_size / self.tp * _LOGIT_BYTES
        return n * per_token * m.dtype_bytes + logits

    # --- time (seconds) ---

    def _weights_read_time(self) -> float:
        return self.weight_bytes_per_gpu / (self.gpu.hbm_bytes_per_s * self.gpu.decode_bandwidth_efficiency)

    def prefill_efficiency(self, tokens: int) -> float:
        """e(T) = prefill_flops_efficiency * T / (T + half): small prefills use the GPU poorly."""
        half = self.gpu.prefill_half_efficiency_tokens
        return self.gpu.prefill_flops_efficiency * tokens / (tokens + half)

    def prefill_flops_per_gpu(self, chunks: Sequence[PrefillChunk]) -> float:
        """(2 * P * T + attention) / TP, attention = 4 * layers * hidden * sum(T_i * (cached_i + T_i / 2)).

        With nothing cached the attention term is 4 * layers * hidden * T_i^2 / 2 (causal half
        of QK^T and of AV, 2 FLOPs per multiply-add each).
        """
        m = self.model
        tokens = sum(c.tokens for c in chunks)
        attention = 4 * m.num_layers * m.hidden_size * sum(c.tokens * (c.cached_tokens + c.tokens / 2) for c in chunks)
        return (2 * m.parameter_count * tokens + attention) / self.tp

    def prefill_time(self, chunks: Sequence[PrefillChunk]) -> float:
        """max(FLOPs / (peak * e(T)), W / (hbm * decode_bandwidth_efficiency)): a prefill reads all weights too."""
        tokens = sum(c.tokens for c in chunks)
        if tokens == 0:
            return 0.0
        compute = self.prefill_flops_per_gpu(chunks) / (self.gpu.peak_flops * self.prefill_efficiency(tokens))
        return max(compute, self._weights_read_time())

    def decode_time(self, contexts: Sequence[int]) -> float:
        """max((W + kv_bytes_per_token_per_gpu * sum c_i) / (hbm * eff), 2 * P * B / TP / (peak * eff))."""
        if not contexts:
            return 0.0
        gpu = self.gpu
        read = self.weight_bytes_per_gpu + self.kv_bytes_per_token_per_gpu * sum(contexts)
        memory = read / (gpu.hbm_bytes_per_s * gpu.decode_bandwidth_efficiency)
        compute = 2 * self.model.parameter_count * len(contexts) / self.tp / (gpu.peak_flops * gpu.decode_flops_efficiency)
        return max(memory, compute)

    def allreduce_time(self, tokens: int) -> float:
        """2 ring all-reduces per layer of tokens * hidden * dtype_bytes each.

        One ring all-reduce: latency + 2 * (TP - 1) / TP * bytes / (link * efficiency).
        """
        if self.tp == 1 or tokens == 0:
            return 0.0
        gpu, m = self.gpu, self.model
        size = tokens * m.hidden_size * m.dtype_bytes
        one = gpu.allreduce_latency_s + 2 * (self.tp - 1) / self.tp * size / (
            gpu.gpu_link_bytes_per_s * gpu.allreduce_bandwidth_efficiency
        )
        return 2 * m.num_layers * one

    def swap_time(self, blocks: int) -> float:
        """One direction's swap of n blocks, by the path the worker uses:

        per block (vLLM 0.9): n * layers * 2 copies, each with a fixed overhead, plus n * block_bytes
        over the host link;
        staged (vllm_cfs.swap): one fixed cost per staging-buffer load, ceil(n / staging_blocks)
        of them, plus n * block_bytes over the host link at the staged path's efficiency.
        """
        if blocks == 0:
            return 0.0
        gpu = self.gpu
        if self.staging_blocks is not None:
            loads = -(-blocks // self.staging_blocks)
            return loads * gpu.staged_swap_chunk_overhead_s + blocks * self.block_bytes / (
                gpu.host_link_bytes_per_s * gpu.staged_swap_bandwidth_efficiency
            )
        copies = blocks * self.model.num_layers * 2
        return copies * gpu.swap_copy_overhead_s + blocks * self.block_bytes / (
            gpu.host_link_bytes_per_s * gpu.swap_bandwidth_efficiency
        )

    def kv_offload_time(self, blocks: int) -> float:
        """One direction's copy of n GPU blocks to or from host memory by vLLM V1's KV offloading
        (--kv-offloading-backend native): n * (swap_copy_overhead_s + block_bytes / (host_link *
        swap_bandwidth_efficiency)). Its connector asks for the cross-layer KV layout, where a
        block's layers lie together: one copy per block, not vLLM 0.9's one per layer for K and V.
        """
        gpu = self.gpu
        return blocks * (gpu.swap_copy_overhead_s + self.block_bytes / (
            gpu.host_link_bytes_per_s * gpu.swap_bandwidth_efficiency))

    def step_cost(self, work: StepWork) -> StepCost:
        """overhead + swap in + swap out + prefill + decode + all-reduces.

        Swaps sit on the compute stream before the forward pass in vLLM 0.9, so they add up
        rather than overlap. V0 without chunked prefill never mixes prefill and decode in one
        step; when chunked prefill does, the two parts are added (a conservative estimate).
        """
        return StepCost(
            overhead=self.gpu.step_overhead_s,
            swap_in=self.swap_time(work.swap_in_blocks),
            swap_out=self.swap_time(work.swap_out_blocks),
            prefill=self.prefill_time(work.prefills),
            decode=self.decode_time(work.decode_contexts),
            allreduce=self.allreduce_time(work.tokens),
        )

    def mixed_step_cost(self, prefills: Sequence[PrefillChunk], decode_contexts: Sequence[int]) -> MixedStepCost:
        """One forward pass over a V1 batch: prefill chunks (T_i new tokens after c_i cached) and
        decodes (contexts d_j), as one roofline pass.

        The weights are read once for the whole step, and both parts' work adds up inside the max:

            compute = prefill_flops(chunks) / (peak * e(T)) + 2 * P * B / TP / (peak * decode_flops_efficiency)
            memory  = (W + kv_bytes_per_token_per_gpu * (sum d_j + sum c_i)) / (hbm * decode_bandwidth_efficiency)
            forward = max(compute, memory)
            total   = step_overhead_s + forward + allreduce_time(sum T_i + B)

        with T = sum T_i and B the number of decodes. Prefill compute keeps its efficiency ramp
        e(T) (its GEMMs are as wide as its tokens); decode compute keeps its own efficiency;
        decode attention FLOPs are left out as in ``decode_time`` (the KV they read is counted in
        memory). A chunk's cached context is read once. Only prefills with nothing cached:
        ``prefill_time``; only decodes: ``decode_time``; the all-reduces run over every token.
        """
        gpu = self.gpu
        prefill_tokens = sum(c.tokens for c in prefills)
        tokens = prefill_tokens + len(decode_contexts)
        if tokens == 0:
            return MixedStepCost(overhead=gpu.step_overhead_s, forward=0.0, allreduce=0.0)
        compute = 0.0
        if prefill_tokens:
            compute += self.prefill_flops_per_gpu(prefills) / (gpu.peak_flops * self.prefill_efficiency(prefill_tokens))
        if decode_contexts:
            compute += 2 * self.model.parameter_count * len(decode_contexts) / self.tp / (
                gpu.peak_flops * gpu.decode_flops_efficiency)
        kv_read = self.kv_bytes_per_token_per_gpu * (sum(decode_contexts) + sum(c.cached_tokens for c in prefills))
        memory = (self.weight_bytes_per_gpu + kv_read) / (gpu.hbm_bytes_per_s * gpu.decode_bandwidth_efficiency)
        return MixedStepCost(
            overhead=gpu.step_overhead_s,
            forward=max(compute, memory),
            allreduce=self.allreduce_time(tokens),
            compute=compute,
            memory=memory,
        )
