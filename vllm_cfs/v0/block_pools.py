"""A guard for a vLLM 0.9.0 V0 bug in freeing a request whose KV blocks are swapped out.

The V0 block manager takes its ``Block`` objects from the GPU allocator's object pool, and they
keep their pool ids when their blocks are swapped to CPU. Freeing such a request (a client that
disconnects while its request is swapped out) returns the objects through the CPU allocator,
whose own, smaller object pool files their ids as free. A later swap-out then hands out one of
those ids: ``IndexError`` past the end of the CPU pool, and the engine step dies; meanwhile the
GPU pool has lost the objects for good. Upstream's free of the physical CPU blocks is right, so
the guard lets it run and then moves the object ids back to the pool they came from.

No extension point reaches the allocators' object pools, hence the private attributes here; the
pin ``vllm==0.9.0`` holds them still, and tests/reliability checks both pools after the free.
"""

from __future__ import annotations

from typing import List

from vllm.core.block.interfaces import Block
from vllm.sequence import Sequence
from vllm.utils import Device


def blocks_on_cpu(block_manager, seq: Sequence) -> List[Block]:
    """The block objects of ``seq`` if its KV cache is swapped out to CPU, else none."""
    table = block_manager.block_tables.get(seq.seq_id)
    if table is None:
        return []
    num_gpu_blocks = block_manager.block_allocator.get_num_total_blocks(Device.GPU)
    # CpuGpuBlockAllocator numbers GPU blocks first, then CPU blocks.
    return [b for b in table.blocks if b.block_id is not None and b.block_id >= num_gpu_blocks]


def return_to_gpu_pool(block_manager, freed: List[Block]) -> None:
    """Move the object ids of ``freed`` (just freed from CPU) to the GPU allocator's pool."""
    allocators = block_manager.block_allocator._allocators
    cpu_pool = allocators[Device.CPU]._block_pool
    gpu_pool = allocators[Device.GPU]._block_pool
    for block in freed:
        # The free put the id at the front of the CPU pool's free list, so this finds it at once.
        cpu_pool._free_ids.remove(block.pool_id)
        gpu_pool.free_block(block)
