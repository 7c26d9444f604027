"""Tokens left, from what a scheduler can know: exact under ignore_eos, else the replies finished so far."""

import random

import pytest

from vllm_cfs.policy import FinishedReplies, RequestState, tokens_left
from vllm_cfs.policy.lengths import MIN_EVIDENCE


def state(generated, max_tokens=2048, ignore_eos=False):
    return RequestState("r", 0, 0.0, prompt_tokens=100, generated_tokens=generated, max_tokens=max_tokens,
                        ignore_eos=ignore_eos)


def finished(lengths):
    replies = FinishedReplies()
    for n in lengths:
        replies.record(n)
    return replies


def test_the_mean_residual_is_over_the_replies_longer_than_the_request_is_now():
    replies = finished([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    assert len(replies) == 10
    assert replies.mean_residual(0) == pytest.approx(55.0)
    assert replies.mean_residual(15) == pytest.approx(sum(range(20, 101, 10)) / 9 - 15)
    assert replies.mean_residual(25) == pytest.approx(sum(range(30, 101, 10)) / 8 - 25)  # exactly MIN_EVIDENCE longer
    assert replies.mean_residual(35) is None  # 7 longer: too few to say
    replies.record(95)
    assert replies.mean_residual(35) == pytest.approx((40 + 50 + 60 + 70 + 80 + 90 + 95 + 100) / 8 - 35)


def test_under_ignore_eos_tokens_left_are_exact_whatever_finished():
    history = finished([5] * 50)
    assert tokens_left(state(100, max_tokens=128, ignore_eos=True), history) == 28
    assert tokens_left(state(0, max_tokens=128, ignore_eos=True), FinishedReplies()) == 128


def test_without_evidence_a_capped_request_may_use_its_whole_cap():
    assert tokens_left(state(10), FinishedReplies()) == 2038
    assert tokens_left(state(10), finished([50] * (MIN_EVIDENCE - 1))) == 2038


def test_with_evidence_the_guess_never_passes_the_cap():
    history = finished([100] * 20 + [3000] * 20)
    assert tokens_left(state(0), history) == pytest.approx(1550)
    assert tokens_left(state(200), history) == 1848  # the cap's 1848, not the mean residual 2800


def test_on_heavy_tailed_replies_the_older_request_is_expected_to_have_more_left():
    rng = random.Random(7)
    history = finished(round(rng.lognormvariate(5.5, 1.0)) for _ in range(2000))
    young, old = tokens_left(state(10), history), tokens_left(state(600), history)
    assert old > young > 0  # a reply that ran long is likely a long one


def test_who_absorbs_a_stall_exact_lengths_by_work_left_capped_ones_by_tokens_so_far():
    from vllm_cfs.policy.ranking import STALL_SLACK_TOKENS, absorbs_a_stall

    exact_short, exact_long = state(10, max_tokens=100, ignore_eos=True), state(10, max_tokens=900, ignore_eos=True)
    assert absorbs_a_stall(exact_short, 90, longest_left=890) and not absorbs_a_stall(exact_long, 890, longest_left=890)
    # At EOS the guess of work left decides nothing: only tokens so far, a lower bound on its length.
    assert not absorbs_a_stall(state(STALL_SLACK_TOKENS - 1), 5, longest_left=2000)
    assert absorbs_a_stall(state(STALL_SLACK_TOKENS), 1900, longest_left=1900)
