"""vLLM V0's request, a SequenceGroup, as the policy core's RequestState."""

from __future__ import annotations

from typing import Optional

from vllm.sequence import SequenceGroup

from vllm_cfs.policy import RequestState


def vruntime(seq_group: SequenceGroup) -> int:
    """Tokens generated so far, the most of any of its sequences (parallel sampling runs several)."""
    return max(seq.get_output_len() for seq in seq_group.seqs)


def request_state(seq_group: SequenceGroup, blocks_held: Optional[int] = None) -> RequestState:
    first = seq_group.first_seq
    return RequestState(
        request_id=seq_group.request_id,
        priority=seq_group.priority,
        arrival_time=seq_group.arrival_time,
        prompt_tokens=first.get_prompt_len(),
        generated_tokens=vruntime(seq_group),
        max_tokens=seq_group.sampling_params.max_tokens,
        ignore_eos=seq_group.sampling_params.ignore_eos,
        computed_tokens=first.data.get_num_computed_tokens(),
        blocks_held=blocks_held,
    )
