"""The schedulers the fault tests serve: each module's live server starts once per policy."""

from __future__ import annotations

import dataclasses
from typing import Optional

import pytest


@dataclasses.dataclass(frozen=True)
class LivePolicy:
    name: str
    scheduler_cls: str
    cfs_interval: Optional[int]  # CFS_INTERVAL for the server (None: the policy reads none)
    start_line: str  # a regex of the line the scheduler logs when vLLM builds it
    # Whether its CFS stats counters change at every few steps whatever runs (CFS: a CFS step
    # every interval), or only when it makes room for a waiting request (Fair): only the first
    # logs a "CFS stats" line for any burst that starts after a quiet stats period.
    counts_steps_on_a_timer: bool


LIVE_POLICIES = (
    # CFS every 2 steps: a burst keeps requests moving between GPU and CPU memory.
    LivePolicy("cfs", "vllm_cfs.CFSScheduler", 2, r"CFS scheduler: a CFS step every 2 scheduling steps", True),
    LivePolicy("fair", "vllm_cfs.FairScheduler", None, r"Fair scheduler: first token first", False),
)


@pytest.fixture(scope="module", params=LIVE_POLICIES, ids=lambda p: p.name)
def policy(request) -> LivePolicy:
    """Module-scoped so that pytest runs a module's tests policy by policy, one server each."""
    return request.param
