"""Request traces in scheduling steps, and what became of each request: no engine, no vLLM import.

The V0 driver (vllm_cfs.lab.trace) and the V1 driver (vllm_cfs.v1.trace) play the same traces.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class TraceRequest:
    request_id: str
    arrival_step: int
    prompt_len: int
    max_tokens: int
    priority: int = 0
    n: int = 1  # parallel samples; the V0 driver splits them into n groups as LLMEngine does
    # Where the reply ends at EOS (the V0 driver, as the simulated model, stops it there; the
    # scheduler sees only max_tokens, the cap). None: ignore_eos, it runs to max_tokens.
    reply_tokens: Optional[int] = None


@dataclass
class RequestOutcome:
    request_id: str
    arrival_step: int
    first_token_step: Optional[int] = None
    finish_step: Optional[int] = None
    output_tokens: int = 0
    ignored: bool = False
    aborted: bool = False
    preemptions: int = 0  # the V1 driver counts them (V0: the scheduler's own counters)

    @property
    def ttft_steps(self) -> Optional[int]:
        if self.first_token_step is None:
            return None
        return self.first_token_step - self.arrival_step


def random_trace(rng: random.Random, num_requests: int, *, max_arrival_step: int,
                 prompt_lens: tuple[int, int], max_tokens: tuple[int, int]) -> List[TraceRequest]:
    """Requests with uniformly drawn arrival steps, prompt lengths and output lengths."""
    arrivals = sorted(rng.randint(0, max_arrival_step) for _ in range(num_requests))
    return [TraceRequest(f"r{i}", arrival, rng.randint(*prompt_lens), rng.randint(*max_tokens))
            for i, arrival in enumerate(arrivals)]
