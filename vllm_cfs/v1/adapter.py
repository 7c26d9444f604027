"""vLLM V1's request, a ``vllm.v1.request.Request``, as the policy core's RequestState."""

from __future__ import annotations

from typing import Optional

from vllm.v1.request import Request

from vllm_cfs.policy import RequestState


def request_state(request: Request, blocks_held: Optional[int] = None) -> RequestState:
    return RequestState(
        request_id=request.request_id,
        priority=request.priority,
        arrival_time=request.arrival_time,
        prompt_tokens=request.num_prompt_tokens,
        generated_tokens=request.num_output_tokens,
        max_tokens=request.max_tokens,
        ignore_eos=request.sampling_params is None or request.sampling_params.ignore_eos,
        computed_tokens=request.num_computed_tokens,
        blocks_held=blocks_held,
    )
