"""The CFS step's behaviour on real vLLM scheduler and block-manager objects."""

import random
import re

import pytest
from vllm.sequence import SequenceStatus
from vllm.utils import Device

from vllm_cfs.lab.trace import Pools, TraceDriver, TraceRequest, random_trace
from vllm_cfs.lab.variants import CFSForcedVictimsByVruntime
from vllm_cfs.v0.adapter import vruntime
from vllm_cfs.v0.scheduler import CFSScheduler


def assert_no_leak(scheduler, pools):
    assert scheduler.block_manager.get_num_free_gpu_blocks() == pools.num_gpu_blocks
    assert scheduler.block_manager.get_num_free_cpu_blocks() == pools.num_cpu_blocks


def run_until_cfs_step(driver, interval):
    """Step the driver until the step that is the next CFS step; return its outputs."""
    while True:
        outputs = driver.run_step()
        if driver.scheduler._steps % interval == 0:
            return outputs


def test_new_request_is_prefilled_within_one_interval_when_gpu_is_full(cfs_scheduler):
    interval = 10
    pools = Pools(num_gpu_blocks=64, num_cpu_blocks=512)
    hogs = [TraceRequest(f"hog{i}", 0, prompt_len=200, max_tokens=400) for i in range(4)]
    late = TraceRequest("late", 23, prompt_len=200, max_tokens=20)
    driver = TraceDriver(cfs_scheduler(interval, pools), hogs + [late])
    while driver.step < late.arrival_step:
        driver.run_step()
    bm = driver.scheduler.block_manager
    assert bm.get_num_free_gpu_blocks() < 200 / 16, "running requests should hold the GPU"
    assert not driver.scheduler.swapped

    outcomes = driver.run()
    assert outcomes["late"].ttft_steps <= interval
    assert all(o.output_tokens == r.max_tokens for r, o in zip(hogs + [late], (
        outcomes[r.request_id] for r in hogs + [late])))
    assert_no_leak(driver.scheduler, pools)


def test_victims_have_the_most_tokens_and_swap_out_matches_block_manager(cfs_scheduler):
    interval = 8
    pools = Pools(num_gpu_blocks=50, num_cpu_blocks=512)
    # Staggered arrivals give the running requests different vruntimes.
    trace = [TraceRequest(f"run{i}", 3 * i, prompt_len=150, max_tokens=300) for i in range(4)]
    trace.append(TraceRequest("new", 14, prompt_len=180, max_tokens=5))
    driver = TraceDriver(cfs_scheduler(interval, pools), trace)
    while driver.step <= 14:
        driver.run_step()
    scheduler = driver.scheduler
    assert scheduler._steps % interval != 0
    assert len(scheduler.running) == 4 and scheduler.waiting

    # Advance to the CFS step, recording the state just before it.
    while (scheduler._steps + 1) % interval != 0:
        driver.run_step()
    running_before = {g.request_id: g for g in scheduler.running}
    tokens_before = {rid: vruntime(g) for rid, g in running_before.items()}
    gpu_tables = {rid: list(scheduler.block_manager.get_block_table(g.first_seq))
                  for rid, g in running_before.items()}
    outputs = driver.run_step()

    victims = [g.request_id for g in scheduler.swapped]
    assert victims, "the CFS step should have swapped someone out"
    survivors = set(running_before) - set(victims)
    assert min(tokens_before[v] for v in victims) >= max(tokens_before[s] for s in survivors)
    assert all(g.first_seq.status == SequenceStatus.SWAPPED for g in scheduler.swapped)

    allocator = scheduler.block_manager.block_allocator
    physical = lambda device, ids: sorted(allocator.get_physical_block_id(device, b)  # noqa: E731
                                          for b in ids)
    moved_from = sorted(src for src, _ in outputs.blocks_to_swap_out)
    assert moved_from == physical(Device.GPU, [b for v in victims for b in gpu_tables[v]])
    moved_to = sorted(dst for _, dst in outputs.blocks_to_swap_out)
    assert moved_to == physical(Device.CPU, [
        b for g in scheduler.swapped for b in scheduler.block_manager.get_block_table(g.first_seq)])
    assert "new" in [s.seq_group.request_id for s in outputs.scheduled_seq_groups]
    assert outputs.num_prefill_groups == 1

    outcomes = driver.run()
    assert {rid: o.output_tokens for rid, o in outcomes.items()} == {
        r.request_id: r.max_tokens for r in trace}
    assert scheduler.cfs_stats.blocks_swapped_in == scheduler.cfs_stats.blocks_swapped_out > 0
    assert_no_leak(scheduler, pools)


def test_swapped_victims_come_back_and_finish_without_leaks(cfs_scheduler):
    for seed in range(4):
        rng = random.Random(seed)
        trace = random_trace(rng, 40, max_arrival_step=120, prompt_lens=(20, 300),
                             max_tokens=(10, 300))
        pools = Pools(num_gpu_blocks=90, num_cpu_blocks=2048)
        driver = TraceDriver(cfs_scheduler(10, pools), trace)
        outcomes = driver.run()
        stats = driver.scheduler.cfs_stats
        assert stats.preempted_by_swap > 0 and stats.swap_space_full_fallbacks == 0
        assert stats.blocks_swapped_in == stats.blocks_swapped_out
        assert {rid: o.output_tokens for rid, o in outcomes.items()} == {
            r.request_id: r.max_tokens for r in trace}
        assert_no_leak(driver.scheduler, pools)


def forced_victims(scheduler_factory, cls, steps=150):
    """Between CFS steps, each step's evicted requests' tokens and the most any kept request had."""
    interval = 10
    rng = random.Random(0)
    # Every request stays for the whole run and the GPU holds about half of them, so between
    # CFS steps the decodes keep running out of blocks and vLLM's own step must preempt.
    trace = [TraceRequest(f"r{i}", 0, prompt_len=rng.randint(32, 256), max_tokens=100_000)
             for i in range(64)]
    pools = Pools(num_gpu_blocks=256, num_cpu_blocks=4096)
    driver = TraceDriver(scheduler_factory(interval, pools, cls), trace)
    scheduler = driver.scheduler
    forced = []
    for _ in range(steps):
        tokens_before = {g.request_id: vruntime(g) for g in scheduler.running}
        outputs = driver.run_step()
        running = {g.request_id for g in scheduler.running}
        evicted = [tokens_before[rid] for rid in tokens_before if rid not in running]
        kept = [tokens_before[rid] for rid in tokens_before if rid in running]
        assert outputs.preempted == len(evicted)
        if scheduler._steps % interval and evicted and kept:
            forced.append((evicted, max(kept)))
    return forced


def test_shipped_cfs_leaves_forced_victims_to_upstream(cfs_scheduler):
    # Upstream's default step mostly evicts the requests it admitted last, the fairest ones.
    forced = forced_victims(cfs_scheduler, CFSScheduler)
    assert len(forced) >= 10
    fairest_evicted = sum(min(evicted) < most_kept for evicted, most_kept in forced)
    assert fairest_evicted > len(forced) // 2, (fairest_evicted, len(forced))


def test_variant_evicts_the_most_tokens_between_cfs_steps(cfs_scheduler):
    forced = forced_victims(cfs_scheduler, CFSForcedVictimsByVruntime)
    assert len(forced) >= 10
    assert all(min(evicted) >= most_kept for evicted, most_kept in forced)


def test_full_cpu_swap_space_falls_back_to_recompute(cfs_scheduler):
    rng = random.Random(7)
    trace = random_trace(rng, 30, max_arrival_step=60, prompt_lens=(50, 200), max_tokens=(50, 200))
    pools = Pools(num_gpu_blocks=60, num_cpu_blocks=12)
    driver = TraceDriver(cfs_scheduler(5, pools), trace)
    outcomes = driver.run()
    stats = driver.scheduler.cfs_stats
    assert stats.swap_space_full_fallbacks > 0
    assert stats.preempted_by_recompute >= stats.swap_space_full_fallbacks
    assert {rid: o.output_tokens for rid, o in outcomes.items()} == {
        r.request_id: r.max_tokens for r in trace}
    assert_no_leak(driver.scheduler, pools)


def test_recompute_mode_sends_victims_back_to_waiting(cfs_scheduler):
    rng = random.Random(3)
    trace = random_trace(rng, 30, max_arrival_step=80, prompt_lens=(50, 200), max_tokens=(50, 200))
    pools = Pools(num_gpu_blocks=60, num_cpu_blocks=512, preemption_mode="recompute")
    driver = TraceDriver(cfs_scheduler(10, pools), trace)
    while not driver.done:
        outputs = driver.run_step()
        assert not outputs.blocks_to_swap_out and not outputs.blocks_to_swap_in
        assert not driver.scheduler.swapped
    stats = driver.scheduler.cfs_stats
    assert stats.preempted_by_recompute > 0 and stats.preempted_by_swap == 0
    assert {rid: o.output_tokens for rid, o in driver.outcomes.items()} == {
        r.request_id: r.max_tokens for r in trace}
    assert_no_leak(driver.scheduler, pools)


def test_cfs_steps_happen_every_interval_and_counters_are_per_instance(cfs_scheduler):
    pools = Pools(num_gpu_blocks=64, num_cpu_blocks=64)
    trace = [TraceRequest("a", 0, 32, 100)]
    first = TraceDriver(cfs_scheduler(7, pools), trace)
    second = TraceDriver(cfs_scheduler(3, pools), trace)
    for _ in range(50):
        first.run_step()
    second.run_step()
    assert first.scheduler.cfs_stats.cfs_steps == 50 // 7
    assert second.scheduler.cfs_stats.cfs_steps == 0
    assert second.scheduler._steps == 1


def test_new_arrivals_prefill_while_victims_are_swapped(cfs_scheduler):
    interval = 10
    pools = Pools(num_gpu_blocks=70, num_cpu_blocks=512)
    trace = [TraceRequest(f"hog{i}", 0, prompt_len=192, max_tokens=300) for i in range(5)]
    trace.append(TraceRequest("evictor", 5, prompt_len=200, max_tokens=200))
    driver = TraceDriver(cfs_scheduler(interval, pools), trace)
    run_until_cfs_step(driver, interval)
    scheduler = driver.scheduler
    assert scheduler.swapped, "the CFS step should leave a victim in the swapped queue"
    # A small arrival right after the CFS step fits in the free blocks: it must not wait for
    # the swapped victim to come back, nor for the next CFS step.
    driver.trace = list(driver.trace)
    small = TraceRequest("small", driver.step, prompt_len=16, max_tokens=3)
    driver._pending.append(small)
    free_before = scheduler.block_manager.get_num_free_gpu_blocks()
    assert free_before > 2
    driver.run_step()
    assert driver.outcomes["small"].first_token_step == small.arrival_step


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", " -3 "])
def test_bad_interval_is_refused_with_one_line(cfs_scheduler, value):
    from vllm_cfs.v0.scheduler import CFSConfigError

    with pytest.raises(CFSConfigError) as excinfo:
        cfs_scheduler(value, Pools(num_gpu_blocks=8, num_cpu_blocks=8))
    message = str(excinfo.value)
    assert "CFS_INTERVAL" in message and repr(value) in message and "\n" not in message


def test_default_interval_is_ten(monkeypatch):
    from vllm_cfs.lab.trace import make_scheduler
    from vllm_cfs.v0.scheduler import CFSScheduler

    monkeypatch.delenv("CFS_INTERVAL", raising=False)
    scheduler = make_scheduler(CFSScheduler, Pools(num_gpu_blocks=8, num_cpu_blocks=8))
    assert scheduler.cfs_interval == 10


def test_chunked_prefill_and_multi_step_are_refused(monkeypatch):
    from vllm.config import CacheConfig, SchedulerConfig

    from vllm_cfs.v0.scheduler import CFSConfigError, CFSScheduler

    monkeypatch.setenv("CFS_INTERVAL", "10")
    cache = CacheConfig(block_size=16, gpu_memory_utilization=1.0, swap_space=0, cache_dtype="auto")
    cache.num_gpu_blocks, cache.num_cpu_blocks = 64, 64
    chunked = SchedulerConfig(max_num_batched_tokens=512, max_num_seqs=8, max_model_len=2048,
                              enable_chunked_prefill=True)
    with pytest.raises(CFSConfigError, match="chunked-prefill"):
        CFSScheduler(chunked, cache, None)
    multi = SchedulerConfig(max_num_batched_tokens=2048, max_num_seqs=8, max_model_len=2048,
                            enable_chunked_prefill=False, num_scheduler_steps=4)
    with pytest.raises(CFSConfigError, match="multi-step"):
        CFSScheduler(multi, cache, None)
    # With CFS off, the scheduler is upstream's and accepts what upstream accepts.
    monkeypatch.setenv("CFS_INTERVAL", "0")
    assert CFSScheduler(chunked, cache, None).cfs_interval == 0


def test_bad_min_granularity_is_refused(cfs_scheduler, monkeypatch):
    from vllm_cfs.v0.scheduler import CFSConfigError

    monkeypatch.setenv("CFS_MIN_GRANULARITY", "many")
    with pytest.raises(CFSConfigError, match="CFS_MIN_GRANULARITY='many'"):
        cfs_scheduler(10, Pools(num_gpu_blocks=8, num_cpu_blocks=8))


@pytest.mark.parametrize("granularity", [0, 30])
def test_swapped_request_waits_for_a_whole_time_slice(cfs_scheduler, monkeypatch, granularity):
    """Two requests share a GPU that holds one: they trade it only when one is ahead enough."""
    monkeypatch.setenv("CFS_MIN_GRANULARITY", str(granularity))
    pools = Pools(num_gpu_blocks=16, num_cpu_blocks=64)
    trace = [TraceRequest("a", 0, prompt_len=150, max_tokens=60),
             TraceRequest("b", 1, prompt_len=150, max_tokens=60)]
    driver = TraceDriver(cfs_scheduler(5, pools), trace)
    leads = []
    while not driver.done:
        before = {rid: vruntime(g) for rid, g in driver.groups.items()}
        running_before = {g.request_id for g in driver.scheduler.running}
        outputs = driver.run_step()
        if outputs.blocks_to_swap_out:
            (victim,) = [g.request_id for g in driver.scheduler.swapped
                         if g.request_id in running_before]
            (other,) = set(before) - {victim}
            leads.append(before[victim] - before[other])
    assert leads, "the two requests should have traded the GPU"
    # The first trade is for b's prefill (no granularity for new arrivals); later ones wait.
    assert all(lead >= granularity for lead in leads[1:])
    if granularity == 0:
        assert len(leads) > 120 // 5 // 2
    else:
        assert len(leads) <= 120 // granularity + 1
    assert {o.output_tokens for o in driver.outcomes.values()} == {60}
    assert_no_leak(driver.scheduler, pools)


def test_settings_plugin_refuses_bad_values_before_the_engine(monkeypatch):
    from vllm_cfs.plugin import check_cfs_settings

    monkeypatch.delenv("CFS_INTERVAL", raising=False)
    monkeypatch.delenv("CFS_MIN_GRANULARITY", raising=False)
    check_cfs_settings()  # nothing set: nothing to refuse
    monkeypatch.setenv("CFS_INTERVAL", "20")
    check_cfs_settings()
    monkeypatch.setenv("CFS_MIN_GRANULARITY", "-2")
    with pytest.raises(SystemExit, match=r"^error: CFS_MIN_GRANULARITY='-2' is invalid"):
        check_cfs_settings()
    monkeypatch.delenv("CFS_MIN_GRANULARITY")
    for bad, says in (("0", "VLLM_CFS_STAGING_BLOCKS=0 is invalid: the staged swap needs at least one block"),
                      ("many", "VLLM_CFS_STAGING_BLOCKS='many' is invalid")):
        monkeypatch.setenv("VLLM_CFS_STAGING_BLOCKS", bad)
        with pytest.raises(SystemExit, match=rf"^error: {re.escape(says)}"):
            check_cfs_settings()
    monkeypatch.setenv("VLLM_CFS_STAGING_BLOCKS", "64")
    check_cfs_settings()
