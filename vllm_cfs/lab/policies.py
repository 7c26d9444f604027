"""The scheduling policies the lab compares, by name: each one a recipe for a virtual-time replay.

A policy is a set of ReplayConfig settings (scheduler class, CFS settings, vLLM's scheduling
options), optionally a rule that gives requests priorities, or the ideal bound's unlimited GPU
KV memory. ``OURS`` is the one place that says which configuration the name ``ours`` runs.

    for policy in select(["fcfs", "cfs-10", "ours", "ideal"]):
        requests, config = policy.job(requests, ReplayConfig())
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

from vllm_cfs.sim.replay import ReplayConfig, ReplayRequest
from vllm_cfs.swap import WORKER_CLS

CFS = "vllm_cfs.CFSScheduler"

# The policy the name ``ours`` runs: a scheduler class path and its ReplayConfig settings; a better
# scheduler replaces it here, and only here.
OURS: Mapping[str, Any] = {"scheduler_cls": "vllm_cfs.FairScheduler"}
OURS_DESCRIPTION = ("FairScheduler (vllm_cfs/v0/fair.py): first token first, a newcomer taking the room of the "
                    "latest arrival after up to FAIR_PATIENCE_TOKENS=8 steps (unless that one has the most work "
                    "left), then to completion; swapped streams come back worst stalled first")

LATER_FIRST = "later-first"  # the priority rule: the later a request arrives, the more urgent it is


class PolicyError(ValueError):
    """An unknown policy name; the message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class Policy:
    key: str  # unique name, e.g. "cfs-10"
    family: str  # the table's policy column, e.g. "cfs"
    parameter: str  # the table's parameter column, e.g. "interval=10" ("" when none)
    description: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # ReplayConfig fields
    priorities: Optional[str] = None  # LATER_FIRST, or None: every request priority 0
    unlimited_kv: bool = False  # the ideal bound: GPU KV blocks for the whole workload at once

    def job(self, requests: Sequence[ReplayRequest], base: ReplayConfig) -> tuple[list[ReplayRequest], ReplayConfig]:
        """The requests and replay config that run this policy on ``requests`` (``base`` gives the hardware)."""
        settings = dict(self.settings)
        if self.unlimited_kv:
            settings["num_gpu_blocks_override"] = blocks_for_all(requests)
        return self._prioritized(requests), dataclasses.replace(base, **settings)

    def _prioritized(self, requests: Sequence[ReplayRequest]) -> list[ReplayRequest]:
        if self.priorities is None:
            return list(requests)
        # vLLM serves smaller priority values first; the last arrival gets 0, the first n-1.
        order = sorted(range(len(requests)), key=lambda i: (requests[i].arrival_s, i))
        urgency = {i: len(requests) - 1 - rank for rank, i in enumerate(order)}
        return [dataclasses.replace(r, priority=urgency[i]) for i, r in enumerate(requests)]


def blocks_for_all(requests: Sequence[ReplayRequest]) -> int:
    """GPU blocks that hold every request's whole KV (prompt and all output tokens) at once, above
    vLLM's 1% admission watermark: with this many, no request ever waits for memory or is preempted."""
    needed = sum(r.kv_blocks() for r in requests)
    return math.ceil((needed + 1) / 0.99) + 1


def _cfs(interval: int, min_granularity: Optional[int] = None) -> Policy:
    if min_granularity is None:
        return Policy(f"cfs-{interval}", "cfs", f"interval={interval}",
                      f"the assignment's CFS: a CFS step every {interval} scheduling steps (minimum granularity "
                      "= the interval)", {"scheduler_cls": CFS, "cfs_interval": interval})
    return Policy(f"cfs-mg{min_granularity}-{interval}", f"cfs-mingran{min_granularity}", f"interval={interval}",
                  f"CFS every {interval} steps with CFS_MIN_GRANULARITY={min_granularity}",
                  {"scheduler_cls": CFS, "cfs_interval": interval, "cfs_min_granularity": min_granularity})


CFS_INTERVALS = (1, 2, 5, 10, 20, 40)

POLICIES: tuple[Policy, ...] = (
    Policy("fcfs", "fcfs", "", "vLLM 0.9.0's V0 scheduler as shipped: first come first served, whole prefills, "
           "preemption (by swap) only when a decode step runs out of blocks"),
    Policy("priority", "priority", LATER_FIRST,
           "vLLM's --scheduling-policy priority, the later arrival the more urgent: a new request that "
           "finds no room preempts the running request that arrived first (by recompute: vLLM 0.9.0's "
           "priority preemption cannot swap)",
           {"scheduling_policy": "priority", "preemption_mode": "recompute"}, priorities=LATER_FIRST),
    Policy("chunked-prefill", "chunked-prefill", "budget=2048",
           "vLLM's V0 chunked prefill (FCFS): decodes first, then prompt chunks, 2048 tokens a step (vLLM's "
           "default budget with chunking)", {"enable_chunked_prefill": True, "max_num_batched_tokens": 2048}),
    *(_cfs(interval) for interval in CFS_INTERVALS),
    _cfs(1, 1000),
    _cfs(10, 1000),
    Policy("ideal", "ideal", "unlimited-kv",
           "the ideal bound: FCFS on the same engine and cost model with GPU KV blocks for the whole "
           "workload, so no request waits for memory and none is preempted", unlimited_kv=True),
    Policy("ours", "ours", "fair", OURS_DESCRIPTION, dict(OURS)),
)
BY_KEY = {p.key: p for p in POLICIES}
QUICK = ("fcfs", "cfs-10", "ours", "ideal")


STAGED_SUFFIX = "+staged"
SWAP_PATHS = ("per-block", "staged", "both")


def on_staged_swap(policy: Policy) -> Policy:
    """The same policy on the staged swap worker (vllm_cfs.swap): cheaper swaps, a staging buffer's
    worth of GPU blocks fewer."""
    return dataclasses.replace(
        policy, key=policy.key + STAGED_SUFFIX, parameter=" ".join(filter(None, (policy.parameter, "staged-swap"))),
        description=policy.description + "; on the staged swap worker (--worker-cls vllm_cfs.swap.StagedSwapWorker)",
        settings={**policy.settings, "worker_cls": WORKER_CLS})


def with_swap_paths(policies: Sequence[Policy], swap: str) -> list[Policy]:
    """Each policy on vLLM's per-block swap, on the staged one, or on both (side by side)."""
    if swap not in SWAP_PATHS:
        raise PolicyError(f"unknown swap path {swap!r} (choose from {', '.join(SWAP_PATHS)})")
    if swap == "per-block":
        return list(policies)
    if swap == "staged":
        return [on_staged_swap(p) for p in policies]
    return [variant for p in policies for variant in (p, on_staged_swap(p))]


def select(names: Sequence[str]) -> list[Policy]:
    """Policies by key ("cfs-10") or by family ("cfs": every interval), in the order of POLICIES."""
    wanted: set[str] = set()
    for name in names:
        matches = {p.key for p in POLICIES if name in (p.key, p.family)}
        if not matches:
            families = ", ".join(dict.fromkeys(p.family for p in POLICIES))
            raise PolicyError(f"unknown policy {name!r} (choose from {', '.join(BY_KEY)}, or a family: {families})")
        wanted |= matches
    return [p for p in POLICIES if p.key in wanted]
