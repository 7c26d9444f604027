"""Minimal traces of scheduler bugs that the property tests found, kept as plain tests."""

from vllm_cfs.lab.trace import Pools, TraceDriver, TraceRequest, make_scheduler
from vllm_cfs.scheduler import CFSScheduler


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
