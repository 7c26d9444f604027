"""How many tokens a request has left, from what a scheduler can know.

A scheduler sees a request's cap (max_tokens), its tokens so far, and, over the server's life, how
long the replies it finished were. Where the request says ignore_eos, the cap *is* its length and
the tokens left are exact. Otherwise the reply ends at EOS, sooner and unforeseeably: the best guess
is the mean residual length, the mean over the finished replies longer than this one is now of how
far they went beyond it (a reply that has run g tokens is one of those that run past g). Reply
lengths are heavy-tailed, so this guess grows with age where a fixed guess would not: a reply that
has already run long is likely a long one. Until enough replies have finished to say, it is the
cap's count, all the request may still ask of the GPU.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Optional

from vllm_cfs.policy.state import RequestState

# Finished replies longer than a request is now that the guess needs; with fewer, the cap's count.
MIN_EVIDENCE = 8


class FinishedReplies:
    """Output lengths of the replies this server finished at EOS or at their cap (not aborted, not
    ignore_eos: those say nothing about where the model stops)."""

    def __init__(self) -> None:
        self._lengths: list[int] = []  # sorted
        self._sums: Optional[list[int]] = None  # prefix sums of _lengths, rebuilt after a record

    def __len__(self) -> int:
        return len(self._lengths)

    def record(self, output_tokens: int) -> None:
        bisect.insort(self._lengths, output_tokens)
        self._sums = None

    def mean_residual(self, generated: int) -> Optional[float]:
        """Mean of (length - generated) over finished replies longer than ``generated``; None with
        fewer than MIN_EVIDENCE of them."""
        first = bisect.bisect_right(self._lengths, generated)
        longer = len(self._lengths) - first
        if longer < MIN_EVIDENCE:
            return None
        if self._sums is None:
            self._sums = [0, *itertools.accumulate(self._lengths)]
        return (self._sums[-1] - self._sums[first]) / longer - generated


def tokens_left(request: RequestState, finished: FinishedReplies) -> float:
    """The tokens a request is expected still to generate: exact under ignore_eos, else the mean
    residual length of the replies finished so far (at most the cap's count)."""
    if request.ignore_eos:
        return request.remaining_tokens
    guess = finished.mean_residual(request.generated_tokens)
    return request.remaining_tokens if guess is None else min(guess, request.remaining_tokens)
