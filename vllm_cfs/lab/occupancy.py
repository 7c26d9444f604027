"""Near-empty batches: steps that leave the GPU with a fraction of the requests it could hold
while others sit swapped out on the CPU (the issue's ``Running: 3 reqs, Swapped: 47 reqs,
GPU KV 20.7%``), counted in a replay's per-step samples.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from vllm_cfs.sim.replay import KVSample, ReplayRequest


def requests_that_fit(requests: Sequence[ReplayRequest], gpu_blocks: int) -> int:
    """How many of the workload's requests, at their mean full length (prompt and every output
    token), the GPU's KV blocks hold at once."""
    mean_blocks = sum(r.kv_blocks() for r in requests) / len(requests)
    return max(1, int(gpu_blocks // mean_blocks))


@dataclasses.dataclass(frozen=True)
class NearEmpty:
    fits: int  # requests the GPU holds at once (requests_that_fit)
    threshold: float  # a batch is near-empty when fewer than this many requests run (a fraction of fits)
    steps: int  # steps after which the batch was near-empty while requests sat swapped out
    time_share: float  # their share of the replay's busy (stepping) virtual time
    evicting_steps: int  # of those, steps that swapped requests out and swapped nothing in
    evicting_time_share: float
    busy_steps: int
    busy_s: float


def near_empty(samples: Sequence[KVSample], fits: int, fraction: float = 0.25) -> NearEmpty:
    threshold = fits * fraction
    stranded = [s for s in samples if s.running < threshold and s.swapped > 0]
    evicting = [s for s in stranded if s.swapped_out_blocks > 0 and s.swapped_in_blocks == 0]
    busy_s = sum(s.duration_s for s in samples)

    def share(steps: Sequence[KVSample]) -> float:
        return sum(s.duration_s for s in steps) / busy_s if busy_s else 0.0

    return NearEmpty(fits, threshold, len(stranded), share(stranded), len(evicting), share(evicting),
                     len(samples), busy_s)
