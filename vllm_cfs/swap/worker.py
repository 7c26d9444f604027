"""vLLM 0.9.0 V0 glue for the staged swap: `--worker-cls vllm_cfs.swap.StagedSwapWorker`.

The worker and its cache engines are vLLM's own; only where the host cache lives and how a swap
is copied change. The staging buffer is carved out of the GPU's KV budget, so the memory vLLM
profiled stays the memory in use.
"""

from __future__ import annotations

import torch
from vllm.config import CacheConfig, DeviceConfig, ModelConfig, ParallelConfig
from vllm.logger import init_logger
from vllm.utils import is_pin_memory_available
from vllm.worker.cache_engine import CacheEngine
from vllm.worker.worker import Worker
from vllm.utils import bind_kv_cache

from vllm_cfs.settings import staged_swap_blocks
from vllm_cfs.swap.copy_engine import KVLayout, StagedCopier, device_cache, host_cache

logger = init_logger(f"vllm.{__name__}")


def kv_layout(attn_backend, num_blocks: int, block_size: int, num_kv_heads: int, head_size: int) -> KVLayout:
    """The backend's block axis, read from its own cache shape; one-tensor caches (MLA) cannot be staged."""
    shape = tuple(attn_backend.get_kv_cache_shape(num_blocks, block_size, num_kv_heads, head_size))
    for block_dim in (0, 1):
        if shape[block_dim] == num_blocks and shape[1 - block_dim] == 2:
            return KVLayout(block_dim)
    raise ValueError(f"staged swap needs separate K and V blocks; {attn_backend.get_name()} caches are {shape}")


def _has_stride_order(attn_backend) -> bool:
    try:
        order = attn_backend.get_kv_cache_stride_order()
    except (AttributeError, NotImplementedError):
        return False
    return tuple(order) != tuple(range(len(order)))


class StagedCacheEngine(CacheEngine):
    """vLLM's cache engine with an all-layer device cache, a block-major pinned host cache and a staged copier."""

    def __init__(self, cache_config: CacheConfig, model_config: ModelConfig, parallel_config: ParallelConfig,
                 device_config: DeviceConfig, staging_blocks: int) -> None:
        self.device_cache: torch.Tensor | None = None
        self.host_cache: torch.Tensor | None = None
        super().__init__(cache_config, model_config, parallel_config, device_config)
        layout = kv_layout(self.attn_backend, self.num_gpu_blocks, self.block_size, self.num_kv_heads, self.head_size)
        on_gpu = self.device_cache.device.type == "cuda"
        self.copier = StagedCopier(self.device_cache, self.host_cache, layout, staging_blocks,
                                   stream=torch.cuda.Stream(self.device_cache.device) if on_gpu else None)

    def _allocate_kv_cache(self, num_blocks: int, device: str) -> list[torch.Tensor]:
        """One allocation per cache, each layer's entry a view: all layers on the device (so that one
        kernel gathers a block from every layer), block-major on the host (so a block is one span)."""
        if self.device_cache is None:  # vLLM allocates the device cache first, the host cache second
            if _has_stride_order(self.attn_backend):
                raise ValueError(f"staged swap does not support {self.attn_backend.get_name()}'s permuted cache layout")
            shape = self.attn_backend.get_kv_cache_shape(num_blocks, self.block_size, self.num_kv_heads, self.head_size)
            self.device_cache = device_cache(self.num_attention_layers, shape, self.dtype, device)
            return list(self.device_cache.unbind(0))
        elems = self.block_size * self.num_kv_heads * self.head_size
        self.host_cache = host_cache(num_blocks, self.num_attention_layers, elems, self.dtype,
                                     pin_memory=is_pin_memory_available())
        return [self.host_cache[:, layer] for layer in range(self.num_attention_layers)]

    def swap_in(self, src_to_dst: torch.Tensor) -> None:
        """All of a step's blocks in a few large copies instead of one per block, layer and K/V."""
        host, device = src_to_dst.t().tolist()
        self.copier.swap_in(host, device)

    def swap_out(self, src_to_dst: torch.Tensor) -> None:
        """All of a step's blocks in a few large copies instead of one per block, layer and K/V."""
        device, host = src_to_dst.t().tolist()
        self.copier.swap_out(device, host)


class StagedSwapWorker(Worker):
    """vLLM's GPU worker whose swaps go through StagedCacheEngine."""

    def determine_num_available_blocks(self) -> tuple[int, int]:
        """The staging buffer holds whole KV blocks, so it costs exactly that many GPU blocks."""
        num_gpu_blocks, num_cpu_blocks = super().determine_num_available_blocks()
        return max(num_gpu_blocks - staged_swap_blocks(), 0), num_cpu_blocks

    def _init_cache_engine(self) -> None:
        """Builds StagedCacheEngines where vLLM builds CacheEngines; binding to the model is unchanged."""
        staging = staged_swap_blocks()
        self.cache_engine = [
            StagedCacheEngine(self.cache_config, self.model_config, self.parallel_config, self.device_config, staging)
            for _ in range(self.parallel_config.pipeline_parallel_size)
        ]
        self.gpu_cache = [engine.gpu_cache for engine in self.cache_engine]
        bind_kv_cache(self.compilation_config.static_forward_context, self.gpu_cache)
        logger.info("staged swap: %d-block staging buffer, block-major pinned host cache", staging)
