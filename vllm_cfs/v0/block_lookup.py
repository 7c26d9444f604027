"""Swap mappings without a sort per block: a table lookup for vLLM 0.9.0's physical block ids.

The V0 block manager numbers blocks across both devices (GPU blocks first, then CPU blocks). To
build ``blocks_to_swap_out`` and ``blocks_to_swap_in`` it turns every swapped block's number
into the block's index on its own device with ``CpuGpuBlockAllocator.get_physical_block_id``,
and vLLM's device allocators answer by sorting their whole block-id set and searching it, on
every call: swapping a request costs its block count times a sort of the pool. An allocator's
id set is fixed when it is created (a frozenset), so the answer for an id never changes.
``IndexedBlockAllocator`` computes it once per device, by upstream's own definition (the id's
position in the sorted id set of that device's allocator), and each lookup reads the table.

The seam. ``Scheduler.__init__`` builds its block manager through fixed names (the static
``BlockSpaceManager.get_block_space_manager_class``, then ``CpuGpuBlockAllocator.create`` inside
``SelfAttnBlockSpaceManager.__init__``); neither can be chosen per scheduler class without
patching vLLM for all its users. So ``CFSScheduler.__init__`` replaces the block manager that
upstream has just built, still empty, with one of the same settings (``with_indexed_lookup``):
an ``IndexedBlockSpaceManager``, vLLM's own block manager whose ``block_allocator`` attribute
wraps the allocator that upstream's ``__init__`` creates as it is assigned, before the trackers
built after it take a reference. Only the lookup differs: the device allocators, their block
pools and every line of the block manager are upstream's. The price is a second build of the
block pools at start-up, about 1 s of CPU per 40 000 blocks on the 2-core development machine.
"""

from __future__ import annotations

from typing import Dict

from vllm.core.block.cpu_gpu_block_allocator import CpuGpuBlockAllocator
from vllm.core.block.interfaces import BlockId
from vllm.core.block_manager import SelfAttnBlockSpaceManager
from vllm.core.interfaces import BlockSpaceManager
from vllm.utils import Device


class IndexedBlockAllocator(CpuGpuBlockAllocator):
    """vLLM's CPU/GPU allocator with each device's physical block ids computed once."""

    def __init__(self, cpu_block_allocator, gpu_block_allocator) -> None:
        super().__init__(cpu_block_allocator=cpu_block_allocator,
                         gpu_block_allocator=gpu_block_allocator)
        self.physical_ids: Dict[Device, Dict[BlockId, int]] = {
            device: {block_id: index
                     for index, block_id in enumerate(sorted(allocator.all_block_ids))}
            for device, allocator in self._allocators.items()
        }

    @classmethod
    def wrapping(cls, allocator: CpuGpuBlockAllocator) -> "IndexedBlockAllocator":
        """One over the device allocators of a fresh ``allocator`` (nothing swapped yet)."""
        return cls(cpu_block_allocator=allocator._allocators[Device.CPU],
                   gpu_block_allocator=allocator._allocators[Device.GPU])

    def get_physical_block_id(self, device: Device, absolute_id: int) -> int:
        """Overridden to read the table: upstream sorts the device's whole id set on every call."""
        return self.physical_ids[device][absolute_id]


class IndexedBlockSpaceManager(SelfAttnBlockSpaceManager):
    """vLLM's V0 block manager, its allocator an ``IndexedBlockAllocator``."""

    @property
    def block_allocator(self) -> IndexedBlockAllocator:
        return self._indexed_allocator

    @block_allocator.setter
    def block_allocator(self, allocator: CpuGpuBlockAllocator) -> None:
        """Overridden to wrap the allocator that upstream's ``__init__`` creates and sets."""
        if not isinstance(allocator, IndexedBlockAllocator):
            allocator = IndexedBlockAllocator.wrapping(allocator)
        self._indexed_allocator = allocator


def with_indexed_lookup(block_manager: BlockSpaceManager) -> BlockSpaceManager:
    """An ``IndexedBlockSpaceManager`` with the settings of a fresh ``block_manager``.

    Any other kind of block manager (vLLM's placeholder, for pooling or attention-free models,
    swaps nothing) is returned as it is.
    """
    if type(block_manager) is not SelfAttnBlockSpaceManager:
        return block_manager
    return IndexedBlockSpaceManager(
        block_size=block_manager.block_size,
        num_gpu_blocks=block_manager.num_total_gpu_blocks,
        num_cpu_blocks=block_manager.num_total_cpu_blocks,
        watermark=block_manager.watermark,
        sliding_window=block_manager.sliding_window,
        enable_caching=block_manager.enable_caching,
    )
