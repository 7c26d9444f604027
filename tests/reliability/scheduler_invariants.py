"""What must hold of a V0 scheduler's queues and KV block pools, checked on the live objects.

``SchedulerChecker`` is attached to a ``TraceDriver``: ``at_schedule`` sees each step as the
worker would (the block tables it would run with, the swaps it would copy), ``after_step`` sees
the queues and pools once the step's tokens have been recorded, ``at_end`` the final state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List

from vllm.sequence import SequenceGroup, SequenceStatus
from vllm.utils import Device

from vllm_cfs.lab.trace import BLOCK_SIZE, TraceDriver
from vllm_cfs.v0.adapter import vruntime

QUEUE_STATUS = {
    "waiting": SequenceStatus.WAITING,
    "running": SequenceStatus.RUNNING,
    "swapped": SequenceStatus.SWAPPED,
}


@dataclass
class SchedulerChecker:
    driver: TraceDriver
    # A request that has generated nothing must be prefilled (or ignored) within this many
    # scheduling steps of first reaching the head of the waiting queue; None: no bound checked.
    head_wait_bound: int | None = None
    # Request id -> the scheduling step after which it was first seen at the head of waiting.
    head_since: Dict[str, int] = field(default_factory=dict)
    longest_head_wait: int = 0
    steps_checked: int = 0
    swap_out_blocks: int = 0
    swap_in_blocks: int = 0
    max_swapped: int = 0

    def __post_init__(self) -> None:
        self.driver.on_schedule = self.at_schedule

    @property
    def scheduler(self):
        return self.driver.scheduler

    @property
    def num_gpu_blocks(self) -> int:
        return self.scheduler.block_manager.block_allocator.get_num_total_blocks(Device.GPU)

    @property
    def num_cpu_blocks(self) -> int:
        return self.scheduler.block_manager.block_allocator.get_num_total_blocks(Device.CPU)

    def on_gpu(self, block_id: int) -> bool:
        # The allocator numbers GPU blocks first, then CPU blocks (CpuGpuBlockAllocator.create).
        return block_id < self.num_gpu_blocks

    # ------------------------------------------------------------------ during the step

    def at_schedule(self, metadata, outputs) -> None:
        """The worker's view: every sequence it would run has its whole KV in GPU blocks."""
        running_ids = {g.request_id for g in self.scheduler.running}
        for scheduled, meta in zip(outputs.scheduled_seq_groups, metadata):
            group = scheduled.seq_group
            assert group.request_id == meta.request_id
            assert group.request_id in running_ids, f"{group.request_id} scheduled but not running"
            for seq in group.get_seqs(status=SequenceStatus.RUNNING):
                table = meta.block_tables[seq.seq_id]
                assert all(self.on_gpu(b) for b in table), (
                    f"{group.request_id} would run with CPU blocks {table}")
                assert len(table) * BLOCK_SIZE >= seq.get_len(), (
                    f"{group.request_id} would run {seq.get_len()} tokens in {len(table)} blocks")
        # vLLM's worker swaps in before it swaps out: a GPU block both written by a swap-in and
        # read by a swap-out in one step would send the wrong KV to CPU memory.
        swapped_in_to = {dst for _, dst in outputs.blocks_to_swap_in}
        swapped_out_from = {src for src, _ in outputs.blocks_to_swap_out}
        assert not swapped_in_to & swapped_out_from, (
            f"blocks {sorted(swapped_in_to & swapped_out_from)} swapped in and out in one step")
        assert len(swapped_in_to) == len(outputs.blocks_to_swap_in)
        assert len(swapped_out_from) == len(outputs.blocks_to_swap_out)
        self.swap_out_blocks += len(outputs.blocks_to_swap_out)
        self.swap_in_blocks += len(outputs.blocks_to_swap_in)

    # ------------------------------------------------------------------ after the step

    def live_groups(self) -> Dict[str, SequenceGroup]:
        return {rid: g for rid, g in self.driver.groups.items() if not g.is_finished()}

    def after_step(self) -> None:
        self.steps_checked += 1
        self._check_queues()
        self._check_block_pools()
        self._check_head_wait()
        self.max_swapped = max(self.max_swapped, len(self.scheduler.swapped))

    def _check_queues(self) -> None:
        """Each live request sits in exactly one queue, with the status that queue implies."""
        scheduler = self.scheduler
        seen = Counter()
        for name, status in QUEUE_STATUS.items():
            for group in getattr(scheduler, name):
                seen[group.request_id] += 1
                assert all(seq.status == status for seq in group.seqs), (
                    f"{group.request_id} in {name} with {[s.status for s in group.seqs]}")
        assert all(count == 1 for count in seen.values()), (
            f"in more than one queue: {[r for r, c in seen.items() if c > 1]}")
        assert set(seen) == set(self.live_groups()), (
            f"lost: {set(self.live_groups()) - set(seen)}, stale: {set(seen) - set(self.live_groups())}")

    def _check_block_pools(self) -> None:
        """free + held = total on each device, "held" read from the live sequences' block tables."""
        bm = self.scheduler.block_manager
        held_gpu: List[int] = []
        held_cpu: List[int] = []
        owners = set()
        for group in self.scheduler.running:
            for seq in group.get_seqs(status=SequenceStatus.RUNNING):
                table = bm.get_block_table(seq)
                assert all(self.on_gpu(b) for b in table), f"running {group.request_id} on CPU"
                # Every token whose KV has been computed has a GPU slot.
                assert len(table) * BLOCK_SIZE >= seq.data.get_num_computed_tokens()
                held_gpu += table
                owners.add(seq.seq_id)
        for group in self.scheduler.swapped:
            for seq in group.get_seqs(status=SequenceStatus.SWAPPED):
                table = bm.get_block_table(seq)
                assert table and not any(self.on_gpu(b) for b in table), (
                    f"swapped {group.request_id} holds GPU blocks {table}")
                assert len(table) * BLOCK_SIZE >= seq.data.get_num_computed_tokens()
                held_cpu += table
                owners.add(seq.seq_id)
        assert set(bm.block_tables) == owners, "a block table without a running or swapped owner"
        # Without prefix caching or beam forks no two sequences share a block.
        assert len(set(held_gpu)) == len(held_gpu) and len(set(held_cpu)) == len(held_cpu)
        assert bm.get_num_free_gpu_blocks() + len(held_gpu) == self.num_gpu_blocks
        assert bm.get_num_free_cpu_blocks() + len(held_cpu) == self.num_cpu_blocks

    def _check_head_wait(self) -> None:
        if self.head_wait_bound is None:
            return
        step = self.scheduler_steps
        waiting = self.scheduler.waiting
        still_waiting = {g.request_id for g in waiting if vruntime(g) == 0}
        for rid in list(self.head_since):
            if rid not in still_waiting:
                self.longest_head_wait = max(self.longest_head_wait, step - self.head_since.pop(rid))
        if waiting and vruntime(waiting[0]) == 0:
            self.head_since.setdefault(waiting[0].request_id, step)
        for rid, since in self.head_since.items():
            assert step - since < self.head_wait_bound, (
                f"{rid} reached the head of the waiting queue after step {since} and is still "
                f"waiting after step {step} (bound: {self.head_wait_bound} steps)")

    @property
    def scheduler_steps(self) -> int:
        return self.driver.step

    # ------------------------------------------------------------------ at the end

    def at_end(self) -> None:
        bm = self.scheduler.block_manager
        assert not self.scheduler.has_unfinished_seqs()
        assert not bm.block_tables
        assert bm.get_num_free_gpu_blocks() == self.num_gpu_blocks
        assert bm.get_num_free_cpu_blocks() == self.num_cpu_blocks
        # Only what went out can come back; aborts may leave swapped-out KV never swapped in.
        assert self.swap_in_blocks <= self.swap_out_blocks
        # Each allocator's block objects are all back in its own object pool, each once (vLLM
        # 0.9.0 alone files a swapped request's objects in the CPU pool when it is aborted).
        for device in (Device.GPU, Device.CPU):
            pool = bm.block_allocator._allocators[device]._block_pool
            assert sorted(pool._free_ids) == list(range(pool._pool_size)), f"{device.name} object pool"
