"""Minimal traces of scheduler bugs that the property tests found, kept as plain tests."""

from scheduler_invariants import SchedulerChecker
from vllm.utils import Device

from vllm_cfs.lab.trace import Pools, TraceDriver, TraceRequest, make_scheduler
from vllm_cfs.v0.fair import FairScheduler
from vllm_cfs.v0.scheduler import CFSScheduler


def test_recompute_victim_at_queue_head_does_not_take_a_new_arrivals_room(monkeypatch):
    """Shrunk by hypothesis from a random trace (test_scheduler_properties).

    One sequence slot, five GPU blocks, no CPU blocks. r0 fills the GPU; at step 11 upstream's
    default step cannot grow it and preempts it by recompute, to the head of the waiting queue,
    in front of r1, which has waited there since step 1. The CFS step 12 counts r1 (vruntime 0)
    first and r0 (vruntime 10) second, finds no victim needed for r1 and none possible for r0.
    It used to sort the waiting queue only when it chose victims, so the prefill pass took r0
    first, in queue order, and r1 waited past the interval. r1 must be prefilled at step 12.
    """
    monkeypatch.setenv("CFS_INTERVAL", "12")
    monkeypatch.delenv("CFS_MIN_GRANULARITY", raising=False)
    pools = Pools(num_gpu_blocks=5, num_cpu_blocks=0, max_num_seqs=1, max_model_len=128,
                  max_num_batched_tokens=128, preemption_mode="swap")
    trace = [TraceRequest("r0", 0, prompt_len=56, max_tokens=12),
             TraceRequest("r1", 0, prompt_len=1, max_tokens=1)]
    driver = TraceDriver(make_scheduler(CFSScheduler, pools), trace)
    while driver.step < 11:
        driver.run_step()
    assert [g.request_id for g in driver.scheduler.waiting] == ["r0", "r1"]
    assert driver.scheduler.cfs_stats.preempted_by_recompute == 1

    outputs = driver.run_step()  # scheduling step 12: a CFS step
    assert [s.seq_group.request_id for s in outputs.scheduled_seq_groups] == ["r1"]
    outcomes = driver.run()
    assert outcomes["r1"].first_token_step == 11  # the driver counts steps from 0
    assert {rid: o.output_tokens for rid, o in outcomes.items()} == {"r0": 12, "r1": 1}


def _object_pools(scheduler):
    allocators = scheduler.block_manager.block_allocator._allocators
    return allocators[Device.GPU]._block_pool, allocators[Device.CPU]._block_pool


def test_abort_while_swapped_then_swap_out_again(monkeypatch):
    """Found by the property tests (4000-trace search): a vLLM 0.9.0 bug, guarded by free_seq.

    The V0 block manager's Block objects come from the GPU allocator's BlockPool (4 objects per
    GPU block) and keep their pool ids when swapped to CPU. Aborting a request while it is
    swapped out frees those objects through the CPU allocator, whose BlockPool (4 per CPU
    block) took their ids into its free list. Here: GPU blocks 12 (pool ids 0-47), CPU blocks 2
    (pool ids 0-7); "small" holds objects 10 and 11, is swapped out at step 2 and aborted; when
    "c" was swapped out later, the CPU pool handed out id 11 and indexed past its 8 objects.
    In a server: a client that disconnects while its request is swapped out, then a later
    swap-out, with a CPU pool small next to the GPU one: the engine step raised IndexError.
    """
    monkeypatch.setenv("CFS_INTERVAL", "2")
    monkeypatch.delenv("CFS_MIN_GRANULARITY", raising=False)
    pools = Pools(num_gpu_blocks=12, num_cpu_blocks=2, preemption_mode="swap")
    trace = [TraceRequest("big", 0, prompt_len=150, max_tokens=5),
             TraceRequest("small", 0, prompt_len=20, max_tokens=60),
             TraceRequest("hog", 10, prompt_len=170, max_tokens=20),
             TraceRequest("c", 10, prompt_len=10, max_tokens=40)]
    driver = TraceDriver(make_scheduler(CFSScheduler, pools), trace)
    gpu_pool, cpu_pool = _object_pools(driver.scheduler)
    gpu_objects, cpu_objects = len(gpu_pool._free_ids), len(cpu_pool._free_ids)
    driver.run_step()
    driver.run_step()
    assert [g.request_id for g in driver.scheduler.swapped] == ["small"]
    held = [b.pool_id for b in driver.scheduler.block_manager.block_tables[
        driver.scheduler.swapped[0].seqs[0].seq_id].blocks]
    driver.abort("small")
    assert set(held) <= set(gpu_pool._free_ids) and not set(held) & set(cpu_pool._free_ids)
    outcomes = driver.run()
    assert driver.scheduler.cfs_stats.preempted_by_swap >= 2
    assert {rid: o.output_tokens for rid, o in outcomes.items() if rid != "small"} == \
        {"big": 5, "hog": 20, "c": 40}
    bm = driver.scheduler.block_manager
    assert bm.get_num_free_gpu_blocks() == 12 and bm.get_num_free_cpu_blocks() == 2
    # Every block object is back in the pool it came from, each id once.
    assert sorted(gpu_pool._free_ids) == list(range(gpu_objects))
    assert sorted(cpu_pool._free_ids) == list(range(cpu_objects))


def test_fair_patience_is_a_budget_per_newcomer(monkeypatch):
    """Found by the property tests (random exploration, 2026-11-30); the drawn trace as it was.

    Seven GPU blocks, no CPU blocks, patience 8; eight prompts over the length limit are
    ignored, six one-token requests pass. From step 22 the newcomer r13 waits at the head for
    the room of r2's second sample, 8 tokens from its end; at step 30 upstream's decode step
    preempts that sample (by recompute) to grow r15, which ends within 8 steps too, so
    FairScheduler held r13 back again: 11 steps at the head, past patience + 2. Patience now
    counts from the step a newcomer was first held back, whoever it was waiting for.
    """
    monkeypatch.setenv("FAIR_PATIENCE_TOKENS", "8")
    pools = Pools(num_gpu_blocks=7, num_cpu_blocks=0, max_num_seqs=4, max_model_len=64,
                  max_num_batched_tokens=64, preemption_mode="swap")
    too_long, one_token = (3, 4, 5, 6, 14, 16, 17, 18, 19), (0, 1, 7, 8, 9, 10, 11, 12)
    trace = ([TraceRequest(f"r{i}", 0, prompt_len=65, max_tokens=4) for i in too_long]
             + [TraceRequest(f"r{i}", 0, prompt_len=1, max_tokens=1) for i in one_token]
             + [TraceRequest("r15", 0, prompt_len=24, max_tokens=28),
                TraceRequest("r2", 12, prompt_len=33, max_tokens=9, n=2),
                TraceRequest("r13", 13, prompt_len=49, max_tokens=1)])
    driver = TraceDriver(make_scheduler(FairScheduler, pools), trace)
    checker = SchedulerChecker(driver, head_wait_bound=8 + 2)
    while not driver.done:
        driver.run_step()
        checker.after_step()
    checker.at_end()
    assert driver.scheduler.cfs_stats.preempted_by_recompute >= 1  # the sample r13 waited for
    assert driver.outcomes["r13"].output_tokens == 1
