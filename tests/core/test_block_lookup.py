"""The table lookup of physical block ids (vllm_cfs/v0/block_lookup.py) against vLLM's sorted one.

vLLM's ``CpuGpuBlockAllocator.get_physical_block_id`` asks the device allocator, which sorts
its whole id set on every call; ours reads a table built once. Both are asked about every block
of both devices of a real scheduler's allocator, while requests are swapped out and in and after
a request aborted while swapped has had its block objects moved between pools (block_pools.py).
"""

import random

import pytest
from vllm.core.block.cpu_gpu_block_allocator import CpuGpuBlockAllocator
from vllm.core.block.naive_block import NaiveBlockAllocator
from vllm.core.block.prefix_caching_block import PrefixCachingBlockAllocator
from vllm.core.block_manager import SelfAttnBlockSpaceManager
from vllm.utils import Device

from test_differential import snapshot
from vllm_cfs.v0 import scheduler as cfs_module
from vllm_cfs.v0.block_lookup import (IndexedBlockAllocator, IndexedBlockSpaceManager,
                                   with_indexed_lookup)
from vllm_cfs.lab.trace import Pools, TraceDriver, TraceRequest, random_trace


def assert_lookup_matches_upstream(block_manager) -> int:
    """Every block id of both devices: our answer is upstream's. Returns the ids checked."""
    allocator = block_manager.block_allocator
    checked = 0
    for device in (Device.GPU, Device.CPU):
        for block_id in allocator._allocators[device].all_block_ids:
            upstream = CpuGpuBlockAllocator.get_physical_block_id(allocator, device, block_id)
            assert allocator.get_physical_block_id(device, block_id) == upstream, (device, block_id)
            checked += 1
    return checked


def test_cfs_scheduler_block_manager_uses_the_table(cfs_scheduler, monkeypatch):
    """No sorted lookup anywhere in a run that swaps hundreds of blocks out and in."""
    def sorted_lookup(self, absolute_id):
        raise AssertionError("vLLM's sorted block-id lookup was called")

    monkeypatch.setattr(NaiveBlockAllocator, "get_physical_block_id", sorted_lookup)
    pools = Pools(num_gpu_blocks=60, num_cpu_blocks=600, preemption_mode="swap")
    rng = random.Random(3)
    trace = random_trace(rng, 30, max_arrival_step=40, prompt_lens=(20, 200), max_tokens=(20, 150))
    driver = TraceDriver(cfs_scheduler(4, pools), trace)
    block_manager = driver.scheduler.block_manager
    assert isinstance(block_manager, IndexedBlockSpaceManager)
    assert isinstance(block_manager.block_allocator, IndexedBlockAllocator)
    # Upstream's __init__ handed the allocator to its trackers after assigning it: ours, too.
    assert block_manager._computed_blocks_tracker._allocator is block_manager.block_allocator
    assert block_manager._last_access_blocks_tracker._allocator is block_manager.block_allocator
    driver.run()
    stats = driver.scheduler.cfs_stats
    assert stats.blocks_swapped_out > 100 and stats.blocks_swapped_in > 100


def test_lookup_matches_upstream_through_swaps_and_an_abort_while_swapped(cfs_scheduler):
    # The trace of tests/reliability's abort-while-swapped regression: "small" is swapped out at
    # step 2 and aborted, and free_seq's guard moves its block objects back to the GPU pool.
    pools = Pools(num_gpu_blocks=12, num_cpu_blocks=2, preemption_mode="swap")
    trace = [TraceRequest("big", 0, prompt_len=150, max_tokens=5),
             TraceRequest("small", 0, prompt_len=20, max_tokens=60),
             TraceRequest("hog", 10, prompt_len=170, max_tokens=20),
             TraceRequest("c", 10, prompt_len=10, max_tokens=40)]
    driver = TraceDriver(cfs_scheduler(2, pools), trace)
    block_manager = driver.scheduler.block_manager
    assert assert_lookup_matches_upstream(block_manager) == 14
    driver.run_step()
    driver.run_step()
    assert [g.request_id for g in driver.scheduler.swapped] == ["small"]
    driver.abort("small")
    assert assert_lookup_matches_upstream(block_manager) == 14
    swaps = 0
    while not driver.done:
        outputs = driver.run_step()
        swaps += len(outputs.blocks_to_swap_out) + len(outputs.blocks_to_swap_in)
        assert_lookup_matches_upstream(block_manager)
    assert swaps > 0 and driver.scheduler.cfs_stats.preempted_by_swap >= 2


@pytest.mark.parametrize("seed", range(4))
def test_swap_mappings_are_upstreams_step_by_step(cfs_scheduler, monkeypatch, seed):
    """CFS steps with our lookup and with upstream's: identical outputs, queues and pools."""
    rng = random.Random(seed)
    trace = random_trace(rng, rng.randint(20, 40), max_arrival_step=rng.randint(0, 100),
                         prompt_lens=(1, 300), max_tokens=(1, 200))
    pools = Pools(num_gpu_blocks=rng.randint(24, 80), num_cpu_blocks=rng.randint(300, 2000),
                  preemption_mode="swap")
    ours = TraceDriver(cfs_scheduler(5, pools), trace)
    monkeypatch.setattr(cfs_module, "with_indexed_lookup", lambda block_manager: block_manager)
    sorted_lookup = TraceDriver(cfs_scheduler(5, pools), trace)
    assert type(sorted_lookup.scheduler.block_manager) is SelfAttnBlockSpaceManager

    swapped_blocks = 0
    while not ours.done:
        expected = snapshot(sorted_lookup.run_step(), sorted_lookup.scheduler)
        actual = snapshot(ours.run_step(), ours.scheduler)
        assert actual == expected, f"step {ours.step - 1} differs"
        swapped_blocks += len(expected["blocks_to_swap_out"]) + len(expected["blocks_to_swap_in"])
        assert ours.step < 20_000
    assert sorted_lookup.done
    assert swapped_blocks > 0


@pytest.mark.parametrize("enable_caching, sliding_window", [(False, None), (True, None),
                                                             (False, 64)])
def test_with_indexed_lookup_keeps_the_settings(enable_caching, sliding_window):
    upstream = SelfAttnBlockSpaceManager(block_size=16, num_gpu_blocks=40, num_cpu_blocks=100,
                                         watermark=0.05, sliding_window=sliding_window,
                                         enable_caching=enable_caching)
    indexed = with_indexed_lookup(upstream)
    assert isinstance(indexed, IndexedBlockSpaceManager)
    for name in ("block_size", "num_total_gpu_blocks", "num_total_cpu_blocks", "watermark",
                 "watermark_blocks", "sliding_window", "max_block_sliding_window",
                 "enable_caching"):
        assert getattr(indexed, name) == getattr(upstream, name), name
    inner = PrefixCachingBlockAllocator if enable_caching else NaiveBlockAllocator
    assert all(type(indexed.block_allocator._allocators[device]) is inner
               for device in (Device.GPU, Device.CPU))
    assert assert_lookup_matches_upstream(indexed) == 140


def test_other_block_managers_are_left_alone():
    class Other:
        pass

    other = Other()
    assert with_indexed_lookup(other) is other
