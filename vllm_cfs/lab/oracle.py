"""The lab's upper reference: a scheduler that knows each reply's true length. An oracle.

No real scheduler knows where a reply will end; this one reads it from where the simulated GPU
keeps it (the request's sampling seed, vllm_cfs.sim.reply_length), so it must never ship: it lives
in the lab, outside the policy modules that tests/policy/test_no_oracle.py guards. It is
FairScheduler told the truth: every request's max_tokens is where its reply really ends, so "has
slack" and "tokens left" rank by true remaining work (shortest remaining first to come back,
longest remaining last to yield), what FairScheduler's keys read when every length was exact.
"""

from __future__ import annotations

import dataclasses

from vllm.sequence import SequenceGroup

from vllm_cfs.policy import RequestState
from vllm_cfs.sim.reply_length import reply_tokens_of
from vllm_cfs.v0.fair import FairScheduler


class ShortestRemainingOracle(FairScheduler):
    """FairScheduler ranking by each reply's true remaining tokens (an oracle: lab only)."""

    def describe(self) -> str:
        return "ORACLE (lab only): " + super().describe() + ", reading every reply's true length"

    def request_state(self, seq_group: SequenceGroup) -> RequestState:
        state = super().request_state(seq_group)
        true_length = reply_tokens_of(seq_group.sampling_params.seed)
        if true_length is None or seq_group.sampling_params.ignore_eos:
            return state
        # As ignore_eos would make it: max_tokens where the reply really ends, so its tokens left are exact.
        return dataclasses.replace(state, max_tokens=min(state.max_tokens, true_length), ignore_eos=True)
