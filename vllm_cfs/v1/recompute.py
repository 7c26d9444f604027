"""The recompute tax (vLLM RFC #54644): computed tokens that a request had computed before.

V1 preempts by recompute: a victim's KV blocks are freed, and when it resumes every token whose
KV is neither in the prefix cache nor loaded from host memory is computed again. The ledger sees
each step's scheduled tokens per request and remembers, per request, how far it has ever been
computed; tokens scheduled below that line are recomputed ones. Cache hits and loads from host
memory are never scheduled, so they cost nothing here, as they cost no GPU compute.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class RecomputeLedger:
    tokens_computed: int = 0
    tokens_recomputed: int = 0
    # Request id -> tokens of it computed at least once (its recompute line).
    _high_water: dict[str, int] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def count(self, request_id: str, start: int, tokens: int) -> int:
        """Note ``tokens`` computed from position ``start``; return how many of them are recomputed."""
        seen = self._high_water.get(request_id, 0)
        end = start + tokens
        recomputed = max(0, min(seen, end) - start)
        self.tokens_computed += tokens
        self.tokens_recomputed += recomputed
        self._high_water[request_id] = max(seen, end)
        return recomputed

    def forget(self, request_id: str) -> None:
        """A finished request's line is no longer needed (ids are not reused while live)."""
        self._high_water.pop(request_id, None)

    @property
    def tax(self) -> float:
        return self.tokens_recomputed / self.tokens_computed if self.tokens_computed else 0.0
