#!/usr/bin/env python3
"""Measure a real CUDA GPU on CodeLlama-34B-shaped work and fit a simulated-GPU profile.

Needs PyTorch and a CUDA GPU only (no vLLM, no model download): the decoder has CodeLlama-34B's
layer shapes (48 layers, hidden 8192, 64 heads, 8 KV heads, head dim 128, intermediate 22016,
vocab 32000, RMSNorm, rotary, SwiGLU) and random bf16 weights. It measures, with CUDA events,
warm-up and medians:

  prefill  one or several equal-length sequences (a batch) through the whole decoder, causal
           scaled_dot_product_attention, logits for each sequence's last token as vLLM does;
  decode   one step for a batch at a context, with a contiguous per-sequence KV cache (it reads
           the same bytes as vLLM's paged cache), replayed from a CUDA graph as vLLM 0.9 does for
           decode; the eager time is recorded beside it;
  swap     KV blocks of 16 tokens between GPU and pinned host memory, both directions, three ways:
           per_block       vLLM 0.9's pattern: for every layer, for K and for V, one
                           cudaMemcpyAsync per block, issued from C++ (an extension built on the
                           spot; a Python loop of tensor.copy_ only if no build works, and the
                           output says so);
           batched_memcpy  the same copies in one cudaMemcpyBatchAsync call (CUDA >= 12.8);
           staged          gather the blocks into a contiguous buffer, then one copy.

It fits the profile's efficiency factors to the medians and writes, under --out:
  raw.json      environment, model, every measured point with all its samples;
  profile.json  a GPU profile in the simulator's format (VLLM_CFS_SIM_GPU=path/profile.json),
                with the raw points under "measured";
  table.md      every point: measured vs predicted by the base (datasheet) and fitted profiles.
benchmarks/calibration_report.py redoes the comparison through vllm_cfs.sim.cost_model.

Fit (documented in docs/calibration.md): decode_bandwidth_efficiency and decode_flops_efficiency
on the decode points, then prefill_flops_efficiency and prefill_half_efficiency_tokens on the
prefill points, each by grid search minimising the sum of squared log errors (a least-squares fit
of relative error that the cost model's max() does not upset); swap_copy_overhead_s and
swap_bandwidth_efficiency by linear least squares on relative error over the per_block points,
which vary both the block count and the bytes per copy so that the two terms separate.
Where the data leave a factor free (e.g. no decode point is compute-bound), the base profile's
value is kept if it fits as well, else the nearest value that does. host_link_bytes_per_s is set
to the measured bandwidth of one large pinned copy; hbm_bytes_per_s and peak_flops stay at the
datasheet figures so that the efficiencies compare across GPUs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import datetime
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHIPPED_H200_PROFILE = REPO / "vllm_cfs" / "sim" / "profiles" / "h200.json"
BLOCK_TOKENS = 16  # vLLM's KV block size on CUDA

# The agreed profile format, in its agreed key order (SI units throughout).
PROFILE_KEYS = (
    "name", "description", "source", "memory_bytes", "hbm_bytes_per_s", "peak_flops",
    "gpu_link_bytes_per_s", "host_link_bytes_per_s", "prefill_flops_efficiency",
    "prefill_half_efficiency_tokens", "decode_bandwidth_efficiency", "decode_flops_efficiency",
    "allreduce_latency_s", "allreduce_bandwidth_efficiency", "swap_copy_overhead_s",
    "swap_bandwidth_efficiency", "step_overhead_s", "non_kv_overhead_bytes",
)

# Used only when the simulator's shipped h200.json is absent: datasheet figures (NVIDIA H200 SXM,
# DESIGN.md §3) with placeholder efficiencies that the fit replaces.
DATASHEET_H200 = {
    "name": "h200",
    "description": "NVIDIA H200 SXM, datasheet figures with assumed efficiencies",
    "source": "datasheet",
    "memory_bytes": 141 * 10**9,
    "hbm_bytes_per_s": 4.8e12,
    "peak_flops": 989e12,
    "gpu_link_bytes_per_s": 450e9,
    "host_link_bytes_per_s": 50e9,
    "prefill_flops_efficiency": 0.6,
    "prefill_half_efficiency_tokens": 256,
    "decode_bandwidth_efficiency": 0.75,
    "decode_flops_efficiency": 0.5,
    "allreduce_latency_s": 15e-6,
    "allreduce_bandwidth_efficiency": 0.7,
    "swap_copy_overhead_s": 8e-6,
    "swap_bandwidth_efficiency": 0.8,
    "step_overhead_s": 0.004,
    "non_kv_overhead_bytes": 2 * 1024**3,
}


class CalibrationError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


# --------------------------------------------------------------------------------------------
# Model shape and the numbers the cost model derives from it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    rope_theta: float = 1e6
    rms_eps: float = 1e-5
    dtype_bytes: int = 2

    @property
    def qkv_width(self) -> int:
        return (self.heads + 2 * self.kv_heads) * self.head_dim

    @property
    def layer_params(self) -> int:
        return (self.hidden * self.qkv_width + self.heads * self.head_dim * self.hidden
                + 3 * self.hidden * self.intermediate + 2 * self.hidden)

    @property
    def params(self) -> int:
        # untied embedding and LM head, as in CodeLlama-34B
        return self.layers * self.layer_params + 2 * self.vocab * self.hidden + self.hidden

    @property
    def weight_bytes(self) -> int:
        return self.params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def copy_bytes(self) -> int:
        """One block of one layer's K (or V): what one cudaMemcpyAsync of vLLM 0.9 moves."""
        return BLOCK_TOKENS * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def block_bytes(self) -> int:
        return BLOCK_TOKENS * self.kv_bytes_per_token

    def with_layers(self, layers: int) -> "ModelShape":
        return ModelShape(**{**asdict(self), "layers": layers})

    def describe(self) -> dict:
        return {**asdict(self), "params": self.params, "weight_bytes": self.weight_bytes,
                "kv_bytes_per_token": self.kv_bytes_per_token, "block_tokens": BLOCK_TOKENS,
                "block_bytes": self.block_bytes, "copy_bytes": self.copy_bytes}


CODELLAMA_34B = ModelShape(layers=48, hidden=8192, heads=64, kv_heads=8, head_dim=128,
                           intermediate=22016, vocab=32000)
# --dry-run: the same code paths on a CPU in seconds
TINY = ModelShape(layers=1, hidden=256, heads=4, kv_heads=2, head_dim=64, intermediate=512,
                  vocab=1024)


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPlan:
    prefill: tuple[tuple[int, ...], ...]           # each entry: the sequence lengths of one batch
    decode_batches: tuple[int, ...]
    decode_contexts: tuple[int, ...]
    swap_blocks: tuple[int, ...]                   # block counts, at the model's own copy size
    swap_copy_sizes: tuple[int, ...]               # other bytes-per-copy, to separate the overhead
    swap_copy_size_blocks: int                     # block count used for those
    reps: int = 7
    warmup: int = 2


def _batches(n: int, t: int) -> tuple[int, ...]:
    return (t,) * n


FULL_PLAN = SweepPlan(
    prefill=tuple((t,) for t in (128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192))
    + tuple(_batches(n, t) for n, t in (
        (2, 128), (4, 128), (8, 128), (16, 128), (32, 128), (4, 256), (16, 256), (2, 512),
        (4, 512), (8, 512), (16, 512), (2, 1024), (4, 1024), (8, 1024), (2, 2048), (4, 2048),
        (2, 4096))),
    decode_batches=(1, 2, 4, 8, 16, 32, 64, 128),
    decode_contexts=(256, 512, 1024, 2048, 4096),
    swap_blocks=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    # 4, 8 and 16 KiB are the per-layer blocks at TP 8, 4 and 2; 64 and 128 KiB are 32- and
    # 64-token blocks at TP 1
    swap_copy_sizes=(4096, 8192, 16384, 65536, 131072),
    swap_copy_size_blocks=64,
)
QUICK_PLAN = SweepPlan(
    prefill=((128,), (1024,), (4096,), _batches(4, 512), _batches(2, 2048)),
    decode_batches=(1, 16, 128),
    decode_contexts=(256, 2048),
    swap_blocks=(1, 16, 256),
    swap_copy_sizes=(16384, 65536),
    swap_copy_size_blocks=64,
    reps=5,
)
DRY_PLAN = SweepPlan(
    prefill=((16,), (64,), _batches(2, 32)),
    decode_batches=(1, 2),
    decode_contexts=(16, 32),
    swap_blocks=(1, 4),
    swap_copy_sizes=(2048, 8192),
    swap_copy_size_blocks=4,
    reps=2,
    warmup=1,
)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Timing:
    seconds: float                  # median device time (CUDA events; host clock on CPU)
    samples: list[float]
    host_seconds: float             # median host time from issue to completion

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "samples": self.samples, "host_seconds": self.host_seconds}


class Clock:
    """Times a callable on the current stream: CUDA events on a GPU, the host clock on a CPU."""

    def __init__(self, torch, device):
        self.torch = torch
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, fn: Callable[[], object], warmup: int, reps: int) -> Timing:
        for _ in range(warmup):
            fn()
        self.sync()
        device, host = [], []
        for _ in range(reps):
            # one event pair and a sync per repetition, so a repetition never overlaps the next
            if self.cuda:
                start = self.torch.cuda.Event(enable_timing=True)
                end = self.torch.cuda.Event(enable_timing=True)
                h0 = time.perf_counter()
                start.record()
                fn()
                end.record()
                end.synchronize()
                host.append(time.perf_counter() - h0)
                device.append(start.elapsed_time(end) / 1e3)
            else:
                h0 = time.perf_counter()
                fn()
                host.append(time.perf_counter() - h0)
                device.append(host[-1])
        return Timing(statistics.median(device), device, statistics.median(host))


class Progress:
    """One line per finished point, with its place in the family: readable in a log tail."""

    def __init__(self, family: str, total: int):
        self.family, self.total, self.done, self.t0 = family, total, 0, time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        print(f"[{self.family} {self.done}/{self.total} {time.perf_counter() - self.t0:6.1f}s] {what}",
              flush=True)


# --------------------------------------------------------------------------------------------
# The decoder
# --------------------------------------------------------------------------------------------


def grouped_decode_attention(F, q, k_cache, v_cache):
    """Attention of one new token per sequence over its whole cache, without expanding K/V.

    q is [B, heads, head_dim]; the caches are [B, kv_heads, context, head_dim]. Query head h
    reads KV head h // group (Llama's grouping), so the group's query heads are laid out as
    `group` query positions of their KV head; with nothing masked (the new token sees the whole
    cache) that is exactly GQA decode, and flash attention takes it as is.
    """
    batch, heads, head_dim = q.shape
    kv_heads = k_cache.shape[1]
    grouped = q.reshape(batch, kv_heads, heads // kv_heads, head_dim)
    return F.scaled_dot_product_attention(grouped, k_cache, v_cache).reshape(batch, heads * head_dim)


class Decoder:
    """CodeLlama-shaped decoder with random weights: the work of a forward pass, not its meaning."""

    def __init__(self, torch, shape: ModelShape, device, max_positions: int, dtype=None):
        self.torch, self.F = torch, torch.nn.functional
        self.shape, self.device = shape, device
        self.dtype = dtype or torch.bfloat16
        s = shape

        def weight(rows: int, cols: int):
            # fan-in scaling keeps activations finite through 48 random layers; filled on the
            # device (a CPU init of 67 GB would take minutes)
            return torch.empty((rows, cols), dtype=self.dtype, device=device).normal_(0.0, cols ** -0.5)

        def ones():
            return torch.ones(s.hidden, dtype=self.dtype, device=device)

        self.embed = weight(s.vocab, s.hidden)
        self.layers = [
            {"norm1": ones(), "qkv": weight(s.qkv_width, s.hidden),
             "o": weight(s.hidden, s.heads * s.head_dim), "norm2": ones(),
             "gate_up": weight(2 * s.intermediate, s.hidden), "down": weight(s.hidden, s.intermediate)}
            for _ in range(s.layers)
        ]
        self.norm = ones()
        self.lm_head = weight(s.vocab, s.hidden)
        self.cos, self.sin = self._rotary_tables(max_positions)
        self.attention_mode = self._probe_attention()

    def _rotary_tables(self, positions: int):
        torch, half = self.torch, self.shape.head_dim // 2
        inv_freq = self.shape.rope_theta ** (-torch.arange(half, dtype=torch.float64) / half)
        angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
        cos = torch.cat([angles.cos(), angles.cos()], -1)
        # rotate_half(x) = [-x2, x1] = roll(x, half) * [-1, +1]: the sign lives in the table, so
        # rotary costs a roll, a mul and an addcmul
        sin = torch.cat([-angles.sin(), angles.sin()], -1)
        return cos.to(self.device, self.dtype), sin.to(self.device, self.dtype)

    def _rotary(self, x, cos, sin):
        return self.torch.addcmul(x * cos, self.torch.roll(x, self.shape.head_dim // 2, dims=-1), sin)

    def _rms_norm(self, x, weight):
        return self.F.rms_norm(x, (self.shape.hidden,), weight, self.shape.rms_eps)

    def _probe_attention(self) -> str:
        """'gqa' when SDPA takes grouped K/V directly, else 'expanded' (K/V repeated per head)."""
        torch, s = self.torch, self.shape
        q = torch.randn(1, s.heads, 32, s.head_dim, dtype=self.dtype, device=self.device)
        kv = torch.randn(1, s.kv_heads, 32, s.head_dim, dtype=self.dtype, device=self.device)
        try:
            with self.attention_backends():
                self.F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
            return "gqa"
        except (RuntimeError, TypeError, NotImplementedError):
            return "expanded"

    def attention_backends(self):
        """On a GPU, forbid SDPA's unfused math fallback, so a slow path cannot creep in unseen."""
        if self.device.type != "cuda":
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                            SDPBackend.CUDNN_ATTENTION])

    def _causal_attention(self, q, k, v):
        if self.attention_mode == "gqa":
            return self.F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        group = self.shape.heads // self.shape.kv_heads
        return self.F.scaled_dot_product_attention(
            q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), is_causal=True)

    def _mlp(self, layer, x):
        gate, up = self.F.linear(self._rms_norm(x, layer["norm2"]), layer["gate_up"]).chunk(2, -1)
        return self.F.linear(self.F.silu(gate) * up, layer["down"])

    def prefill(self, tokens):
        """tokens [n, T] -> the next token of each sequence (logits of the last position only)."""
        s, F = self.shape, self.F
        n, t = tokens.shape
        qk_heads = s.heads + s.kv_heads
        cos, sin = self.cos[:t, None, :], self.sin[:t, None, :]
        x = F.embedding(tokens, self.embed)
        for layer in self.layers:
            qkv = F.linear(self._rms_norm(x, layer["norm1"]), layer["qkv"])
            qkv = qkv.view(n, t, s.heads + 2 * s.kv_heads, s.head_dim)
            qk = self._rotary(qkv[:, :, :qk_heads], cos, sin)
            attn = self._causal_attention(qk[:, :, :s.heads].transpose(1, 2),
                                          qk[:, :, s.heads:].transpose(1, 2),
                                          qkv[:, :, qk_heads:].transpose(1, 2))
            x = x + F.linear(attn.transpose(1, 2).reshape(n, t, s.heads * s.head_dim), layer["o"])
            x = x + self._mlp(layer, x)
        return F.linear(self._rms_norm(x[:, -1], self.norm), self.lm_head).argmax(-1)

    def new_decode_batch(self, batch: int, context: int) -> "DecodeBatch":
        s, torch = self.shape, self.torch
        kv = torch.empty((s.layers, 2, batch, s.kv_heads, context + 1, s.head_dim),
                         dtype=self.dtype, device=self.device).normal_()
        tokens = torch.randint(s.vocab, (batch,), device=self.device)
        return DecodeBatch(tokens=tokens, kv=kv, position=context)

    def decode_step(self, batch: "DecodeBatch"):
        """One new token for each sequence, its K/V written at `position`, attending to all."""
        s, F = self.shape, self.F
        n, p = batch.tokens.shape[0], batch.position
        qk_heads = s.heads + s.kv_heads
        cos, sin = self.cos[p], self.sin[p]
        x = F.embedding(batch.tokens, self.embed)
        for i, layer in enumerate(self.layers):
            qkv = F.linear(self._rms_norm(x, layer["norm1"]), layer["qkv"])
            qkv = qkv.view(n, s.heads + 2 * s.kv_heads, s.head_dim)
            qk = self._rotary(qkv[:, :qk_heads], cos, sin)
            k_cache, v_cache = batch.kv[i, 0], batch.kv[i, 1]
            k_cache[:, :, p] = qk[:, s.heads:]
            v_cache[:, :, p] = qkv[:, qk_heads:]
            attn = grouped_decode_attention(F, qk[:, :s.heads], k_cache, v_cache)
            x = x + F.linear(attn, layer["o"])
            x = x + self._mlp(layer, x)
        return F.linear(self._rms_norm(x, self.norm), self.lm_head).argmax(-1)


@dataclass
class DecodeBatch:
    tokens: object     # [B] token ids
    kv: object         # [layers, 2, B, kv_heads, context + 1, head_dim]
    position: int      # where the new token's K/V go (= context)


# --------------------------------------------------------------------------------------------
# Swap: the copy engines
# --------------------------------------------------------------------------------------------

SWAP_CORE_SRC = r"""
#include <cuda_runtime.h>
#include <cstdint>
#include <vector>

// One cudaMemcpyAsync per block: the copy pattern of vLLM 0.9's swap path. mapping holds n
// (source block, destination block) pairs; returns the first CUDA error, 0 when all went in.
extern "C" int calib_copy_blocks(const char* src, char* dst, int64_t block_bytes,
                                 const int64_t* mapping, int64_t n, int to_host, void* stream) {
  const cudaMemcpyKind kind = to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
  for (int64_t i = 0; i < n; ++i) {
    cudaError_t err = cudaMemcpyAsync(dst + mapping[2 * i + 1] * block_bytes,
                                      src + mapping[2 * i] * block_bytes, block_bytes, kind,
                                      static_cast<cudaStream_t>(stream));
    if (err != cudaSuccess) return static_cast<int>(err);
  }
  return 0;
}

#ifdef CALIB_BATCH_MEMCPY
// Every block of every (layer, K/V) pool in one cudaMemcpyBatchAsync call. src_bases/dst_bases
// hold the base address of each pool; the same mapping applies to all of them.
extern "C" int calib_copy_blocks_batched(const int64_t* src_bases, const int64_t* dst_bases,
                                         int64_t pools, int64_t block_bytes,
                                         const int64_t* mapping, int64_t n, void* stream) {
  const size_t count = static_cast<size_t>(pools * n);
  std::vector<void*> dsts(count);
  std::vector<const void*> srcs(count);
  std::vector<size_t> sizes(count, static_cast<size_t>(block_bytes));
  for (int64_t p = 0; p < pools; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      srcs[p * n + i] = reinterpret_cast<const char*>(src_bases[p]) + mapping[2 * i] * block_bytes;
      dsts[p * n + i] = reinterpret_cast<char*>(dst_bases[p]) + mapping[2 * i + 1] * block_bytes;
    }
  }
  cudaMemcpyAttributes attrs = {};
  attrs.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
  size_t attrs_idx = 0;
#if CUDART_VERSION >= 13000
  cudaError_t err = cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), count, &attrs,
                                         &attrs_idx, 1, static_cast<cudaStream_t>(stream));
#else
  size_t fail_idx = 0;
  cudaError_t err = cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), count, &attrs,
                                         &attrs_idx, 1, &fail_idx, static_cast<cudaStream_t>(stream));
#endif
  return static_cast<int>(err);
}
#endif
"""

# torch bindings over the C core, for load_inline (which prepends torch/extension.h)
SWAP_TORCH_BINDINGS = r"""
void copy_blocks(int64_t src, int64_t dst, int64_t block_bytes, torch::Tensor mapping,
                 bool to_host, int64_t stream) {
  TORCH_CHECK(mapping.dtype() == torch::kInt64 && mapping.dim() == 2 && mapping.size(1) == 2
              && mapping.is_contiguous() && !mapping.is_cuda(), "mapping: contiguous [n, 2] int64 on CPU");
  int err = calib_copy_blocks(reinterpret_cast<const char*>(src), reinterpret_cast<char*>(dst),
                              block_bytes, mapping.data_ptr<int64_t>(), mapping.size(0), to_host,
                              reinterpret_cast<void*>(stream));
  TORCH_CHECK(err == 0, "cudaMemcpyAsync failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}
#ifdef CALIB_BATCH_MEMCPY
void copy_blocks_batched(std::vector<int64_t> src_bases, std::vector<int64_t> dst_bases,
                         int64_t block_bytes, torch::Tensor mapping, int64_t stream) {
  TORCH_CHECK(src_bases.size() == dst_bases.size(), "one destination per source pool");
  TORCH_CHECK(mapping.dtype() == torch::kInt64 && mapping.dim() == 2 && mapping.size(1) == 2
              && mapping.is_contiguous() && !mapping.is_cuda(), "mapping: contiguous [n, 2] int64 on CPU");
  int err = calib_copy_blocks_batched(src_bases.data(), dst_bases.data(),
                                      static_cast<int64_t>(src_bases.size()), block_bytes,
                                      mapping.data_ptr<int64_t>(), mapping.size(0),
                                      reinterpret_cast<void*>(stream));
  TORCH_CHECK(err == 0, "cudaMemcpyBatchAsync failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}
#endif
"""


class ExtensionCopier:
    """Block copies issued from C++: a torch extension, or the same C code loaded via ctypes."""

    def __init__(self, copy_blocks, copy_blocks_batched, description: str):
        self._copy_blocks = copy_blocks
        self._copy_blocks_batched = copy_blocks_batched
        self.description = description
        self.has_batched = copy_blocks_batched is not None

    def copy_blocks(self, src, dst, mapping, to_host: bool, stream: int) -> None:
        self._copy_blocks(src.data_ptr(), dst.data_ptr(), src.stride(0) * src.element_size(),
                          mapping, to_host, stream)

    def copy_blocks_batched(self, src_bases, dst_bases, block_bytes, mapping, stream: int) -> None:
        self._copy_blocks_batched(src_bases, dst_bases, block_bytes, mapping, stream)


class LoopCopier:
    """Fallback when no C++ build works: one tensor.copy_ per block, from Python."""

    has_batched = False

    def __init__(self, why: str):
        self.description = f"Python loop of tensor.copy_ per block ({why})"

    def copy_blocks(self, src, dst, mapping, to_host: bool, stream: int) -> None:
        for s, d in mapping.tolist():
            dst[d].copy_(src[s], non_blocking=True)


def _torch_extension(torch, build_dir: Path, batched: bool):
    from torch.utils.cpp_extension import load_inline

    name = "calib_swap_batched" if batched else "calib_swap"
    defines = "#define CALIB_BATCH_MEMCPY\n" if batched else ""
    functions = ["copy_blocks"] + (["copy_blocks_batched"] if batched else [])
    module = load_inline(name=name, cpp_sources=[defines + SWAP_CORE_SRC + SWAP_TORCH_BINDINGS],
                         functions=functions, with_cuda=True, extra_cflags=["-O2"],
                         build_directory=str(build_dir), verbose=False)
    return ExtensionCopier(module.copy_blocks, getattr(module, "copy_blocks_batched", None),
                           "C++ torch extension (load_inline), one cudaMemcpyAsync per block"
                           + (", cudaMemcpyBatchAsync available" if batched else ""))


def cuda_home() -> str | None:
    """The CUDA toolkit's root. Checked by its headers: an `nvcc` on the PATH may be a wrapper
    script outside the toolkit, which misleads torch's own guess."""
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and Path(candidate, "include", "cuda_runtime.h").exists():
            return candidate
    return None


def prepare_build_environment(torch, device) -> None:
    """Point torch's extension builder at the toolkit and this GPU (before it is first imported)."""
    home = cuda_home()
    if home:
        os.environ.setdefault("CUDA_HOME", home)
    major, minor = torch.cuda.get_device_capability(device)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")


def _ctypes_library(build_dir: Path, batched: bool):
    """The same C core as a plain shared library, for when torch's extension build fails."""
    CUDA_HOME = cuda_home()
    if not CUDA_HOME:
        raise RuntimeError("no CUDA toolkit found")
    src = build_dir / "calib_swap.cpp"
    lib_path = build_dir / ("libcalib_swap_batched.so" if batched else "libcalib_swap.so")
    src.write_text(("#define CALIB_BATCH_MEMCPY\n" if batched else "") + SWAP_CORE_SRC)
    cmd = [shutil.which("g++") or "c++", "-O2", "-shared", "-fPIC", f"-I{CUDA_HOME}/include", str(src),
           f"-L{CUDA_HOME}/lib64", "-lcudart", "-o", str(lib_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    lib = ctypes.CDLL(str(lib_path))
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.calib_copy_blocks.argtypes = [vp, vp, i64, vp, i64, ctypes.c_int, vp]

    def copy_blocks(src, dst, block_bytes, mapping, to_host, stream):
        err = lib.calib_copy_blocks(src, dst, block_bytes, mapping.data_ptr(), mapping.shape[0],
                                    int(to_host), stream)
        if err:
            raise RuntimeError(f"cudaMemcpyAsync failed with CUDA error {err}")

    batched_fn = None
    if batched:
        lib.calib_copy_blocks_batched.argtypes = [vp, vp, i64, i64, vp, i64, vp]

        def batched_fn(src_bases, dst_bases, block_bytes, mapping, stream):
            arr = ctypes.c_int64 * len(src_bases)
            err = lib.calib_copy_blocks_batched(arr(*src_bases), arr(*dst_bases), len(src_bases),
                                                block_bytes, mapping.data_ptr(), mapping.shape[0], stream)
            if err:
                raise RuntimeError(f"cudaMemcpyBatchAsync failed with CUDA error {err}")

    return ExtensionCopier(copy_blocks, batched_fn,
                           "C shared library via ctypes (torch extension build failed), one "
                           "cudaMemcpyAsync per block" + (", cudaMemcpyBatchAsync available" if batched else ""))


def build_copier(torch, build_dir: Path):
    """The best copier this machine can build, and the build errors met on the way."""
    errors = []
    attempts = (("torch extension", lambda batched: _torch_extension(torch, build_dir, batched)),
                ("ctypes library", lambda batched: _ctypes_library(build_dir, batched)))
    for label, make in attempts:
        for batched in (True, False):
            try:
                return make(batched), errors
            except Exception as exc:  # a failed build of any kind moves on to the next option
                detail = getattr(exc, "stderr", None) or str(exc)
                errors.append(f"{label} (batched={batched}): {detail.strip()[-400:]}")
    return LoopCopier("no C++ build worked: see swap_build_errors"), errors


# --------------------------------------------------------------------------------------------
# Swap: the pools and the three paths
# --------------------------------------------------------------------------------------------


class SwapRig:
    """GPU and pinned-host KV pools, one [blocks, copy_bytes] tensor per (layer, K/V) as in
    vLLM 0.9, plus contiguous staging buffers for the staged path."""

    def __init__(self, torch, device, layers: int, copy_bytes: int, gpu_blocks: int, cpu_blocks: int,
                 max_blocks: int, copier, stream, seed: int):
        self.torch, self.device, self.copier, self.stream = torch, device, copier, stream
        self.layers, self.copy_bytes = layers, copy_bytes
        elems = copy_bytes // 2
        pinned = device.type == "cuda"
        self.gpu = torch.empty((layers, 2, gpu_blocks, elems), dtype=torch.bfloat16, device=device).normal_()
        self.cpu = torch.empty((layers, 2, cpu_blocks, elems), dtype=torch.bfloat16, pin_memory=pinned)
        self.cpu.copy_(self.gpu[:, :, :cpu_blocks])   # random contents, without a slow CPU RNG
        staged = layers * 2 * max_blocks * elems
        self.stage_gpu = torch.empty(staged, dtype=torch.bfloat16, device=device)
        self.stage_cpu = torch.empty(staged, dtype=torch.bfloat16, pin_memory=pinned)
        self.generator = torch.Generator().manual_seed(seed)
        self.stream_handle = stream.cuda_stream if stream is not None else 0

    def pick(self, n: int):
        """n distinct GPU blocks and n distinct host blocks, scattered as in a long-running pool."""
        torch = self.torch
        gpu_ids = torch.randperm(self.gpu.shape[2], generator=self.generator)[:n]
        cpu_ids = torch.randperm(self.cpu.shape[2], generator=self.generator)[:n]
        return SwapPick(gpu_ids, cpu_ids, torch.stack([gpu_ids, cpu_ids], 1).contiguous(),
                        torch.stack([cpu_ids, gpu_ids], 1).contiguous(),
                        gpu_ids.pin_memory() if self.device.type == "cuda" else gpu_ids)

    def _pools(self, to_host: bool):
        return (self.gpu, self.cpu) if to_host else (self.cpu, self.gpu)

    def per_block(self, pick: "SwapPick", to_host: bool) -> None:
        src, dst = self._pools(to_host)
        mapping = pick.out_mapping if to_host else pick.in_mapping
        # vLLM 0.9 walks the layers in Python and swaps K then V of each
        for layer in range(self.layers):
            for kv in (0, 1):
                self.copier.copy_blocks(src[layer, kv], dst[layer, kv], mapping, to_host, self.stream_handle)

    def batched_memcpy(self, pick: "SwapPick", to_host: bool) -> None:
        src, dst = self._pools(to_host)
        mapping = pick.out_mapping if to_host else pick.in_mapping
        src_bases = [src[layer, kv].data_ptr() for layer in range(self.layers) for kv in (0, 1)]
        dst_bases = [dst[layer, kv].data_ptr() for layer in range(self.layers) for kv in (0, 1)]
        self.copier.copy_blocks_batched(src_bases, dst_bases, self.copy_bytes, mapping, self.stream_handle)

    def _staging(self, n: int):
        shape = (self.layers, 2, n, self.copy_bytes // 2)
        count = math.prod(shape)
        return self.stage_gpu[:count].view(shape), self.stage_cpu[:count].view(shape)

    def staged(self, pick: "SwapPick", to_host: bool) -> None:
        stage_gpu, stage_cpu = self._staging(len(pick.gpu_ids))
        idx = pick.gpu_ids_pinned.to(self.device, non_blocking=True)
        if to_host:
            self.torch.index_select(self.gpu, 2, idx, out=stage_gpu)
            stage_cpu.copy_(stage_gpu, non_blocking=True)
        else:
            stage_gpu.copy_(stage_cpu, non_blocking=True)
            self.gpu.index_copy_(2, idx, stage_gpu)

    def verify(self, path: str, n: int) -> None:
        """Swap n blocks out and fresh data back in along `path`; raise if any byte differs."""
        torch, run = self.torch, getattr(self, path)
        pick = self.pick(n)
        run(pick, True)
        self._sync()
        landed = self._staging(n)[1] if path == "staged" else self.cpu[:, :, pick.cpu_ids]
        if not torch.equal(landed, self.gpu[:, :, pick.gpu_ids].cpu()):
            raise RuntimeError(f"{path}: swap-out copied the wrong bytes")
        fresh = torch.randn((self.layers, 2, n, self.copy_bytes // 2), generator=self.generator).to(torch.bfloat16)
        if path == "staged":
            self._staging(n)[1].copy_(fresh)
        else:
            self.cpu[:, :, pick.cpu_ids] = fresh
        run(pick, False)
        self._sync()
        if not torch.equal(self.gpu[:, :, pick.gpu_ids].cpu(), fresh):
            raise RuntimeError(f"{path}: swap-in copied the wrong bytes")

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


@dataclass
class SwapPick:
    gpu_ids: object
    cpu_ids: object
    out_mapping: object       # [n, 2] (gpu block, cpu block)
    in_mapping: object        # [n, 2] (cpu block, gpu block)
    gpu_ids_pinned: object


# --------------------------------------------------------------------------------------------
# Measurement families
# --------------------------------------------------------------------------------------------


@dataclass
class Environment:
    device: str
    gpu: str
    driver: str | None
    torch: str
    cuda: str | None
    python: str
    memory_bytes: int
    date: str
    nvidia_smi: str | None = None


def describe_environment(torch, device) -> Environment:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if device.type != "cuda":
        return Environment("cpu", f"CPU ({platform.processor() or platform.machine()})", None,
                           torch.__version__, None, platform.python_version(), 0, now)
    props = torch.cuda.get_device_properties(device)
    driver = _nvidia_smi("driver_version")
    smi = _nvidia_smi("name,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,"
                      "pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current")
    return Environment("cuda", props.name, driver, torch.__version__, torch.version.cuda,
                       platform.python_version(), int(props.total_memory), now, smi)


def _nvidia_smi(fields: str) -> str | None:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def measure_ceilings(torch, device, clock: Clock, quick: bool) -> dict:
    """What this GPU reaches on the simplest kernels: a large GEMM, a device copy, a host copy."""
    out: dict = {}
    n = 8192 if device.type == "cuda" else 256
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    t = clock.time(partial(torch.matmul, a, b), 3, 10)
    out["gemm_bf16"] = {"m_n_k": n, "seconds": t.seconds, "flops_per_s": 2 * n**3 / t.seconds}
    del a, b
    elems = (2 * 1024**3 if device.type == "cuda" else 2**22) // 2
    src = torch.empty(elems, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    t = clock.time(partial(dst.copy_, src), 3, 10)
    out["device_copy"] = {"bytes": 2 * elems, "seconds": t.seconds,
                          "bytes_per_s_read_plus_write": 2 * 2 * elems / t.seconds}
    del src, dst
    if device.type == "cuda":
        elems = 512 * 1024**2 // 2
        dev = torch.empty(elems, dtype=torch.bfloat16, device=device).normal_()
        host = torch.empty(elems, dtype=torch.bfloat16, pin_memory=True)
        for name, fn in (("host_to_device", partial(dev.copy_, host, non_blocking=True)),
                         ("device_to_host", partial(host.copy_, dev, non_blocking=True))):
            t = clock.time(fn, 2, 3 if quick else 7)
            out[name] = {"bytes": 2 * elems, "seconds": t.seconds, "bytes_per_s": 2 * elems / t.seconds}
        del dev, host
    return out


def measure_prefill(torch, model: Decoder, clock: Clock, plan: SweepPlan) -> list[dict]:
    progress = Progress("prefill", len(plan.prefill))
    points = []
    with model.attention_backends(), torch.inference_mode():
        for seq_lens in plan.prefill:
            tokens = torch.randint(model.shape.vocab, (len(seq_lens), seq_lens[0]), device=model.device)
            big = sum(seq_lens) >= 4096
            t = clock.time(partial(model.prefill, tokens), 1, 3 if big else plan.reps)
            points.append({"seq_lens": list(seq_lens), "tokens": sum(seq_lens), **t.as_dict()})
            progress.step(f"{len(seq_lens)} x {seq_lens[0]} tokens: {t.seconds * 1e3:9.2f} ms")
    return points


def capture_graph(torch, fn):
    """A CUDA graph of fn, captured after warm-up on a side stream (as vLLM captures decode)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def measure_decode(torch, model: Decoder, clock: Clock, plan: SweepPlan) -> tuple[list[dict], list[dict]]:
    grid = [(b, c) for c in plan.decode_contexts for b in plan.decode_batches]
    progress = Progress("decode", len(grid))
    points, skipped = [], []
    cuda = model.device.type == "cuda"
    s = model.shape
    with model.attention_backends(), torch.inference_mode():
        for batch, context in grid:
            if cuda:
                torch.cuda.empty_cache()   # free() below must count what prefill's cache still holds
            need = s.layers * 2 * batch * s.kv_heads * (context + 1) * s.head_dim * s.dtype_bytes
            if cuda and need > torch.cuda.mem_get_info()[0] - 4 * 1024**3:
                skipped.append({"batch": batch, "context": context,
                                "reason": f"KV cache of {need / 1024**3:.1f} GiB does not fit beside the weights"})
                progress.step(f"B={batch} ctx={context}: skipped (KV {need / 1024**3:.1f} GiB does not fit)")
                continue
            state = model.new_decode_batch(batch, context)
            step = partial(model.decode_step, state)
            eager = clock.time(step, 2, plan.reps)
            point = {"batch": batch, "context": context, "eager_seconds": eager.seconds,
                     "eager_samples": eager.samples}
            if cuda:
                graph = capture_graph(torch, step)
                t = clock.time(graph.replay, 3, max(plan.reps, 10))
                point.update(t.as_dict(), cuda_graph=True)
                del graph
            else:
                point.update(eager.as_dict(), cuda_graph=False)
            points.append(point)
            progress.step(f"B={batch} ctx={context}: {point['seconds'] * 1e3:8.3f} ms"
                          f" (eager {eager.seconds * 1e3:8.3f} ms)")
            del state, step   # frees the KV cache before the next point allocates its own
    return points, skipped


def measure_swap(torch, device, shape: ModelShape, clock: Clock, plan: SweepPlan, copier, seed: int) -> dict:
    """All swap points; a path that fails its byte check is reported and not timed."""
    cuda = device.type == "cuda"
    stream = torch.cuda.Stream() if cuda else None
    result: dict = {"copier": copier.description, "points": [], "verified": {}, "failed": {}}
    paths = ["per_block", "staged"] + (["batched_memcpy"] if copier.has_batched else [])
    rigs = [(shape.copy_bytes, plan.swap_blocks)] + [
        (size, (plan.swap_copy_size_blocks,)) for size in plan.swap_copy_sizes]
    total = sum(len(paths if size == shape.copy_bytes else ["per_block"]) * len(blocks) * 2
                for size, blocks in rigs)
    progress = Progress("swap", total)
    ctx = torch.cuda.stream(stream) if cuda else nullcontext()
    with ctx:
        for copy_bytes, blocks in rigs:
            max_n = max(blocks)
            rig = SwapRig(torch, device, shape.layers, copy_bytes, gpu_blocks=2 * max_n + 8,
                          cpu_blocks=max_n + max_n // 4 + 4, max_blocks=max_n, copier=copier,
                          stream=stream, seed=seed)
            rig_paths = paths if copy_bytes == shape.copy_bytes else ["per_block"]
            for path in rig_paths:
                key = f"{path}@{copy_bytes}"
                try:
                    rig.verify(path, min(8, max_n))
                    result["verified"][key] = True
                except Exception as exc:  # report the broken path, keep measuring the others
                    result["failed"][key] = f"{type(exc).__name__}: {exc}"
                    for _ in range(len(blocks) * 2):
                        progress.step(f"{path} {copy_bytes} B/copy: FAILED ({exc})")
                    continue
                for n in blocks:
                    pick = rig.pick(n)
                    for to_host in (True, False):
                        t = clock.time(partial(getattr(rig, path), pick, to_host), plan.warmup, plan.reps)
                        copies = n * shape.layers * 2
                        result["points"].append({
                            "path": path, "direction": "out" if to_host else "in", "blocks": n,
                            "copy_bytes": copy_bytes, "copies": copies, "bytes": copies * copy_bytes,
                            **t.as_dict()})
                        progress.step(f"{path:14s} {'out' if to_host else 'in ':3s} n={n:4d} "
                                      f"{copy_bytes:6d} B/copy: {t.seconds * 1e3:9.3f} ms")
            del rig
            if cuda:
                torch.cuda.empty_cache()
    return result


# --------------------------------------------------------------------------------------------
# The cost-model formulas, as agreed with vllm_cfs.sim.cost_model (TP 1 here)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelNumbers:
    """What the cost model needs of a model, for the model that actually ran."""
    layers: int
    hidden: int
    params: int
    weight_bytes: int
    kv_bytes_per_token: int

    @classmethod
    def from_dict(cls, model: dict) -> "ModelNumbers":
        return cls(model["layers"], model["hidden"], model["params"], model["weight_bytes"],
                   model["kv_bytes_per_token"])


def prefill_flops(m: ModelNumbers, seq_lens) -> float:
    return 2 * m.params * sum(seq_lens) + 4 * m.layers * m.hidden * sum(t * t for t in seq_lens) / 2


def predict_prefill(p: dict, m: ModelNumbers, seq_lens) -> float:
    tokens = sum(seq_lens)
    eff = p["prefill_flops_efficiency"] * tokens / (tokens + p["prefill_half_efficiency_tokens"])
    return max(prefill_flops(m, seq_lens) / (p["peak_flops"] * eff),
               m.weight_bytes / (p["hbm_bytes_per_s"] * p["decode_bandwidth_efficiency"]))


def predict_decode(p: dict, m: ModelNumbers, batch: int, context: int) -> float:
    read = m.weight_bytes + m.kv_bytes_per_token * batch * context
    return max(read / (p["hbm_bytes_per_s"] * p["decode_bandwidth_efficiency"]),
               2 * m.params * batch / (p["peak_flops"] * p["decode_flops_efficiency"]))


def predict_swap(p: dict, copies: int, total_bytes: int) -> float:
    return (copies * p["swap_copy_overhead_s"]
            + total_bytes / (p["host_link_bytes_per_s"] * p["swap_bandwidth_efficiency"]))


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


@dataclass
class Fit:
    values: dict                                   # profile keys set by the fit
    notes: dict = field(default_factory=dict)      # per key: how it was set
    proposed: dict | None = None                   # a formula change the data support, if any


def _grid_pick(loss: np.ndarray, grids: list[np.ndarray], base: list[float]) -> list[float]:
    """Arg-min of loss over the grids; among equally good cells, the one nearest the base values
    (relative distance), so that a factor the data cannot see keeps its base value."""
    best = loss.min()
    ties = np.argwhere(loss <= best * (1 + 1e-9) + 1e-15)
    dist = sum(((np.asarray([g[i] for i in ties[:, k]]) - b) / max(abs(b), 1e-12)) ** 2
               for k, (g, b) in enumerate(zip(grids, base)))
    cell = ties[int(np.argmin(dist))]
    return [float(g[i]) for g, i in zip(grids, cell)]


def fit_decode(points: list[dict], m: ModelNumbers, base: dict) -> dict:
    batch = np.array([p["batch"] for p in points], float)
    context = np.array([p["context"] for p in points], float)
    measured = np.array([p["seconds"] for p in points])
    read = m.weight_bytes + m.kv_bytes_per_token * batch * context
    flops = 2 * m.params * batch
    bw = np.arange(0.30, 1.0001, 0.0025)
    fl = np.arange(0.05, 1.0001, 0.0025)
    t = np.maximum((read / base["hbm_bytes_per_s"])[None, None, :] / bw[:, None, None],
                   (flops / base["peak_flops"])[None, None, :] / fl[None, :, None])
    loss = (np.log(t / measured) ** 2).sum(-1)
    dbe, dfe = _grid_pick(loss, [bw, fl], [base["decode_bandwidth_efficiency"], base["decode_flops_efficiency"]])
    return {"decode_bandwidth_efficiency": dbe, "decode_flops_efficiency": dfe}


def fit_prefill(points: list[dict], m: ModelNumbers, base: dict, decode_bandwidth_efficiency: float) -> dict:
    tokens = np.array([p["tokens"] for p in points], float)
    flops = np.array([prefill_flops(m, p["seq_lens"]) for p in points])
    measured = np.array([p["seconds"] for p in points])
    floor = m.weight_bytes / (base["hbm_bytes_per_s"] * decode_bandwidth_efficiency)
    eff = np.arange(0.20, 1.0001, 0.0025)
    half = np.arange(0.0, 4096.0 + 1, 8.0)
    ramp = tokens[None, :] / (tokens[None, :] + half[:, None])             # [half, points]
    t = np.maximum(flops / base["peak_flops"] / (eff[:, None, None] * ramp[None]), floor)
    loss = (np.log(t / measured) ** 2).sum(-1)
    pfe, h = _grid_pick(loss, [eff, half], [base["prefill_flops_efficiency"], base["prefill_half_efficiency_tokens"]])
    return {"prefill_flops_efficiency": pfe, "prefill_half_efficiency_tokens": int(round(h))}


def _relative_nnls(columns: np.ndarray, t: np.ndarray, fixed: np.ndarray | float = 0.0) -> np.ndarray:
    """Non-negative x minimising sum(((columns @ x + fixed - t) / t)^2): least squares of
    relative error, solved on every subset of the (at most three) columns."""
    a = columns / t[:, None]
    target = (t - fixed) / t
    best, best_loss = np.zeros(a.shape[1]), float((target ** 2).sum())
    for mask in itertools.product((False, True), repeat=a.shape[1]):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        sol, *_ = np.linalg.lstsq(a[:, idx], target, rcond=None)
        if (sol < 0).any():
            continue
        x = np.zeros(a.shape[1])
        x[idx] = sol
        loss = float(((a @ x - target) ** 2).sum())
        if loss < best_loss:
            best, best_loss = x, loss
    return best


def fit_swap(points: list[dict], host_link: float, call_layers: int | None = None) -> dict:
    """t = copies * swap_copy_overhead_s + bytes / (host_link * swap_bandwidth_efficiency).

    Linear in (overhead, 1 / efficiency): non-negative least squares of relative error. With
    call_layers, a third term 2 * layers * swap_call_overhead_s (one swap_blocks call per layer
    for K and for V, whatever the block count) is fitted too: the proposed formula change.
    """
    t = np.array([p["seconds"] for p in points])
    nbytes = np.array([p["bytes"] for p in points], float)
    columns = [np.array([p["copies"] for p in points], float), nbytes]
    if call_layers is not None:
        columns.append(np.full_like(t, 2 * call_layers))
    x = _relative_nnls(np.stack(columns, 1), t)
    efficiency = 1.0 / (x[1] * host_link) if x[1] > 0 else math.inf
    if efficiency > 1.0:
        # faster than the measured link: an efficiency is a fraction, so pin it at 1 and let the
        # other terms take the rest
        efficiency, x[1] = 1.0, 1.0 / host_link
        others = [i for i in range(len(columns)) if i != 1]
        x[others] = _relative_nnls(np.stack([columns[i] for i in others], 1), t, fixed=nbytes * x[1])
    fitted = {"swap_copy_overhead_s": float(x[0]), "swap_bandwidth_efficiency": float(efficiency)}
    if call_layers is not None:
        fitted["swap_call_overhead_s"] = float(x[2])
    return fitted


def predict_swap_with_calls(p: dict, layers: int, copies: int, total_bytes: int) -> float:
    """The proposed swap formula: predict_swap plus 2 * layers * swap_call_overhead_s."""
    return 2 * layers * p["swap_call_overhead_s"] + predict_swap(p, copies, total_bytes)


def fit_profile(raw: dict, base: dict) -> Fit:
    """Fit the profile's factors to the measured medians of `raw`, starting from `base`."""
    m = ModelNumbers.from_dict(raw["model"])
    values, notes = {}, {}
    values["memory_bytes"] = raw["environment"]["memory_bytes"] or base["memory_bytes"]
    notes["memory_bytes"] = "measured: total memory the device reports"
    ceilings = raw.get("ceilings", {})
    if "host_to_device" in ceilings and "device_to_host" in ceilings:
        values["host_link_bytes_per_s"] = (ceilings["host_to_device"]["bytes_per_s"]
                                           + ceilings["device_to_host"]["bytes_per_s"]) / 2
        notes["host_link_bytes_per_s"] = "measured: one 512 MiB pinned copy, mean of the two directions"
    host_link = values.get("host_link_bytes_per_s", base["host_link_bytes_per_s"])

    decode = raw.get("decode") or []
    if decode:
        values.update(fit_decode(decode, m, base))
        notes["decode_bandwidth_efficiency"] = notes["decode_flops_efficiency"] = (
            f"fitted on {len(decode)} decode points (grid search, least squares of log error)")
    dbe = values.get("decode_bandwidth_efficiency", base["decode_bandwidth_efficiency"])
    prefill = raw.get("prefill") or []
    if prefill:
        values.update(fit_prefill(prefill, m, base, dbe))
        notes["prefill_flops_efficiency"] = notes["prefill_half_efficiency_tokens"] = (
            f"fitted on {len(prefill)} prefill points (grid search, least squares of log error)")
    per_block = [p for p in (raw.get("swap") or {}).get("points", []) if p["path"] == "per_block"]
    if per_block:
        values.update(fit_swap(per_block, host_link))
        notes["swap_copy_overhead_s"] = notes["swap_bandwidth_efficiency"] = (
            f"fitted on {len(per_block)} per_block swap points (linear least squares of relative error)")
        proposed = fit_swap(per_block, host_link, call_layers=m.layers)
        link = {"host_link_bytes_per_s": host_link}
        errors = [abs(_pct(predict_swap_with_calls({**proposed, **link}, m.layers, p["copies"], p["bytes"]),
                           p["seconds"])) for p in per_block]
        current = [abs(_pct(predict_swap({**values, **link}, p["copies"], p["bytes"]), p["seconds"]))
                   for p in per_block]
        proposal = {
            "formula": "swap time = 2 * layers * swap_call_overhead_s + copies * swap_copy_overhead_s"
                       " + n * block_bytes / (host_link_bytes_per_s * swap_bandwidth_efficiency)",
            "why": "vLLM 0.9 calls swap_blocks once per layer for K and once for V whatever the block "
                   "count; that fixed cost dominates swaps of a few blocks",
            "values": proposed,
            "median_abs_error_pct": statistics.median(errors),
            "current_formula_median_abs_error_pct": statistics.median(current),
        }
    else:
        proposal = None
    for key in ("gpu_link_bytes_per_s", "allreduce_latency_s", "allreduce_bandwidth_efficiency"):
        notes[key] = "kept from the base profile: one GPU measured, no all-reduce"
    notes["step_overhead_s"] = "kept from the base profile: engine overhead needs vLLM, not measured here"
    notes["non_kv_overhead_bytes"] = "kept from the base profile (measured CUDA context size is under measured.memory)"
    for key in ("hbm_bytes_per_s", "peak_flops"):
        notes[key] = "datasheet, so that the fitted efficiencies compare across GPUs"
    return Fit(values, notes, proposal)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def load_base_profile(path: Path | None) -> dict:
    if path is None:
        path = SHIPPED_H200_PROFILE if SHIPPED_H200_PROFILE.exists() else None
    if path is None:
        return dict(DATASHEET_H200)
    try:
        profile = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"cannot read base profile {path}: {exc}") from exc
    missing = [k for k in PROFILE_KEYS if k not in profile]
    if missing:
        raise CalibrationError(f"base profile {path} lacks keys: {', '.join(missing)}")
    return profile


def build_profile(raw: dict, base: dict, fit: Fit, name: str) -> dict:
    env = raw["environment"]
    day = env["date"][:10]
    profile = {k: base[k] for k in PROFILE_KEYS}
    profile.update(fit.values)
    profile["name"] = name
    profile["description"] = (f"{env['gpu']}, efficiencies and swap overheads fitted to "
                              f"CodeLlama-34B-shaped measurements ({raw['model']['layers']} layers)")
    profile["source"] = (f"measured on {env['gpu']} (driver {env['driver']}, torch {env['torch']}, "
                         f"CUDA {env['cuda']}) by benchmarks/calibrate_gpu.py, {day}")
    profile["measured"] = {k: raw.get(k) for k in (
        "environment", "model", "settings", "ceilings", "memory", "prefill", "decode",
        "decode_skipped", "swap", "errors")}
    profile["calibration"] = {
        "base_profile": base["name"],
        "base_values": {k: base[k] for k in sorted(fit.values)},
        "notes": fit.notes,
    }
    if fit.proposed:
        profile["calibration"]["proposed_formula_change"] = fit.proposed
    return profile


def _pct(pred: float, meas: float) -> float:
    return 100.0 * (pred - meas) / meas


def comparison_rows(raw: dict, profiles: dict[str, dict]) -> dict[str, list[dict]]:
    """Every measured point with each profile's prediction, by family (local formulas)."""
    m = ModelNumbers.from_dict(raw["model"])
    rows: dict[str, list[dict]] = {"prefill": [], "decode": [], "swap": []}
    for p in raw.get("prefill") or []:
        label = f"{len(p['seq_lens'])} x {p['seq_lens'][0]}"
        rows["prefill"].append({"point": label, "measured": p["seconds"],
                                **{k: predict_prefill(pr, m, p["seq_lens"]) for k, pr in profiles.items()}})
    for p in raw.get("decode") or []:
        rows["decode"].append({"point": f"B={p['batch']} ctx={p['context']}", "measured": p["seconds"],
                               **{k: predict_decode(pr, m, p["batch"], p["context"]) for k, pr in profiles.items()}})
    for p in (raw.get("swap") or {}).get("points", []):
        if p["path"] != "per_block":
            continue
        rows["swap"].append({"point": f"{p['direction']} n={p['blocks']} {p['copy_bytes'] / 1024:g} KiB/copy",
                             "measured": p["seconds"],
                             **{k: predict_swap(pr, p["copies"], p["bytes"]) for k, pr in profiles.items()}})
    return rows


def median_abs_errors(rows: dict[str, list[dict]], names) -> dict[str, dict[str, float]]:
    return {fam: {n: statistics.median(abs(_pct(r[n], r["measured"])) for r in rs) for n in names}
            for fam, rs in rows.items() if rs}


def swap_paths_table(raw: dict) -> list[str]:
    """The three swap paths side by side at the model's own block size."""
    points = (raw.get("swap") or {}).get("points", [])
    copy_bytes = raw["model"]["copy_bytes"]
    by_key = {(p["path"], p["direction"], p["blocks"]): p["seconds"] for p in points
              if p["copy_bytes"] == copy_bytes}
    paths = [q for q in ("per_block", "batched_memcpy", "staged") if any(k[0] == q for k in by_key)]
    if "per_block" not in paths:
        return []
    lines = ["## swap paths compared", "",
             "| direction | blocks | MiB | " + " | ".join(f"{q} ms" for q in paths)
             + " | " + " | ".join(f"{q} speed-up" for q in paths[1:]) + " |",
             "|---|---:|---:|" + "---:|" * (2 * len(paths) - 1)]
    for direction in ("out", "in"):
        for n in sorted({k[2] for k in by_key if k[1] == direction}):
            base = by_key.get(("per_block", direction, n))
            cells = [by_key.get((q, direction, n)) for q in paths]
            mib = n * raw["model"]["block_bytes"] / 2**20
            lines.append(f"| {direction} | {n} | {mib:g} | "
                         + " | ".join("-" if c is None else f"{c * 1e3:.3f}" for c in cells) + " | "
                         + " | ".join("-" if c is None or base is None else f"{base / c:.1f}x" for c in cells[1:])
                         + " |")
    return lines + [""]


def render_table(raw: dict, rows: dict[str, list[dict]], names: list[str]) -> str:
    env = raw["environment"]
    lines = [f"# Measured vs predicted: {env['gpu']}, {env['date']}",
             "",
             f"Driver {env['driver']}, torch {env['torch']}, CUDA {env['cuda']}; model: "
             f"{raw['model']['layers']} CodeLlama-34B layers, random bf16 weights. Times in ms; "
             "error = (predicted - measured) / measured. Predictions from the formulas in "
             "benchmarks/calibrate_gpu.py (TP 1).", ""]
    medians = median_abs_errors(rows, names)
    for fam, rs in rows.items():
        if not rs:
            continue
        lines += [f"## {fam}", "",
                  "| point | measured | " + " | ".join(f"{n} | err %" for n in names) + " |",
                  "|---|---:|" + "---:|---:|" * len(names)]
        for r in rs:
            lines.append(f"| {r['point']} | {r['measured'] * 1e3:.3f} | " + " | ".join(
                f"{r[n] * 1e3:.3f} | {_pct(r[n], r['measured']):+.1f}" for n in names) + " |")
        lines += ["", "median absolute error: " + ", ".join(f"{n} {medians[fam][n]:.1f}%" for n in names), ""]
    return "\n".join(lines + swap_paths_table(raw))


def summary(profile: dict, medians: dict) -> str:
    lines = ["", "fitted profile:"]
    for key in ("memory_bytes", "host_link_bytes_per_s", "prefill_flops_efficiency",
                "prefill_half_efficiency_tokens", "decode_bandwidth_efficiency",
                "decode_flops_efficiency", "swap_copy_overhead_s", "swap_bandwidth_efficiency"):
        lines.append(f"  {key:32s} {profile[key]:.6g}")
    lines.append("median abs error (datasheet -> fitted): " + "; ".join(
        f"{fam} {m['datasheet']:.1f}% -> {m['fitted']:.1f}%" for fam, m in medians.items()))
    return "\n".join(lines)


def write_outputs(out: Path, raw: dict, base: dict, name: str) -> tuple[dict, str, dict]:
    """Fit, then write profile.json and table.md; returns the profile, the table and the medians."""
    profile = build_profile(raw, base, fit_profile(raw, base), name)
    names = ["datasheet", "fitted"]
    rows = comparison_rows(raw, {"datasheet": base, "fitted": profile})
    table = render_table(raw, rows, names)
    (out / "profile.json").write_text(json.dumps(profile, indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")
    return profile, table, median_abs_errors(rows, names)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def choose_layers(torch, device, requested: int | None) -> int:
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 1
    total = torch.cuda.get_device_properties(device).total_memory
    fixed = (2 * CODELLAMA_34B.vocab * CODELLAMA_34B.hidden + CODELLAMA_34B.hidden) * 2
    # weights in at most 55% of the card leave room for the decode KV caches
    fits = int((0.55 * total - fixed) // (CODELLAMA_34B.layer_params * 2))
    if fits < 1:
        raise CalibrationError(f"this GPU ({total / 1024**3:.1f} GiB) cannot hold one CodeLlama-34B layer")
    return min(CODELLAMA_34B.layers, fits)


def measure(args, torch, out: Path) -> dict:
    device = torch.device("cpu" if args.dry_run else "cuda")
    plan = DRY_PLAN if args.dry_run else QUICK_PLAN if args.quick else FULL_PLAN
    base_shape = TINY if args.dry_run else CODELLAMA_34B
    shape = base_shape.with_layers(choose_layers(torch, device, args.layers))
    torch.manual_seed(args.seed)
    env = describe_environment(torch, device)
    clock = Clock(torch, device)
    print(f"{env.gpu} (driver {env.driver}), torch {env.torch}, CUDA {env.cuda}", flush=True)
    if shape.layers < base_shape.layers:
        print(f"running {shape.layers} of {base_shape.layers} layers: weights and KV are per layer, "
              f"so times scale about linearly with layers ({base_shape.layers / shape.layers:.2f}x); "
              "the fit counts parameters and bytes of the model that ran, so its factors carry over",
              flush=True)

    # the swap extension compiles on the CPU while the GPU runs prefill and decode
    build_dir = Path(tempfile.mkdtemp(prefix="calib_swap_"))
    pool = concurrent.futures.ThreadPoolExecutor(1)
    copier_future = None
    if device.type == "cuda":
        prepare_build_environment(torch, device)
        copier_future = pool.submit(build_copier, torch, build_dir)

    max_positions = max([max(s) for s in plan.prefill] + [c + 1 for c in plan.decode_contexts])
    model = Decoder(torch, shape, device, max_positions)
    raw = {
        "schema": "vllm-cfs gpu calibration raw v1",
        "tool": "benchmarks/calibrate_gpu.py",
        "environment": asdict(env),
        "model": {"name": "CodeLlama-34B shapes, random bf16 weights", **shape.describe()},
        "settings": {"plan": "dry-run" if args.dry_run else "quick" if args.quick else "full",
                     "seed": args.seed, "warmup": plan.warmup, "reps": plan.reps,
                     "prefill_attention": f"scaled_dot_product_attention, causal, {model.attention_mode} K/V",
                     "decode_kv_cache": "contiguous per sequence (reads the same bytes as vLLM's paged cache)",
                     "decode_timing": "CUDA graph replay (vLLM 0.9 captures decode); eager_seconds beside it",
                     "timing": "CUDA events, median of repetitions, a sync after each" if device.type == "cuda"
                     else "host clock (CPU dry run: exercises the code, the figures mean nothing)",
                     "swap_stream": "a dedicated CUDA stream (cudaMemcpyBatchAsync refuses the legacy default stream)"},
        "errors": {},
    }
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info()
        raw["memory"] = {"total_bytes": total, "free_after_weights_bytes": free,
                         "torch_reserved_bytes": torch.cuda.memory_reserved(),
                         "outside_torch_bytes": total - free - torch.cuda.memory_reserved()}

    def save():
        (out / "raw.json").write_text(json.dumps(raw, indent=1) + "\n")

    def family(name: str, fn: Callable[[], None]) -> None:
        # one family failing (say, out of memory) must not cost the others: the device time is scarce
        try:
            fn()
        except Exception as exc:
            raw["errors"][name] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: FAILED: {raw['errors'][name]}", flush=True)
        save()

    def run_ceilings():
        raw["ceilings"] = measure_ceilings(torch, device, clock, args.quick)

    def run_prefill():
        raw["prefill"] = measure_prefill(torch, model, clock, plan)

    def run_decode():
        raw["decode"], raw["decode_skipped"] = measure_decode(torch, model, clock, plan)

    family("ceilings", run_ceilings)
    family("prefill", run_prefill)
    family("decode", run_decode)
    model = None   # frees the weights before the swap pools take their memory
    if device.type == "cuda":
        torch.cuda.empty_cache()

    def run_swap():
        if copier_future is None:
            copier, errors = LoopCopier("CPU dry run"), []
        else:
            try:
                copier, errors = copier_future.result(timeout=300)
            except concurrent.futures.TimeoutError:
                copier, errors = LoopCopier("the C++ build took over 5 minutes"), ["build timed out"]
        raw["swap_build_errors"] = errors
        print(f"swap copies: {copier.description}", flush=True)
        raw["swap"] = measure_swap(torch, device, shape, clock, plan, copier, args.seed)

    family("swap", run_swap)
    pool.shutdown(wait=False)
    return raw


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Measure prefill, decode and KV-swap latencies of CodeLlama-34B-shaped work on a "
                    "CUDA GPU and fit a simulated-GPU profile (writes raw.json, profile.json, table.md).")
    parser.add_argument("--out", type=Path, default=Path("calibration-out"), help="output folder (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a small sweep for a smoke run")
    parser.add_argument("--layers", type=int, help="decoder layers to build (default: all 48 if they fit in "
                                                   "55%% of the GPU's memory, else as many as do)")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU only: a tiny model and tiny sweeps through every code path except CUDA "
                             "events, graphs and the C++ copier; the figures mean nothing")
    parser.add_argument("--from-raw", type=Path, metavar="RAW_JSON",
                        help="measure nothing: fit and write profile.json and table.md from an earlier raw.json")
    parser.add_argument("--base-profile", type=Path,
                        help="profile whose datasheet figures and unfitted keys are used "
                             "(default: vllm_cfs/sim/profiles/h200.json, else built-in H200 datasheet figures)")
    parser.add_argument("--name", help="name of the fitted profile (default: h200-measured on an H200, "
                                       "else derived from the GPU name)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    args = parser.parse_args(argv)
    if args.layers is not None and not 1 <= args.layers <= CODELLAMA_34B.layers:
        parser.error(f"--layers must be between 1 and {CODELLAMA_34B.layers}, got {args.layers}")
    if args.from_raw and (args.dry_run or args.quick or args.layers):
        parser.error("--from-raw measures nothing: --dry-run, --quick and --layers do not apply")
    return args


def default_name(gpu: str) -> str:
    if "H200" in gpu.upper():
        return "h200-measured"
    slug = "".join(c if c.isalnum() else "-" for c in gpu.lower()).strip("-")
    return "-".join(filter(None, slug.split("-"))) + "-measured"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        base = load_base_profile(args.base_profile)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.from_raw:
            try:
                raw = json.loads(args.from_raw.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise CalibrationError(f"cannot read {args.from_raw}: {exc}") from exc
            if raw.get("schema") != "vllm-cfs gpu calibration raw v1":
                raise CalibrationError(f"{args.from_raw} is not a raw.json written by this script")
        else:
            import torch

            if not args.dry_run and not torch.cuda.is_available():
                raise CalibrationError("no CUDA GPU visible: use --dry-run for a CPU check, or --from-raw to refit")
            raw = measure(args, torch, args.out)
        name = args.name or ("cpu-dry-run" if raw["environment"]["device"] == "cpu"
                             else default_name(raw["environment"]["gpu"]))
        profile, table, medians = write_outputs(args.out, raw, base, name)
    except CalibrationError as exc:
        print(f"calibrate_gpu: error: {exc}", file=sys.stderr)
        return 2
    print(table)
    print(summary(profile, medians))
    if raw.get("errors"):
        print("families that failed: " + "; ".join(f"{k}: {v}" for k, v in raw["errors"].items()))
    print(f"wrote {args.out / 'raw.json'}, {args.out / 'profile.json'}, {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
