"""How requests rank: sort keys over a RequestState, the smallest first; a running request with a
larger key is a victim before one with a smaller key.
"""

from __future__ import annotations

from typing import Tuple

from vllm_cfs.policy.state import RequestState

RankKey = Tuple[int, int, float]


def vruntime(request: RequestState) -> int:
    """Tokens generated so far: the CFS notion of how much GPU time a request has had."""
    return request.generated_tokens


def cfs_key(request: RequestState) -> RankKey:
    """The assignment's CFS: user priority first, then fewest tokens generated, then earliest arrival."""
    return request.priority, request.generated_tokens, request.arrival_time


def first_token_key(request: RequestState) -> RankKey:
    """First token first, then first come first served: a request with no token yet outranks every
    request that has one; among those, the earliest arrival runs first."""
    return request.priority, min(request.generated_tokens, 1), request.arrival_time


# A victim stalls until room frees, seconds under a burst (about 130 decode steps on ShareGPT at 5
# req/s): a request with at least this many tokens less to go than the longest one absorbs that
# without ending later than the whole workload would anyway.
STALL_SLACK_TOKENS = 128


def absorbs_a_stall(request: RequestState, tokens_left: float, longest_left: float,
                    slack_tokens: int = STALL_SLACK_TOKENS) -> bool:
    """Whether a victim's stall costs little. Under ignore_eos its length is exact: it has
    ``slack_tokens`` fewer tokens to go than the longest request, so its stall cannot delay the
    last finish. Where the reply ends at EOS nobody knows which request finishes last, but its
    tokens so far are known: with ``slack_tokens`` of them, a stall adds at most 1/slack_tokens of
    itself to its time per output token."""
    if request.ignore_eos:
        return tokens_left <= longest_left - slack_tokens
    return request.generated_tokens >= slack_tokens


def eviction_key(request: RequestState, tokens_left: float, longest_left: float,
                 slack_tokens: int = STALL_SLACK_TOKENS) -> tuple:
    """First token first's eviction order, the victim last: the latest arrival among the requests
    that absorb a stall (``absorbs_a_stall``), and only when there is none, the latest arrival of
    the others. Tokens to go are ``policy.lengths.tokens_left``: exact under ignore_eos, else expected."""
    slack = absorbs_a_stall(request, tokens_left, longest_left, slack_tokens)
    return request.priority, min(request.generated_tokens, 1), slack, request.arrival_time


def stall_cost_key(request: RequestState, tokens_left: float, steps_since_first_token: int) -> tuple:
    """First token first's resume order, smallest first: the preempted request whose time per
    output token a further step of waiting hurts most. Were it to run from now on, its TPOT in
    steps would be (steps since its first token + tokens left) / (output tokens - 1): the longest
    stalled first, and a short reply before a long one stalled as long."""
    output_tokens = request.generated_tokens + tokens_left
    projected_tpot = (steps_since_first_token + tokens_left) / max(1, output_tokens - 1)
    return request.priority, -projected_tpot, request.arrival_time
