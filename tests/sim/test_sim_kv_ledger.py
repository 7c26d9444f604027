"""The KV ledger: the simulated GPU's check that the scheduler keeps KV where it says it is."""

import pytest

from vllm_cfs.sim.kv_ledger import KVCacheViolation, KVLedger, SeqWork


def prefill(request, seq_id, tokens, table):
    return SeqWork(request, seq_id, tokens, computed=0, new=len(tokens), block_table=table)


def decode(request, seq_id, tokens, table):
    return SeqWork(request, seq_id, tokens, computed=len(tokens) - 1, new=1, block_table=table)


@pytest.fixture
def ledger():
    return KVLedger(num_gpu_blocks=8, num_cpu_blocks=8, block_size=16)


A = list(range(100, 140))  # 40 tokens: blocks 0, 1 full, block 2 half
B = list(range(500, 520))


def test_run_swap_out_swap_in_run(ledger):
    ledger.run([prefill("a", 1, A, [0, 1, 2])])
    ledger.run([decode("a", 1, A + [7], [0, 1, 2])])
    ledger.swap_out([(0, 4), (1, 5), (2, 6)])
    batch = [decode("a", 1, A + [7, 8], [3, 5, 7])]
    ledger.swap_in([(4, 3), (5, 5), (6, 7)], batch)
    ledger.run(batch)


def test_running_a_swapped_out_sequence_is_caught(ledger):
    ledger.run([prefill("a", 1, A, [0, 1, 2])])
    ledger.swap_out([(0, 4), (1, 5), (2, 6)])
    with pytest.raises(KVCacheViolation, match=r"request a seq 1 reads GPU block 0 .*no KV cache"):
        ledger.run([decode("a", 1, A + [7], [0, 1, 2])])


def test_swap_in_over_live_kv_is_caught(ledger):
    ledger.run([prefill("a", 1, A, [0, 1, 2]), prefill("b", 2, B, [3, 4])])
    ledger.swap_out([(0, 0), (1, 1), (2, 2)])
    batch = [decode("a", 1, A + [7], [3, 5, 6]), decode("b", 2, B + [9], [3, 4])]
    with pytest.raises(KVCacheViolation, match=r"GPU block 3, which still holds the live KV of request b seq 2"):
        ledger.swap_in([(0, 3), (1, 5), (2, 6)], batch)


def test_overwritten_block_is_caught_on_the_next_read(ledger):
    ledger.run([prefill("a", 1, A, [0, 1, 2])])
    ledger.run([prefill("b", 2, B, [2, 3])])  # the block manager gave a's block 2 to b
    with pytest.raises(KVCacheViolation, match=r"request a seq 1 reads GPU block 2 .*different KV"):
        ledger.run([decode("a", 1, A + [7], [0, 1, 2])])


def test_copy_on_write_and_shared_prefix(ledger):
    ledger.run([prefill("a", 1, A, [0, 1, 2])])
    ledger.copy([(2, 3)])
    # A second sequence with the same 40-token prefix shares blocks 0, 1 and reads its copy of block 2.
    ledger.run([decode("a", 1, A + [7], [0, 1, 2]), decode("a", 9, A + [8], [0, 1, 3])])


def test_block_numbers_out_of_range(ledger):
    with pytest.raises(KVCacheViolation, match=r"CPU block 8, but the CPU cache has blocks 0..7"):
        ledger.swap_out([(0, 8)])
