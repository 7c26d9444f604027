"""The scheduling policies the lab compares, by name: each one a recipe for a virtual-time replay.

A policy is a set of ReplayConfig settings (scheduler class, CFS settings, vLLM's scheduling
options), optionally a rule that gives requests priorities, or the ideal bound's unlimited GPU
KV memory. ``OURS`` is the one place that says which configuration the name ``ours`` runs.

    for policy in select(["fcfs", "cfs-10", "ours", "ideal"]):
        requests, config = policy.job(requests, ReplayConfig())

Each engine has its own list: ``POLICIES`` on vLLM 0.9.0's V0 engine (ReplayConfig), ``V1_POLICIES``
on vLLM V1 (V1ReplayConfig: ``select(names, engine="v1")``). The keys mean the same on both where
they exist: fcfs is the engine's own scheduler, cfs-N the assignment's CFS, ours our policy, ideal
the same engine with unlimited KV blocks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

from vllm_cfs.sim.replay import ReplayRequest
from vllm_cfs.swap import WORKER_CLS

CFS = "vllm_cfs.CFSScheduler"
ORACLE = "vllm_cfs.lab.oracle.ShortestRemainingOracle"

# The policy the name ``ours`` runs: a scheduler class path and its ReplayConfig settings; a better
# scheduler replaces it here, and only here.
OURS: Mapping[str, Any] = {"scheduler_cls": "vllm_cfs.FairScheduler"}
OURS_DESCRIPTION = ("FairScheduler (vllm_cfs/v0/fair.py): first token first, a newcomer taking the room of the "
                    "latest arrival that absorbs a stall after up to FAIR_PATIENCE_TOKENS=8 steps (ignore_eos: not "
                    "the one with the most work left; at EOS: one with 128 tokens streamed), then to completion; "
                    "swapped streams come back worst stalled first, tokens left guessed from finished replies")

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

    def job(self, requests: Sequence[ReplayRequest], base):
        """The requests and replay config that run this policy on ``requests`` (``base``, a ReplayConfig
        or a V1ReplayConfig, gives the hardware)."""
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
    Policy("oracle", "oracle", "true-lengths",
           "ORACLE, the upper reference (no real scheduler knows where a reply ends): FairScheduler reading each "
           "reply's true length (vllm_cfs/lab/oracle.py), so shortest true remaining first to come back and longest "
           "last to yield", {"scheduler_cls": ORACLE}),
)
BY_KEY = {p.key: p for p in POLICIES}
QUICK = ("fcfs", "cfs-10", "ours", "ideal")
QUICK_EOS = QUICK + ("oracle",)  # where replies end at EOS, the oracle's figure too


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


# --- vLLM V1 (the V1 pin), through vllm_cfs.sim.v1.replay ---

V1_CFS = "vllm_cfs.v1.CFSScheduler"
# On V1 ours includes where its victims' KV goes: recompute costs a victim its whole prefill again
# (a recompute tax of 36% on the reference burst), CPU offloading about nothing (docs/v1.md).
V1_OURS: Mapping[str, Any] = {"scheduler_cls": "vllm_cfs.v1.FairScheduler", "kv_offloading_size": 16}
V1_OURS_DESCRIPTION = ("FairScheduler on V1 (vllm_cfs/v1/scheduler.py) with vLLM's CPU offloading (native, 16 GiB): "
                       "first token first, a newcomer taking the room of the latest arrival that absorbs a stall after up "
                       "to FAIR_PATIENCE_TOKENS=8 steps (as on V0); a victim's resume "
                       "loads its KV from host memory; preempted streams come back worst stalled first")

V1_POLICIES: tuple[Policy, ...] = (
    Policy("fcfs", "fcfs", "", "vLLM V1's own scheduler (0.24.0): first come first served, chunked prefill, a whole "
           "prompt admitted only when it fits, the latest admitted preempted by recompute when decodes run out of "
           "blocks"),
    *(Policy(f"cfs-{i}", "cfs", f"interval={i}", f"the assignment's CFS on V1: a CFS step every {i} scheduling "
             "steps (minimum granularity = the interval), victims preempted by recompute",
             {"scheduler_cls": V1_CFS, "cfs_interval": i}) for i in CFS_INTERVALS),
    Policy("ideal", "ideal", "unlimited-kv", "the ideal bound: vLLM V1's own scheduler on the same engine and cost "
           "model with GPU KV blocks for the whole workload, so no request waits for memory and none is preempted",
           unlimited_kv=True),
    Policy("ours", "ours", "fair", V1_OURS_DESCRIPTION, dict(V1_OURS)),
)
ENGINE_POLICIES = {"v0": POLICIES, "v1": V1_POLICIES}

# Where a V1 victim's KV goes (V1 preempts by recompute only): nothing is kept (recompute); the freed
# blocks stay in the prefix cache until reused, so a resume may hit them (V1's default); or vLLM's CPU
# offloading keeps a copy in host memory that a resume loads instead of recomputing.
OFFLOAD_GIB = 16  # host memory for offloaded KV, as V0's swap space per GPU
VICTIM_PATHS: Mapping[str, Mapping[str, Any]] = {
    "recompute": {"enable_prefix_caching": False, "kv_offloading_size": None},
    "prefix-cache": {"enable_prefix_caching": True, "kv_offloading_size": None},
    "offload": {"enable_prefix_caching": True, "kv_offloading_size": OFFLOAD_GIB},
}


def with_victim_paths(policies: Sequence[Policy], paths: Sequence[str]) -> list[Policy]:
    """Each V1 policy on each victim path, side by side, keyed ``key+path`` (the ideal bound, which
    has no victims, once and as it is)."""
    unknown = [p for p in paths if p not in VICTIM_PATHS]
    if unknown:
        raise PolicyError(f"unknown victim path {unknown[0]!r} (choose from {', '.join(VICTIM_PATHS)})")
    out = []
    for policy in policies:
        if policy.unlimited_kv:
            out.append(policy)
            continue
        out += [dataclasses.replace(policy, key=f"{policy.key}+{path}",
                                    parameter=" ".join(filter(None, (policy.parameter, path))),
                                    description=f"{policy.description}; victim KV: {path}",
                                    settings={**policy.settings, **VICTIM_PATHS[path]}) for path in paths]
    return out


def select(names: Sequence[str], engine: str = "v0") -> list[Policy]:
    """Policies by key ("cfs-10") or by family ("cfs": every interval), in the order of the engine's list."""
    policies = ENGINE_POLICIES[engine]
    keys = [p.key for p in policies]
    wanted: set[str] = set()
    for name in names:
        matches = {p.key for p in policies if name in (p.key, p.family)}
        if not matches:
            families = ", ".join(dict.fromkeys(p.family for p in policies))
            raise PolicyError(f"unknown policy {name!r} on {engine} (choose from {', '.join(keys)}, or a family: "
                              f"{families})")
        wanted |= matches
    return [p for p in policies if p.key in wanted]
