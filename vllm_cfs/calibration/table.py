"""table.md: every measured point against the predictions of the datasheet and fitted profiles."""

from __future__ import annotations

import statistics

from vllm_cfs.calibration.formulas import ModelNumbers, error_pct, predict_decode, predict_prefill, predict_swap


def comparison_rows(raw: dict, profiles: dict[str, dict]) -> dict[str, list[dict]]:
    """Every measured point with each profile's prediction, by family (local formulas)."""
    m = ModelNumbers.from_dict(raw["model"])
    rows: dict[str, list[dict]] = {"prefill": [], "decode": [], "swap": []}
    for p in raw.get("prefill") or []:
        label = f"{len(p['seq_lens'])} x {p['seq_lens'][0]}"
        rows["prefill"].append({"point": label, "measured": p["seconds"],
                                **{k: predict_prefill(pr, m, p["seq_lens"]) for k, pr in profiles.items()}})
    for p in raw.get("decode") or []:
        rows["decode"].append({"point": f"B={p['batch']} ctx={p['context']}", "measured": p["seconds"],
                               **{k: predict_decode(pr, m, p["batch"], p["context"]) for k, pr in profiles.items()}})
    for p in (raw.get("swap") or {}).get("points", []):
        if p["path"] != "per_block":
            continue
        rows["swap"].append({"point": f"{p['direction']} n={p['blocks']} {p['copy_bytes'] / 1024:g} KiB/copy",
                             "measured": p["seconds"],
                             **{k: predict_swap(pr, p["copies"], p["bytes"]) for k, pr in profiles.items()}})
    return rows


def median_abs_errors(rows: dict[str, list[dict]], names) -> dict[str, dict[str, float]]:
    """Per family, each profile's median absolute % error."""
    return {fam: {n: statistics.median(abs(error_pct(r[n], r["measured"])) for r in rs) for n in names}
            for fam, rs in rows.items() if rs}


def swap_paths_rows(raw: dict) -> list[str]:
    """The three swap paths side by side at the model's own block size, as table lines; none
    without per_block points, the baseline of the speed-ups."""
    points = (raw.get("swap") or {}).get("points", [])
    copy_bytes = raw["model"]["copy_bytes"]
    by_key = {(p["path"], p["direction"], p["blocks"]): p["seconds"] for p in points
              if p["copy_bytes"] == copy_bytes}
    paths = [q for q in ("per_block", "batched_memcpy", "staged") if any(k[0] == q for k in by_key)]
    if "per_block" not in paths:
        return []
    lines = ["| direction | blocks | MiB | " + " | ".join(f"{q} ms" for q in paths)
             + " | " + " | ".join(f"{q} speed-up" for q in paths[1:]) + " |",
             "|---|---:|---:|" + "---:|" * (2 * len(paths) - 1)]
    for direction in ("out", "in"):
        for n in sorted({k[2] for k in by_key if k[1] == direction}):
            base = by_key.get(("per_block", direction, n))
            cells = [by_key.get((q, direction, n)) for q in paths]
            mib = n * raw["model"]["block_bytes"] / 2**20
            lines.append(f"| {direction} | {n} | {mib:g} | "
                         + " | ".join("-" if c is None else f"{c * 1e3:.3f}" for c in cells) + " | "
                         + " | ".join("-" if c is None or base is None else f"{base / c:.1f}x" for c in cells[1:])
                         + " |")
    return lines


def swap_paths_section(raw: dict) -> list[str]:
    rows = swap_paths_rows(raw)
    return ["## swap paths compared", "", *rows, ""] if rows else []


def render_table(raw: dict, rows: dict[str, list[dict]], names: list[str]) -> str:
    """table.md's text."""
    env = raw["environment"]
    lines = [f"# Measured vs predicted: {env['gpu']}, {env['date']}",
             "",
             f"Driver {env['driver']}, torch {env['torch']}, CUDA {env['cuda']}; model: "
             f"{raw['model']['layers']} CodeLlama-34B layers, random bf16 weights. Times in ms; "
             "error = (predicted - measured) / measured. Predictions from the formulas in "
             "benchmarks/calibrate_gpu.py (TP 1).", ""]
    medians = median_abs_errors(rows, names)
    for fam, rs in rows.items():
        if not rs:
            continue
        lines += [f"## {fam}", "",
                  "| point | measured | " + " | ".join(f"{n} | err %" for n in names) + " |",
                  "|---|---:|" + "---:|---:|" * len(names)]
        for r in rs:
            lines.append(f"| {r['point']} | {r['measured'] * 1e3:.3f} | " + " | ".join(
                f"{r[n] * 1e3:.3f} | {error_pct(r[n], r['measured']):+.1f}" for n in names) + " |")
        lines += ["", "median absolute error: " + ", ".join(f"{n} {medians[fam][n]:.1f}%" for n in names), ""]
    return "\n".join(lines + swap_paths_section(raw))


def summary(profile: dict, medians: dict) -> str:
    """The console's closing lines: the fitted factors and the error before and after."""
    lines = ["", "fitted profile:"]
    for key in ("memory_bytes", "host_link_bytes_per_s", "prefill_flops_efficiency",
                "prefill_half_efficiency_tokens", "decode_bandwidth_efficiency",
                "decode_flops_efficiency", "swap_copy_overhead_s", "swap_bandwidth_efficiency"):
        lines.append(f"  {key:32s} {profile[key]:.6g}")
    lines.append("median abs error (datasheet -> fitted): " + "; ".join(
        f"{fam} {m['datasheet']:.1f}% -> {m['fitted']:.1f}%" for fam, m in medians.items()))
    return "\n".join(lines)
