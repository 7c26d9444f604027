"""Staged KV swap: a handful of large copies instead of one tiny copy per block, layer, K and V.

vLLM 0.9.0 keeps one GPU tensor per layer with K and V side by side, and swaps by issuing a
`cudaMemcpyAsync` per block per layer for K and again for V: at TP 2 a CodeLlama-34B block is 96
copies of 16 KiB, each paying a fixed cost that dwarfs its transfer time. Here the device cache
is one allocation for all layers (each layer still a tensor of vLLM's shape), the host cache is
*block-major* — one pinned tensor `[cpu_blocks, layers, 2, elems]`, so that a block's K and V of
every layer lie in one contiguous span — and a swap

  out: gathers the blocks from every layer into a GPU staging buffer laid out like the host cache
       (one device-local kernel), then copies each run of consecutive host blocks in one transfer;
  in:  copies each run of host blocks into the staging buffer, then scatters it (one kernel).

Plain torch only, so the same code runs on CPU tensors here and on a real GPU without vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class KVLayout:
    """Where the block index sits in one layer's KV tensor: vLLM's CUDA backends put it after the
    K/V axis (`[2, blocks, ...]`: FlashAttention, XFormers); FlashInfer puts it first (`[blocks, 2, ...]`)."""

    block_dim: int

    def __post_init__(self):
        if self.block_dim not in (0, 1):
            raise ValueError(f"block_dim must be 0 or 1, not {self.block_dim}")

    def blocks_axis(self, device_cache: torch.Tensor) -> tuple[torch.Tensor, int]:
        """A `[layers, 2, blocks, elems]` or `[layers, blocks, 2, elems]` view of the all-layer
        cache (no copy), and its block axis."""
        view = device_cache.view(device_cache.shape[0], device_cache.shape[1], device_cache.shape[2], -1)
        return view, 1 + self.block_dim

    def staged_view(self, stage: torch.Tensor) -> torch.Tensor:
        """The staging buffer `[blocks, layers, 2, elems]` seen in the device cache's axis order."""
        return stage.permute(1, 2, 0, 3) if self.block_dim == 1 else stage.permute(1, 0, 2, 3)


def device_cache(num_layers: int, layer_shape: Sequence[int], dtype: torch.dtype, device) -> torch.Tensor:
    """Every layer's KV in one allocation, `[layers, *layer_shape]`: each layer is still a contiguous
    tensor of vLLM's shape, and one kernel can gather a block from all layers at once."""
    return torch.zeros((num_layers, *layer_shape), dtype=dtype, device=device)


def host_cache(num_blocks: int, num_layers: int, block_elems: int, dtype: torch.dtype,
               pin_memory: bool) -> torch.Tensor:
    """The block-major host cache: `[blocks, layers, 2, elems]`, pinned where a GPU will copy into it."""
    return torch.zeros((num_blocks, num_layers, 2, block_elems), dtype=dtype, pin_memory=pin_memory)


def consecutive_runs(ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """(position, first id, length) of each run of consecutive ids, in order of position."""
    runs: list[tuple[int, int, int]] = []
    for pos, block in enumerate(ids):
        if runs and runs[-1][1] + runs[-1][2] == block:
            start, first, length = runs[-1]
            runs[-1] = (start, first, length + 1)
        else:
            runs.append((pos, block, 1))
    return runs


class StagedCopier:
    """Moves whole blocks (all layers, K and V) between the all-layer device cache and a block-major host cache.

    `staging_blocks` bounds the device staging buffer; larger swaps go through it in chunks.
    With a `stream`, the device-to-host transfers of a swap-out run on it and overlap whatever the
    caller's stream does next; every later use of the staging buffer or the host cache waits for them.
    """

    def __init__(self, device_cache: torch.Tensor, host: torch.Tensor, layout: KVLayout,
                 staging_blocks: int, stream: torch.cuda.Stream | None = None):
        if staging_blocks < 1:
            raise ValueError("staging_blocks must be at least 1")
        self.layout = layout
        self.blocks, self.block_axis = layout.blocks_axis(device_cache)
        layers, elems = self.blocks.shape[0], self.blocks.shape[3]
        if host.shape[1:] != (layers, 2, elems) or host.dtype != self.blocks.dtype:
            raise ValueError(f"host cache {tuple(host.shape)} {host.dtype} does not match the device "
                             f"cache {tuple(device_cache.shape)} {device_cache.dtype}")
        self.host = host
        self.device = device_cache.device
        self.staging = torch.empty((staging_blocks, layers, 2, elems), dtype=host.dtype, device=self.device)
        self.stream = stream
        self._transfers_done: torch.cuda.Event | None = None

    @property
    def staging_blocks(self) -> int:
        return self.staging.shape[0]

    def swap_out(self, device_ids: Sequence[int], host_ids: Sequence[int]) -> None:
        """Copy device blocks `device_ids[i]` to host blocks `host_ids[i]`."""
        for index, host in self._chunks(device_ids, host_ids):
            stage = self.staging[: len(host)]
            self._wait_for_transfers()
            torch.index_select(self.blocks, self.block_axis, index, out=self.layout.staged_view(stage))
            self._transfer(lambda: self._runs_to_host(stage, host))

    def swap_in(self, host_ids: Sequence[int], device_ids: Sequence[int]) -> None:
        """Copy host blocks `host_ids[i]` to device blocks `device_ids[i]`."""
        for index, host in self._chunks(device_ids, host_ids):
            stage = self.staging[: len(host)]
            self._wait_for_transfers()
            for pos, first, length in consecutive_runs(host):
                stage[pos: pos + length].copy_(self.host[first: first + length], non_blocking=True)
            self.blocks.index_copy_(self.block_axis, index, self.layout.staged_view(stage))

    def synchronize(self) -> None:
        """Wait until every transfer issued so far has landed (for callers that read the host cache)."""
        if self._transfers_done is not None:
            self._transfers_done.synchronize()
        elif self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def _chunks(self, device_ids, host_ids):
        """(device index tensor, host ids) per staging-sized chunk, sorted by host block so that
        neighbours on the host become one copy."""
        if len(device_ids) != len(host_ids):
            raise ValueError(f"{len(device_ids)} device blocks but {len(host_ids)} host blocks")
        if not host_ids:
            return
        host_sorted, device_sorted = zip(*sorted(zip(host_ids, device_ids)))
        # one index upload per swap, asynchronous: a synchronous one per chunk would stall the
        # host until the previous chunk's transfer ends, and the next chunk's launches with it
        index = torch.tensor(device_sorted, dtype=torch.int64)
        if self.device.type == "cuda":
            index = index.pin_memory().to(self.device, non_blocking=True)
        step = self.staging_blocks
        for start in range(0, len(host_sorted), step):
            yield index[start: start + step], list(host_sorted[start: start + step])

    def _runs_to_host(self, stage: torch.Tensor, host_ids: list[int]) -> None:
        for pos, first, length in consecutive_runs(host_ids):
            self.host[first: first + length].copy_(stage[pos: pos + length], non_blocking=True)

    def _transfer(self, copies) -> None:
        if self.stream is None:
            copies()
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            copies()
            self._transfers_done = self.stream.record_event()

    def _wait_for_transfers(self) -> None:
        """Staging and host cache are shared with the side stream's transfers still in flight."""
        if self._transfers_done is not None:
            torch.cuda.current_stream(self.device).wait_event(self._transfers_done)
