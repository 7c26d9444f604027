"""The two commands: calibrate (measure a GPU or reread a run, fit, write raw.json, profile.json
and table.md) and report (docs/calibration.md through the simulator's cost model)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vllm_cfs.calibration.fit import build_profile, fit_profile
from vllm_cfs.calibration.formats import (CalibrationError, default_name, load_base_profile, read_allreduce_raw,
                                           read_raw, read_swap_speed)
from vllm_cfs.calibration.measure import measure
from vllm_cfs.calibration.shapes import CODELLAMA_34B
from vllm_cfs.calibration.table import comparison_rows, median_abs_errors, render_table, summary


def write_outputs(out: Path, raw: dict, base: dict, name: str, allreduce_raw: dict | None = None,
                  swap_speed: dict | None = None) -> tuple[dict, str, dict]:
    """Fit, then write profile.json and table.md; returns the profile, the table and the medians."""
    fit = fit_profile(raw, base, allreduce_raw, swap_speed)
    profile = build_profile(raw, base, fit, name, allreduce_raw, swap_speed)
    names = ["datasheet", "fitted"]
    rows = comparison_rows(raw, {"datasheet": base, "fitted": profile})
    table = render_table(raw, rows, names)
    (out / "profile.json").write_text(json.dumps(profile, indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")
    return profile, table, median_abs_errors(rows, names)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Measure prefill, decode and KV-swap latencies of CodeLlama-34B-shaped work on a "
                    "CUDA GPU and fit a simulated-GPU profile (writes raw.json, profile.json, table.md).")
    parser.add_argument("--out", type=Path, default=Path("calibration-out"), help="output folder (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a small sweep for a smoke run")
    parser.add_argument("--layers", type=int, help="decoder layers to build (default: all 48 if they fit in "
                                                   "55%% of the GPU's memory, else as many as do)")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU only: a tiny model and tiny sweeps through every code path except CUDA "
                             "events, graphs and the C++ copier; the figures mean nothing")
    parser.add_argument("--from-raw", type=Path, metavar="RAW_JSON",
                        help="measure nothing: fit and write profile.json and table.md from an earlier raw.json")
    parser.add_argument("--allreduce-raw", type=Path, metavar="JSON",
                        help="also fit the all-reduce constants to a two-GPU run of benchmarks/calibrate_allreduce.py")
    parser.add_argument("--swap-speed-raw", type=Path, metavar="JSON",
                        help="also fit the staged swap constants to a run of benchmarks/swap_speed.py")
    parser.add_argument("--base-profile", type=Path,
                        help="profile whose datasheet figures and unfitted keys are used "
                             "(default: vllm_cfs/sim/profiles/h200.json, else built-in H200 datasheet figures)")
    parser.add_argument("--name", help="name of the fitted profile (default: h200-measured on an H200, "
                                       "else derived from the GPU name)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    args = parser.parse_args(argv)
    if args.layers is not None and not 1 <= args.layers <= CODELLAMA_34B.layers:
        parser.error(f"--layers must be between 1 and {CODELLAMA_34B.layers}, got {args.layers}")
    if args.from_raw and (args.dry_run or args.quick or args.layers):
        parser.error("--from-raw measures nothing: --dry-run, --quick and --layers do not apply")
    return args


def main(argv=None) -> int:
    """benchmarks/calibrate_gpu.py: 0 on success, 2 on a user-facing error."""
    args = parse_args(argv)
    try:
        base = load_base_profile(args.base_profile)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.from_raw:
            raw = read_raw(args.from_raw, "this script")
        else:
            import torch

            if not args.dry_run and not torch.cuda.is_available():
                raise CalibrationError("no CUDA GPU visible: use --dry-run for a CPU check, or --from-raw to refit")
            raw = measure(args, torch, args.out)
        name = args.name or ("cpu-dry-run" if raw["environment"]["device"] == "cpu"
                             else default_name(raw["environment"]["gpu"]))
        allreduce_raw = read_allreduce_raw(args.allreduce_raw) if args.allreduce_raw else None
        swap_speed = read_swap_speed(args.swap_speed_raw) if args.swap_speed_raw else None
        profile, table, medians = write_outputs(args.out, raw, base, name, allreduce_raw, swap_speed)
    except CalibrationError as exc:
        print(f"calibrate_gpu: error: {exc}", file=sys.stderr)
        return 2
    print(table)
    print(summary(profile, medians))
    if raw.get("errors"):
        print("families that failed: " + "; ".join(f"{k}: {v}" for k, v in raw["errors"].items()))
    print(f"wrote {args.out / 'raw.json'}, {args.out / 'profile.json'}, {args.out / 'table.md'}")
    return 0


def report_main(argv=None) -> int:
    """benchmarks/calibration_report.py: 0 on success, 2 on a user-facing error."""
    # imported here: the simulator's cost model is the report's alone, and the measuring side
    # must run on a GPU machine that has only torch and numpy
    from vllm_cfs.calibration.report import TARGETS_PCT, build_report

    parser = argparse.ArgumentParser(
        description="Compare measured GPU latencies with the cost model (datasheet and calibrated profiles) "
                    "and write the calibration page.")
    parser.add_argument("--raw", type=Path, default=Path("profiles/h200-raw.json"),
                        help="raw measurements from calibrate_gpu.py (default %(default)s)")
    parser.add_argument("--calibrated", type=Path, default=Path("profiles/h200-measured.json"),
                        help="the fitted profile (default %(default)s)")
    parser.add_argument("--datasheet", default="h200", help="shipped profile to compare with (default %(default)s)")
    parser.add_argument("--a100", nargs="*", default=["a100-40gb", "a100-80gb"],
                        help="shipped profiles to suggest carried-over factors for (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("docs/calibration.md"), help="page to write (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        cmp = build_report(args.raw, args.calibrated, args.datasheet, args.out, args.a100)
    except CalibrationError as exc:
        print(f"calibration_report: error: {exc}", file=sys.stderr)
        return 2
    for fam in cmp.families:
        print(f"{fam:8s} median abs error: datasheet {cmp.median_abs_error_pct(fam, 'datasheet'):5.1f}%  "
              f"calibrated {cmp.median_abs_error_pct(fam, 'calibrated'):5.1f}%  (target ≤ {TARGETS_PCT[fam]:.0f}%)")
    print(f"wrote {args.out}")
    return 0
