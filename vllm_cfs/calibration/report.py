"""docs/calibration.md: the measurements against the cost model, the fit, the A100 suggestion."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from vllm_cfs.calibration.comparison import Comparison, Row, compare, model_spec
from vllm_cfs.calibration.formats import CalibrationError, read_raw
from vllm_cfs.calibration.table import swap_paths_rows
from vllm_cfs.sim.cost_model import CostModel, PrefillChunk
from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import GPUProfile, ProfileError, load_profile

TARGETS_PCT = {"prefill": 10.0, "decode": 10.0, "swap": 20.0}
# Factors of the same kernel families that carry from one GPU to another: each is a fraction
# of that GPU's own datasheet rate (or measured host link), or a host-side cost per copy.
CARRY_OVER = ("prefill_flops_efficiency", "prefill_half_efficiency_tokens", "decode_bandwidth_efficiency",
              "decode_flops_efficiency", "swap_copy_overhead_s", "swap_bandwidth_efficiency")
FITTED = CARRY_OVER + ("memory_bytes", "host_link_bytes_per_s")
REFERENCE_TP = 2   # the user's setup: CodeLlama-34B on two A100-40GB


def _fmt(key: str, value: float) -> str:
    if key.endswith("bytes_per_s"):
        return f"{value / 1e9:.1f} GB/s"
    if key.endswith("_s"):
        return f"{value * 1e6:.2f} µs"
    if key.endswith("_bytes"):
        return f"{value / 2**30:.2f} GiB"
    if key.endswith("_tokens"):
        return f"{value:.0f}"
    return f"{value:.4g}"


def _change(old: float, new: float) -> str:
    if old == new:
        return "0"
    pct = 100.0 * (new - old) / old
    return f"{pct:+.1f}%" if abs(pct) < 1 else f"{pct:+.0f}%"


def _range_pct(ratios: list[float]) -> str:
    return f"{100 * (min(ratios) - 1):.0f}–{100 * (max(ratios) - 1):.0f}%"


def eager_overhead(raw: dict) -> str:
    """How much longer eager decode steps took than graph replays, as a range."""
    return _range_pct([p["eager_seconds"] / p["seconds"] for p in raw.get("decode") or []])


def swap_in_vs_out(raw: dict) -> str:
    """Median of (swap-in time / swap-out time - 1) over the per-block points measured both ways."""
    points = [p for p in (raw.get("swap") or {}).get("points", []) if p["path"] == "per_block"]
    out = {(p["blocks"], p["copy_bytes"]): p["seconds"] for p in points if p["direction"] == "out"}
    ratios = [p["seconds"] / out[p["blocks"], p["copy_bytes"]] for p in points
              if p["direction"] == "in" and (p["blocks"], p["copy_bytes"]) in out]
    return f"{100 * (statistics.median(ratios) - 1):+.0f}%"


def compute_bound_batches(raw: dict, gpu: GPUProfile) -> list[int]:
    """Decode batch sizes at which the calibrated model's compute term wins at some context."""
    model = CostModel(gpu, model_spec(raw["model"]), 1)
    bound = set()
    for p in raw.get("decode") or []:
        memory = (model.weight_bytes_per_gpu + model.kv_bytes_per_token_per_gpu * p["batch"] * p["context"]) / (
            gpu.hbm_bytes_per_s * gpu.decode_bandwidth_efficiency)
        if model.decode_time([p["context"]] * p["batch"]) > memory:
            bound.add(p["batch"])
    return sorted(bound)


def summary_table(cmp: Comparison) -> list[str]:
    lines = ["| family | points | datasheet model | calibrated model | target | met |",
             "|---|---:|---:|---:|---:|---|"]
    for fam in cmp.families:
        cal = cmp.median_abs_error_pct(fam, "calibrated")
        lines.append(f"| {fam} | {len(cmp.family(fam))} | {cmp.median_abs_error_pct(fam, 'datasheet'):.1f}% "
                     f"| {cal:.1f}% | ≤ {TARGETS_PCT[fam]:.0f}% | {'yes' if cal <= TARGETS_PCT[fam] else 'NO'} |")
    return lines


def family_table(cmp: Comparison, fam: str) -> list[str]:
    lines = ["| point | measured ms | datasheet ms | err | calibrated ms | err |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in cmp.family(fam):
        lines.append(f"| {r.point} | {r.measured * 1e3:.3f} | {r.datasheet * 1e3:.3f} | "
                     f"{r.error_pct('datasheet'):+.1f}% | {r.calibrated * 1e3:.3f} | {r.error_pct('calibrated'):+.1f}% |")
    lines.append(f"| **median abs error** | | | **{cmp.median_abs_error_pct(fam, 'datasheet'):.1f}%** | | "
                 f"**{cmp.median_abs_error_pct(fam, 'calibrated'):.1f}%** |")
    return lines


def factors_table(datasheet: GPUProfile, calibrated: GPUProfile, notes: dict) -> list[str]:
    lines = ["| key | datasheet profile | calibrated | change | how |", "|---|---:|---:|---:|---|"]
    for key in FITTED:
        old, new = getattr(datasheet, key), getattr(calibrated, key)
        lines.append(f"| `{key}` | {_fmt(key, old)} | {_fmt(key, new)} | {_change(old, new)} | {notes.get(key, '')} |")
    return lines


def graph_vs_eager_table(raw: dict) -> list[str]:
    decode = raw.get("decode") or []
    contexts = sorted({p["context"] for p in decode})
    batches = sorted({p["batch"] for p in decode})
    at = {(p["batch"], p["context"]): p for p in decode}
    lines = ["| batch | " + " | ".join(f"ctx {c}: graph / eager ms" for c in contexts) + " |",
             "|---:|" + "---:|" * len(contexts)]
    for b in batches:
        lines.append(f"| {b} | " + " | ".join(
            f"{at[b, c]['seconds'] * 1e3:.2f} / {at[b, c]['eager_seconds'] * 1e3:.2f}" if (b, c) in at else "-"
            for c in contexts) + " |")
    return lines


def reference_times(spec48: ModelSpec, gpu: GPUProfile) -> dict[str, float]:
    """The reference setup's modeled times (CodeLlama-34B, TP 2) that issue 3 reports."""
    m = CostModel(gpu, spec48, REFERENCE_TP)
    return {
        "prefill 512 tokens": m.prefill_time([PrefillChunk(512)]),
        "prefill 2048 tokens": m.prefill_time([PrefillChunk(2048)]),
        "decode B=1 ctx 1024": m.decode_time([1024]),
        "decode B=16 ctx 1024": m.decode_time([1024] * 16),
        "decode B=64 ctx 1024": m.decode_time([1024] * 64),
        "swap 1 block": m.swap_time(1),
        "swap 64 blocks": m.swap_time(64),
    }


def carry_over_tables(raw: dict, calibrated: GPUProfile, a100_names: list[str]) -> list[str]:
    spec48 = model_spec(raw["model"], layers=48)
    lines = []
    for name in a100_names:
        shipped = load_profile(name)
        suggested = dataclasses.replace(shipped, **{k: getattr(calibrated, k) for k in CARRY_OVER})
        lines += [f"**{name}** — factors:", "",
                  "| key | shipped | suggested | change |", "|---|---:|---:|---:|"]
        for key in CARRY_OVER:
            old, new = getattr(shipped, key), getattr(suggested, key)
            lines.append(f"| `{key}` | {_fmt(key, old)} | {_fmt(key, new)} | {_change(old, new)} |")
        before, after = reference_times(spec48, shipped), reference_times(spec48, suggested)
        lines += ["", f"**{name}** — modeled times, CodeLlama-34B at TP {REFERENCE_TP} (simulated GPU):", "",
                  "| step part | shipped ms | suggested ms | change |", "|---|---:|---:|---:|"]
        for what in before:
            lines.append(f"| {what} | {before[what] * 1e3:.2f} | {after[what] * 1e3:.2f} | {_change(before[what], after[what])} |")
        lines.append("")
    return lines


def proposal_section(proposal: dict | None, one_block: Row | None) -> list[str]:
    if not proposal:
        return []
    v = proposal["values"]
    seen = (f" (one block out at TP 1: {one_block.measured * 1e3:.2f} ms measured, "
            f"{one_block.calibrated * 1e3:.2f} ms modeled)" if one_block else "")
    return [
        "## A formula change the data support (not needed for the targets)",
        "",
        f"Swaps of a few blocks cost more than the formula says{seen}: {proposal['why']}. The change, "
        "additive and zero by default:",
        "",
        f"    {proposal['formula']}",
        "",
        f"fitted jointly: `swap_call_overhead_s` = {v['swap_call_overhead_s'] * 1e6:.2f} µs, "
        f"`swap_copy_overhead_s` = {v['swap_copy_overhead_s'] * 1e6:.2f} µs, "
        f"`swap_bandwidth_efficiency` = {v['swap_bandwidth_efficiency']:.3f}; median absolute error on the "
        f"per-block swap points {proposal['current_formula_median_abs_error_pct']:.1f}% → "
        f"{proposal['median_abs_error_pct']:.1f}%. These three values are stored under "
        "`calibration.proposed_formula_change` in the profile, not as top-level keys, so that the current "
        "cost model reads a consistent pair.",
        "",
    ]


def render(raw: dict, cmp: Comparison, datasheet: GPUProfile, calibrated: GPUProfile,
           calibrated_json: dict, paths: dict, a100_names: list[str]) -> str:
    env = raw["environment"]
    model = raw["model"]
    ceilings = raw.get("ceilings", {})
    calibration = calibrated_json.get("calibration", {})
    one_block = next((r for r in cmp.family("swap") if r.point.startswith("out n=1 ") and "TP 1" in r.point), None)
    skipped = raw.get("decode_skipped") or []
    bound = compute_bound_batches(raw, calibrated)
    log = paths["raw"].with_name(paths["raw"].name.replace("-raw.json", "-run.log"))
    out = [
        "# Calibration of the simulated GPU against a real NVIDIA H200",
        "",
        f"Measured on a **real GPU**: {env['gpu']}, driver {env['driver']}, torch {env['torch']}, "
        f"CUDA {env['cuda']}, Python {env['python']}, on {env['date']} (UTC); nvidia-smi: `{env.get('nvidia_smi')}`. "
        f"Comparison made on a CPU by `benchmarks/calibration_report.py` through `vllm_cfs.sim.cost_model`.",
        "",
        "Commands:",
        "",
        "    # on the GPU (needs only PyTorch)",
        "    python3 benchmarks/calibrate_gpu.py --out OUT",
        "    # here: the profile as committed (deterministic refit of the raw points) and this page",
        f"    python benchmarks/calibrate_gpu.py --from-raw {paths['raw']} --name {calibrated.name} --out DIR",
        f"    python benchmarks/calibration_report.py --raw {paths['raw']} --calibrated {paths['calibrated']} --out {paths['out']}",
        "",
        f"Files: `{paths['raw']}` (every measured point with all its samples), `{paths['calibrated']}` "
        f"(the calibrated profile, raw points under `measured`; use it with `VLLM_CFS_SIM_GPU={paths['calibrated']}`)"
        + (f", `{log}` (the GPU run's console output)." if log.exists() else "."),
        "",
        "## Result",
        "",
        f"Median absolute error of the cost model's prediction against the measurement, per family "
        f"(datasheet model = the shipped `{datasheet.name}` profile; calibrated model = `{calibrated.name}`):",
        "",
        *summary_table(cmp),
        "",
        "## What was measured",
        "",
        f"A decoder with CodeLlama-34B's shapes ({model['layers']} layers, hidden {model['hidden']}, "
        f"{model['heads']} heads, {model['kv_heads']} KV heads, head dim {model['head_dim']}, intermediate "
        f"{model['intermediate']}, vocab {model['vocab']}; {model['params'] / 1e9:.2f} B parameters, "
        f"{model['weight_bytes'] / 1e9:.1f} GB of random bf16 weights) on one GPU (TP 1). Times are medians of "
        "CUDA-event timings after warm-up, one synchronisation per repetition.",
        "",
        f"- **prefill**: {len(cmp.family('prefill'))} points, one sequence of 128–8192 tokens or a batch of equal "
        f"sequences (up to 8192 tokens in all); {raw['settings']['prefill_attention']}; logits for the last "
        "token of each sequence only, as vLLM computes them.",
        f"- **decode**: {len(cmp.family('decode'))} points, batch 1–128 × context 256–4096; "
        f"{raw['settings']['decode_kv_cache']}; {raw['settings']['decode_timing']}."
        + (" Not measured: " + "; ".join(f"B={s['batch']} ctx={s['context']} ({s['reason']})" for s in skipped) + "."
           if skipped else ""),
        f"- **swap**: blocks of 16 tokens between GPU and pinned host memory, both directions. "
        f"Copier: {raw['swap']['copier']}. The model's block is {model['copy_bytes'] // 1024} KiB per layer for K "
        f"(and for V) at TP 1, {model['block_bytes'] / 2**20:g} MiB in all; 1–512 blocks at that size, and 64 "
        "blocks at 4–128 KiB per copy (the per-layer blocks of TP 8, 4, 2 and of 32- and 64-token blocks), so that "
        "the per-copy overhead and the bandwidth separate. Every path was checked byte for byte before timing "
        f"({', '.join(k for k, ok in raw['swap']['verified'].items() if ok)}).",
        "- **ceilings** (for scale): " + "; ".join(filter(None, [
            f"8192³ bf16 GEMM {ceilings['gemm_bf16']['flops_per_s'] / 1e12:.0f} TFLOP/s "
            f"({ceilings['gemm_bf16']['flops_per_s'] / datasheet.peak_flops:.0%} of the {datasheet.peak_flops / 1e12:.0f} datasheet)"
            if "gemm_bf16" in ceilings else "",
            f"device copy {ceilings['device_copy']['bytes_per_s_read_plus_write'] / 1e12:.2f} TB/s read+write "
            f"({ceilings['device_copy']['bytes_per_s_read_plus_write'] / datasheet.hbm_bytes_per_s:.0%} of "
            f"{datasheet.hbm_bytes_per_s / 1e12:.1f})" if "device_copy" in ceilings else "",
            f"one 512 MiB pinned copy {ceilings['host_to_device']['bytes_per_s'] / 1e9:.1f} GB/s host→device, "
            f"{ceilings['device_to_host']['bytes_per_s'] / 1e9:.1f} GB/s device→host"
            if "host_to_device" in ceilings else ""])) + ".",
        "- **not measured**: the all-reduce at TP 2 (the two-GPU machine was not lent this session); the "
        "engine's per-step overhead (needs vLLM itself); both keep the datasheet profile's values.",
        "",
        "## The fit",
        "",
        "`benchmarks/calibrate_gpu.py` fits, in this order: `decode_bandwidth_efficiency` and "
        "`decode_flops_efficiency` on the decode points; `prefill_flops_efficiency` and "
        "`prefill_half_efficiency_tokens` on the prefill points (with the decode bandwidth just fitted, since a "
        "short prefill is bound by reading the weights); each pair by grid search minimising the sum of squared "
        "log errors (least squares of relative error, which the formulas' max() does not upset). "
        "`swap_copy_overhead_s` and `swap_bandwidth_efficiency` by non-negative linear least squares of relative "
        "error on the per-block points. `host_link_bytes_per_s` is the measured large pinned copy; "
        "`hbm_bytes_per_s` and `peak_flops` stay at the datasheet so that efficiencies compare across GPUs. "
        "Where the data leave a factor free the datasheet value is kept if it fits as well.",
        "",
        *factors_table(datasheet, calibrated, calibration.get("notes", {})),
        "",
        "Reading the factors: large prefills reach "
        f"{calibrated.prefill_flops_efficiency * calibrated.peak_flops / 1e12:.0f} TFLOP/s"
        + (f", {calibrated.prefill_flops_efficiency * calibrated.peak_flops / ceilings['gemm_bf16']['flops_per_s']:.0%} "
           "of the plain GEMM measured on the same card" if "gemm_bf16" in ceilings else "")
        + f"; decode reads at {calibrated.decode_bandwidth_efficiency * calibrated.hbm_bytes_per_s / 1e12:.2f} TB/s"
        + (f", {calibrated.decode_bandwidth_efficiency * calibrated.hbm_bytes_per_s / ceilings['device_copy']['bytes_per_s_read_plus_write']:.0%} "
           "of the device copy" if "device_copy" in ceilings else "")
        + ". " + (f"`decode_flops_efficiency` is pinned down by the batch {', '.join(map(str, bound))} points "
                  "alone (the only ones the calibrated model finds compute-bound); it stands in for the extra time "
                  "of matrix products with that many rows and is not a measured compute rate."
                  if bound else "No decode point is compute-bound, so `decode_flops_efficiency` is not measured."),
        "",
        "## prefill", "", *family_table(cmp, "prefill"), "",
        "## decode", "", *family_table(cmp, "decode"), "",
        "CUDA graph replay (what vLLM 0.9 does for decode) against eager execution of the same step: eager "
        f"launches took {eager_overhead(raw)} longer, which is why the profile is fitted to graph times.",
        "", *graph_vs_eager_table(raw), "",
        "## swap (vLLM 0.9's path: one cudaMemcpyAsync per block per layer, for K and for V)", "",
        *family_table(cmp, "swap"), "",
        f"Swap-in against swap-out of the same blocks: {swap_in_vs_out(raw)} (median); the cost model has one "
        "formula for both directions, and the fit splits the difference.",
        "",
        "## What a better swap path would save", "",
        "The same blocks moved by one `cudaMemcpyBatchAsync` call (all layers, K and V), and by a gather into "
        "a contiguous staging buffer followed by one copy (index_select / index_copy_ on the GPU, one pinned "
        "copy). Measured only; the cost model describes vLLM 0.9's per-block path.", "",
        *swap_paths_rows(raw), "",
        *proposal_section(calibration.get("proposed_formula_change"), one_block),
        "## Carrying the factors over to the A100 profiles (suggestion, not applied)",
        "",
        "The efficiencies are fractions of each card's own datasheet rates (and of its practical host link), "
        "measured on the same kernel families (cuBLAS GEMMs, flash attention, copy engines over PCIe), and the "
        "per-copy overhead is a host-side cost of issuing `cudaMemcpyAsync`; so they are the figures to carry. "
        "What does not carry: memory, bandwidths and rates (the A100 datasheets stay), the all-reduce and the "
        "step overhead (not measured). Caveats, not measured here: Hopper usually reaches a smaller fraction of "
        "its datasheet GEMM peak than Ampere does, so on an A100 the carried prefill efficiency is, if anything, "
        "low; and the per-copy overhead depends on the host CPU and driver as much as on the GPU. Should the "
        "proposed per-call term be adopted, carry its three values together instead of the pair below.",
        "",
        *carry_over_tables(raw, calibrated, a100_names),
        "Re-running the reference experiment (FCFS and CFS-10 P99 TTFT) with a recalibrated A100 profile is left "
        "to the experiment pipeline.",
        "",
    ]
    return "\n".join(out)


def build_report(raw_path: Path, calibrated_path: Path, datasheet_name: str, out: Path,
                 a100_names: list[str]) -> Comparison:
    """Write the page to `out`; the comparison it shows comes back for the console summary."""
    raw = read_raw(raw_path, "benchmarks/calibrate_gpu.py")
    try:
        datasheet = load_profile(datasheet_name)
        calibrated = load_profile(str(calibrated_path))
        calibrated_json = json.loads(calibrated_path.read_text())
        cmp = compare(raw, datasheet, calibrated)
        text = render(raw, cmp, datasheet, calibrated, calibrated_json,
                      {"raw": raw_path, "calibrated": calibrated_path, "out": out}, a100_names)
    except ProfileError as exc:
        raise CalibrationError(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return cmp
