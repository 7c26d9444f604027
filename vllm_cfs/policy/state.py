"""What a policy may know of a request: one small record, filled by each engine's adapter.

Only what a real scheduler knows goes in: no reply's true length, only the cap the client sent.
``vllm_cfs.v0.adapter`` fills it from a V0 ``SequenceGroup``, ``vllm_cfs.v1.adapter`` from a V1
``Request``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True, slots=True)
class RequestState:
    request_id: str
    priority: int  # the user's priority: smaller runs first (vLLM's convention)
    arrival_time: float
    prompt_tokens: int
    generated_tokens: int  # the CFS vruntime: output tokens so far (the most of any of its sequences)
    max_tokens: int  # the cap the client sent: the reply may end sooner, at EOS
    computed_tokens: int = 0  # tokens whose KV the engine holds or has scheduled
    blocks_held: Optional[int] = None  # GPU KV blocks it holds now; None where the caller did not look
    # The request's own sampling parameter: True makes max_tokens its exact length; False, only a
    # cap (the reply ends at EOS). Policies guess lengths only where it is False (policy.lengths).
    ignore_eos: bool = False

    @property
    def remaining_tokens(self) -> int:
        """Tokens left before max_tokens: all a request can still ask of the GPU (EOS may end it
        sooner, unless ignore_eos); policy.lengths.tokens_left is the expected count."""
        return self.max_tokens - self.generated_tokens
