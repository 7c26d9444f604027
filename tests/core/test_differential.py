"""CFS_INTERVAL=0 must be vLLM's own scheduler: identical outputs and queues at every step."""

import random

import pytest
from vllm.core.scheduler import Scheduler

from vllm_cfs.lab.trace import Pools, TraceDriver, make_scheduler, random_trace


def snapshot(outputs, scheduler):
    ids = lambda groups: [g.request_id for g in groups]  # noqa: E731
    return {
        "scheduled": [(s.seq_group.request_id, s.token_chunk_size)
                      for s in outputs.scheduled_seq_groups],
        "num_prefill_groups": outputs.num_prefill_groups,
        "num_batched_tokens": outputs.num_batched_tokens,
        "blocks_to_swap_in": list(outputs.blocks_to_swap_in),
        "blocks_to_swap_out": list(outputs.blocks_to_swap_out),
        "blocks_to_copy": list(outputs.blocks_to_copy),
        "ignored": ids(outputs.ignored_seq_groups),
        "num_lookahead_slots": outputs.num_lookahead_slots,
        "running_queue_size": outputs.running_queue_size,
        "preempted": outputs.preempted,
        "waiting": ids(scheduler.waiting),
        "running": ids(scheduler.running),
        "swapped": ids(scheduler.swapped),
        "free_gpu": scheduler.block_manager.get_num_free_gpu_blocks(),
        "free_cpu": scheduler.block_manager.get_num_free_cpu_blocks(),
    }


@pytest.mark.parametrize("preemption_mode", ["swap", "recompute", None])
@pytest.mark.parametrize("seed", range(6))
def test_interval_zero_matches_upstream_step_by_step(cfs_scheduler, seed, preemption_mode):
    rng = random.Random(seed)
    trace = random_trace(rng, rng.randint(10, 40), max_arrival_step=rng.randint(0, 150),
                         prompt_lens=(1, 300), max_tokens=(1, 200))
    # GPU pools small enough to force preemption; CPU large enough that upstream never dies.
    pools = Pools(num_gpu_blocks=rng.randint(24, 80), num_cpu_blocks=4096,
                  max_num_seqs=rng.choice([4, 16, 256]), preemption_mode=preemption_mode)
    upstream = TraceDriver(make_scheduler(Scheduler, pools), trace)
    ours = TraceDriver(cfs_scheduler(0, pools), trace)

    preemptions = 0
    while not upstream.done:
        expected = snapshot(upstream.run_step(), upstream.scheduler)
        actual = snapshot(ours.run_step(), ours.scheduler)
        assert actual == expected, f"step {upstream.step - 1} differs"
        preemptions += expected["preempted"]
        assert upstream.step < 20_000
    assert ours.done
    assert {k: (o.first_token_step, o.finish_step, o.output_tokens)
            for k, o in ours.outcomes.items()} == {
        k: (o.first_token_step, o.finish_step, o.output_tokens)
        for k, o in upstream.outcomes.items()}
    # The comparison is only meaningful if the trace exercised preemption.
    assert preemptions > 0
