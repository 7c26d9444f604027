"""GPU and pinned-host KV pools, and three ways of swapping blocks of 16 tokens between them:

  per_block       vLLM 0.9's pattern: for every layer, for K and for V, one cudaMemcpyAsync per
                  block (issued from C++, see copiers);
  batched_memcpy  the same copies in one cudaMemcpyBatchAsync call (CUDA >= 12.8);
  staged          gather the blocks into a contiguous buffer, then one copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
