"""Fit the profile's efficiency factors and swap overheads to the measured medians.

The decode pair, then the prefill pair, each by grid search on the sum of squared log errors
(which the formulas' max() does not upset); the swap pair by non-negative linear least squares
of relative error on the per_block points. A factor the data leave free keeps its base value.
host_link_bytes_per_s is the measured pinned copy; hbm_bytes_per_s and peak_flops stay at the
datasheet so that the efficiencies compare across GPUs.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from vllm_cfs.calibration import allreduce
from vllm_cfs.settings import DEFAULT_STAGING_BLOCKS
from vllm_cfs.calibration.formats import PROFILE_KEYS
from vllm_cfs.calibration.formulas import (
    ModelNumbers, error_pct, predict_swap, predict_swap_with_calls, prefill_flops,
)


@dataclass
class Fit:
    values: dict                                   # profile keys set by the fit
    notes: dict = field(default_factory=dict)      # per key: how it was set
    proposed: dict | None = None                   # a formula change the data support, if any


def _grid_pick(loss: np.ndarray, grids: list[np.ndarray], base: list[float]) -> list[float]:
    """Arg-min of loss over the grids; among equally good cells, the one nearest the base values
    (relative distance), so that a factor the data cannot see keeps its base value."""
    best = loss.min()
    ties = np.argwhere(loss <= best * (1 + 1e-9) + 1e-15)
    dist = sum(((np.asarray([g[i] for i in ties[:, k]]) - b) / max(abs(b), 1e-12)) ** 2
               for k, (g, b) in enumerate(zip(grids, base)))
    cell = ties[int(np.argmin(dist))]
    return [float(g[i]) for g, i in zip(grids, cell)]


def fit_decode(points: list[dict], m: ModelNumbers, base: dict) -> dict:
    batch = np.array([p["batch"] for p in points], float)
    context = np.array([p["context"] for p in points], float)
    measured = np.array([p["seconds"] for p in points])
    read = m.weight_bytes + m.kv_bytes_per_token * batch * context
    flops = 2 * m.params * batch
    bw = np.arange(0.30, 1.0001, 0.0025)
    fl = np.arange(0.05, 1.0001, 0.0025)
    t = np.maximum((read / base["hbm_bytes_per_s"])[None, None, :] / bw[:, None, None],
                   (flops / base["peak_flops"])[None, None, :] / fl[None, :, None])
    loss = (np.log(t / measured) ** 2).sum(-1)
    dbe, dfe = _grid_pick(loss, [bw, fl], [base["decode_bandwidth_efficiency"], base["decode_flops_efficiency"]])
    return {"decode_bandwidth_efficiency": dbe, "decode_flops_efficiency": dfe}


def fit_prefill(points: list[dict], m: ModelNumbers, base: dict, decode_bandwidth_efficiency: float) -> dict:
    tokens = np.array([p["tokens"] for p in points], float)
    flops = np.array([prefill_flops(m, p["seq_lens"]) for p in points])
    measured = np.array([p["seconds"] for p in points])
    floor = m.weight_bytes / (base["hbm_bytes_per_s"] * decode_bandwidth_efficiency)
    eff = np.arange(0.20, 1.0001, 0.0025)
    half = np.arange(0.0, 4096.0 + 1, 8.0)
    ramp = tokens[None, :] / (tokens[None, :] + half[:, None])             # [half, points]
    t = np.maximum(flops / base["peak_flops"] / (eff[:, None, None] * ramp[None]), floor)
    loss = (np.log(t / measured) ** 2).sum(-1)
    pfe, h = _grid_pick(loss, [eff, half], [base["prefill_flops_efficiency"], base["prefill_half_efficiency_tokens"]])
    return {"prefill_flops_efficiency": pfe, "prefill_half_efficiency_tokens": int(round(h))}


def _relative_nnls(columns: np.ndarray, t: np.ndarray, fixed: np.ndarray | float = 0.0) -> np.ndarray:
    """Non-negative x minimising sum(((columns @ x + fixed - t) / t)^2): least squares of
    relative error, solved on every subset of the (at most three) columns."""
    a = columns / t[:, None]
    target = (t - fixed) / t
    best, best_loss = np.zeros(a.shape[1]), float((target ** 2).sum())
    for mask in itertools.product((False, True), repeat=a.shape[1]):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        sol, *_ = np.linalg.lstsq(a[:, idx], target, rcond=None)
        if (sol < 0).any():
            continue
        x = np.zeros(a.shape[1])
        x[idx] = sol
        loss = float(((a @ x - target) ** 2).sum())
        if loss < best_loss:
            best, best_loss = x, loss
    return best


def fit_swap(points: list[dict], host_link: float, call_layers: int | None = None) -> dict:
    """t = copies * swap_copy_overhead_s + bytes / (host_link * swap_bandwidth_efficiency).

    Linear in (overhead, 1 / efficiency): non-negative least squares of relative error. With
    call_layers, a third term 2 * layers * swap_call_overhead_s (one swap_blocks call per layer
    for K and for V, whatever the block count) is fitted too: the proposed formula change.
    """
    t = np.array([p["seconds"] for p in points])
    nbytes = np.array([p["bytes"] for p in points], float)
    columns = [np.array([p["copies"] for p in points], float), nbytes]
    if call_layers is not None:
        columns.append(np.full_like(t, 2 * call_layers))
    x = _relative_nnls(np.stack(columns, 1), t)
    efficiency = 1.0 / (x[1] * host_link) if x[1] > 0 else math.inf
    if efficiency > 1.0:
        # faster than the measured link: an efficiency is a fraction, so pin it at 1 and let the
        # other terms take the rest
        efficiency, x[1] = 1.0, 1.0 / host_link
        others = [i for i in range(len(columns)) if i != 1]
        x[others] = _relative_nnls(np.stack([columns[i] for i in others], 1), t, fixed=nbytes * x[1])
    fitted = {"swap_copy_overhead_s": float(x[0]), "swap_bandwidth_efficiency": float(efficiency)}
    if call_layers is not None:
        fitted["swap_call_overhead_s"] = float(x[2])
    return fitted


def fit_staged_swap(speed: dict, staging_blocks: int) -> dict:
    """t = ceil(n / staging) * staged_swap_chunk_overhead_s + n * block_bytes / (link * efficiency), on
    the staged points of one staging size of a benchmarks/swap_speed.py run (both directions), by
    non-negative least squares of relative error. The link is the run's own pinned copy."""
    run = speed["runs"][str(staging_blocks)]
    link = run["link"]
    points = [p for p in run["points"] if p["path"] == "staged"]
    t = np.array([p["median_s"] for p in points])
    loads = np.array([-(-p["blocks"] // staging_blocks) for p in points], float)
    transfer = np.array([p["blocks"] * run["shape"]["block_bytes"] / link[
        "device_to_host_bytes_per_s" if p["direction"] == "out" else "host_to_device_bytes_per_s"] for p in points])
    overhead, inverse = _relative_nnls(np.stack([loads, transfer], 1), t)
    return {"staged_swap_chunk_overhead_s": float(overhead),
            "staged_swap_bandwidth_efficiency": float(min(1.0, 1.0 / inverse))}


def fit_profile(raw: dict, base: dict, allreduce_raw: dict | None = None, swap_speed: dict | None = None) -> Fit:
    """Fit the profile's factors to the measured medians of `raw` (and of a two-GPU all-reduce
    run and a staged swap run, if given), starting from `base`."""
    m = ModelNumbers.from_dict(raw["model"])
    values, notes = {}, {}
    values["memory_bytes"] = raw["environment"]["memory_bytes"] or base["memory_bytes"]
    notes["memory_bytes"] = "measured: total memory the device reports"
    ceilings = raw.get("ceilings", {})
    if "host_to_device" in ceilings and "device_to_host" in ceilings:
        values["host_link_bytes_per_s"] = (ceilings["host_to_device"]["bytes_per_s"]
                                           + ceilings["device_to_host"]["bytes_per_s"]) / 2
        notes["host_link_bytes_per_s"] = "measured: one 512 MiB pinned copy, mean of the two directions"
    host_link = values.get("host_link_bytes_per_s", base["host_link_bytes_per_s"])

    decode = raw.get("decode") or []
    if decode:
        values.update(fit_decode(decode, m, base))
        notes["decode_bandwidth_efficiency"] = notes["decode_flops_efficiency"] = (
            f"fitted on {len(decode)} decode points (grid search, least squares of log error)")
    dbe = values.get("decode_bandwidth_efficiency", base["decode_bandwidth_efficiency"])
    prefill = raw.get("prefill") or []
    if prefill:
        values.update(fit_prefill(prefill, m, base, dbe))
        notes["prefill_flops_efficiency"] = notes["prefill_half_efficiency_tokens"] = (
            f"fitted on {len(prefill)} prefill points (grid search, least squares of log error)")
    per_block = [p for p in (raw.get("swap") or {}).get("points", []) if p["path"] == "per_block"]
    if per_block:
        values.update(fit_swap(per_block, host_link))
        notes["swap_copy_overhead_s"] = notes["swap_bandwidth_efficiency"] = (
            f"fitted on {len(per_block)} per_block swap points (linear least squares of relative error)")
        proposed = fit_swap(per_block, host_link, call_layers=m.layers)
        link = {"host_link_bytes_per_s": host_link}
        errors = [abs(error_pct(predict_swap_with_calls({**proposed, **link}, m.layers, p["copies"], p["bytes"]),
                                p["seconds"])) for p in per_block]
        current = [abs(error_pct(predict_swap({**values, **link}, p["copies"], p["bytes"]), p["seconds"]))
                   for p in per_block]
        proposal = {
            "formula": "swap time = 2 * layers * swap_call_overhead_s + copies * swap_copy_overhead_s"
                       " + n * block_bytes / (host_link_bytes_per_s * swap_bandwidth_efficiency)",
            "why": "vLLM 0.9 calls swap_blocks once per layer for K and once for V whatever the block "
                   "count; that fixed cost dominates swaps of a few blocks",
            "values": proposed,
            "median_abs_error_pct": statistics.median(errors),
            "current_formula_median_abs_error_pct": statistics.median(current),
        }
    else:
        proposal = None
    notes["gpu_link_bytes_per_s"] = "datasheet, so that the all-reduce efficiency compares across GPUs"
    if allreduce_raw:
        values.update(allreduce.fit(allreduce_raw["points"], base["gpu_link_bytes_per_s"]))
        gpus = allreduce_raw["environment"]["gpus"]
        notes["allreduce_latency_s"] = notes["allreduce_bandwidth_efficiency"] = (
            f"measured on {len(gpus)} x {gpus[0]}: NCCL {allreduce_raw['environment']['nccl']} through "
            f"torch.distributed, {len(allreduce_raw['points'])} sizes (latency: median of the decode sizes; "
            f"efficiency: slope of time over bytes among the prefill sizes)")
    else:
        for key in ("allreduce_latency_s", "allreduce_bandwidth_efficiency"):
            notes[key] = "kept from the base profile: one GPU measured, no all-reduce"
    if swap_speed:
        values.update(fit_staged_swap(swap_speed, DEFAULT_STAGING_BLOCKS))
        notes["staged_swap_chunk_overhead_s"] = notes["staged_swap_bandwidth_efficiency"] = (
            f"fitted on the staged points of benchmarks/swap_speed.py with a {DEFAULT_STAGING_BLOCKS}-block "
            f"staging buffer, {swap_speed['environment']['gpu']} (least squares of relative error)")
    else:
        for key in ("staged_swap_chunk_overhead_s", "staged_swap_bandwidth_efficiency"):
            notes[key] = "kept from the base profile: no staged swap run given"
    notes["step_overhead_s"] = "kept from the base profile: engine overhead needs vLLM, not measured here"
    notes["non_kv_overhead_bytes"] = "kept from the base profile (measured CUDA context size is under measured.memory)"
    for key in ("hbm_bytes_per_s", "peak_flops"):
        notes[key] = "datasheet, so that the fitted efficiencies compare across GPUs"
    return Fit(values, notes, proposal)


def build_profile(raw: dict, base: dict, fit: Fit, name: str, allreduce_raw: dict | None = None,
                  swap_speed: dict | None = None) -> dict:
    """The fitted profile in the simulator's format, with the raw points under "measured"."""
    env = raw["environment"]
    day = env["date"][:10]
    profile = {k: base[k] for k in PROFILE_KEYS}
    profile.update(fit.values)
    profile["name"] = name
    profile["description"] = (f"{env['gpu']}, efficiencies and swap overheads fitted to "
                              f"CodeLlama-34B-shaped measurements ({raw['model']['layers']} layers)")
    profile["source"] = (f"measured on {env['gpu']} (driver {env['driver']}, torch {env['torch']}, "
                         f"CUDA {env['cuda']}) by benchmarks/calibrate_gpu.py, {day}")
    profile["measured"] = {k: raw.get(k) for k in (
        "environment", "model", "settings", "ceilings", "memory", "prefill", "decode",
        "decode_skipped", "swap", "errors")}
    if allreduce_raw:
        profile["measured"]["allreduce"] = allreduce_raw
    if swap_speed:
        profile["measured"]["staged_swap"] = swap_speed
    profile["calibration"] = {
        "base_profile": base["name"],
        "base_values": {k: base[k] for k in sorted(fit.values)},
        "notes": fit.notes,
    }
    if fit.proposed:
        profile["calibration"]["proposed_formula_change"] = fit.proposed
    return profile
