"""EOS on the simulated GPU: a reply ends at its true length, its cap, or (ignore_eos) the cap."""

import json

import pytest

from vllm_cfs.results import RequestRecord, RunResult
from vllm_cfs.sim.reply_length import reply_seed, reply_tokens_of, says_eos
from vllm_cfs.sim.replay import ReplayConfig, ReplayRequest, replay, to_run_result
from vllm_cfs.sim.sampler import TokenSampler

EOS = 2


def test_a_reply_seed_carries_the_length_and_other_seeds_carry_none():
    assert [reply_tokens_of(reply_seed(n)) for n in (1, 7, 2048, 2**32 - 1)] == [1, 7, 2048, 2**32 - 1]
    assert [reply_tokens_of(seed) for seed in (None, 0, 1234, 2**40 + 5, -3)] == [None] * 5
    assert reply_tokens_of(reply_seed(10) + 2) == 12  # vLLM V0's parallel sample 2
    with pytest.raises(ValueError, match="between 1 and"):
        reply_seed(0)


def test_the_sampler_says_eos_at_the_last_token_of_the_reply_only():
    sampler = TokenSampler(vocab_size=32000, eos_token_id=EOS)
    seed = reply_seed(5)
    tokens = [sampler.next_token(seed, seq_id=3, position=p, ignore_eos=False) for p in range(5)]
    assert tokens[:4] == [sampler.token(seed, 3, p) for p in range(4)] and EOS not in tokens[:4]
    assert tokens[4] == EOS
    assert sampler.next_token(seed, 3, 7, ignore_eos=False) == EOS  # EOS held back (min_tokens): it says it again
    assert EOS not in [sampler.next_token(seed, 3, p, ignore_eos=True) for p in range(10)]
    assert EOS not in [sampler.next_token(1234, 3, p, ignore_eos=False) for p in range(3000)]
    assert not says_eos(None, 0) and says_eos(reply_seed(1), 0)


@pytest.fixture(scope="module")
def capped_replay():
    prompt = tuple(range(100, 400))
    requests = [
        ReplayRequest(0.0, prompt, max_tokens=64, reply_tokens=9),  # EOS long before the cap
        ReplayRequest(0.0, prompt, max_tokens=12, reply_tokens=40),  # the cap comes first
        ReplayRequest(0.1, prompt, max_tokens=20),  # ignore_eos: exactly max_tokens
        ReplayRequest(0.1, prompt, max_tokens=30, reply_tokens=30),  # EOS is the cap's last token
    ]
    return requests, replay(requests, ReplayConfig(scheduler_cls="vllm_cfs.FairScheduler"))


def test_replies_end_at_eos_or_at_their_cap(capped_replay):
    _, result = capped_replay
    assert [t.output_tokens for t in result.requests] == [9, 12, 20, 30]
    assert [t.finish_reason for t in result.requests] == ["stop", "length", "length", "stop"]


def test_the_results_record_says_how_each_reply_ended(capped_replay):
    requests, result = capped_replay
    run = RunResult.from_json(to_run_result(result, requests).to_json())
    assert [(r.expected_output_tokens, r.output_tokens, r.ended_at_eos, r.ended_at_cap) for r in run.records] == [
        (64, 9, True, False), (12, 12, False, True), (20, 20, False, True), (30, 30, True, False)]
    assert [r.output_tokens_at_end for r in run.records] == [9, 12, 20, 30]


def test_results_files_from_before_the_finish_reason_still_load(capped_replay):
    requests, result = capped_replay
    document = to_run_result(result, requests).to_dict()
    for record in document["records"]:
        del record["finish_reason"]
    old = RunResult.from_json(json.dumps(document))
    assert [r.finish_reason for r in old.records] == [None] * 4
    assert not any(r.ended_at_eos or r.ended_at_cap for r in old.records)
    assert [r.output_tokens_at_end for r in old.records] == [64, 12, 20, 30]  # unknown: the cap
    assert RequestRecord.from_dict(document["records"][0]).output_tokens == 9


def test_the_analysis_counts_a_reply_that_ended_at_eos_as_complete_and_at_its_own_length(capped_replay):
    from vllm_cfs.analysis import evidence

    requests, result = capped_replay
    run = to_run_result(result, requests)
    assert evidence.all_outputs_complete(run)
    assert evidence.burst_kv_demand_tokens(run) == 4 * 300 + 9 + 12 + 20 + 30
    run.records[1].output_tokens = 11  # cut one token short of its cap, without EOS
    assert not evidence.all_outputs_complete(run)
