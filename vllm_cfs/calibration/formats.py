"""The calibration's files: raw.json as the GPU run writes it, and the simulator's GPU profile."""

from __future__ import annotations

import json
from pathlib import Path

SHIPPED_H200_PROFILE = Path(__file__).resolve().parents[1] / "sim" / "profiles" / "h200.json"
RAW_SCHEMA = "vllm-cfs gpu calibration raw v1"

# The agreed profile format, in its agreed key order (SI units throughout).
PROFILE_KEYS = (
    "name", "description", "source", "memory_bytes", "hbm_bytes_per_s", "peak_flops",
    "gpu_link_bytes_per_s", "host_link_bytes_per_s", "prefill_flops_efficiency",
    "prefill_half_efficiency_tokens", "decode_bandwidth_efficiency", "decode_flops_efficiency",
    "allreduce_latency_s", "allreduce_bandwidth_efficiency", "swap_copy_overhead_s",
    "swap_bandwidth_efficiency", "staged_swap_chunk_overhead_s", "staged_swap_bandwidth_efficiency",
    "step_overhead_s", "non_kv_overhead_bytes",
)

# Used only when the simulator's shipped h200.json is absent: datasheet figures (NVIDIA H200 SXM,
# DESIGN.md §3) with placeholder efficiencies that the fit replaces.
DATASHEET_H200 = {
    "name": "h200",
    "description": "NVIDIA H200 SXM, datasheet figures with assumed efficiencies",
    "source": "datasheet",
    "memory_bytes": 141 * 10**9,
    "hbm_bytes_per_s": 4.8e12,
    "peak_flops": 989e12,
    "gpu_link_bytes_per_s": 450e9,
    "host_link_bytes_per_s": 50e9,
    "prefill_flops_efficiency": 0.6,
    "prefill_half_efficiency_tokens": 256,
    "decode_bandwidth_efficiency": 0.75,
    "decode_flops_efficiency": 0.5,
    "allreduce_latency_s": 15e-6,
    "allreduce_bandwidth_efficiency": 0.7,
    "swap_copy_overhead_s": 8e-6,
    "swap_bandwidth_efficiency": 0.8,
    "staged_swap_chunk_overhead_s": 50e-6,
    "staged_swap_bandwidth_efficiency": 0.8,
    "step_overhead_s": 0.004,
    "non_kv_overhead_bytes": 2 * 1024**3,
}


class CalibrationError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def load_base_profile(path: Path | None) -> dict:
    if path is None:
        path = SHIPPED_H200_PROFILE if SHIPPED_H200_PROFILE.exists() else None
    if path is None:
        return dict(DATASHEET_H200)
    try:
        profile = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"cannot read base profile {path}: {exc}") from exc
    missing = [k for k in PROFILE_KEYS if k not in profile]
    if missing:
        raise CalibrationError(f"base profile {path} lacks keys: {', '.join(missing)}")
    return profile


def _read_json_object(path: Path, is_it, what: str) -> dict:
    """A JSON object from `path` that `is_it` accepts; else one line naming `what` it should have been."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict) or not is_it(raw):
        raise CalibrationError(f"{path} is not {what}")
    return raw


def read_raw(path: Path, writer: str) -> dict:
    """An earlier run's raw.json; `writer` names the script in the message for a foreign file."""
    return _read_json_object(path, lambda raw: raw.get("schema") == RAW_SCHEMA, f"a raw.json written by {writer}")


def read_allreduce_raw(path: Path) -> dict:
    """A two-GPU run of benchmarks/calibrate_allreduce.py."""
    def is_it(raw):
        points = raw.get("points")
        return (bool(points) and all({"tokens", "bytes", "median_s"} <= set(p) for p in points)
                and "gpus" in raw.get("environment", {}))

    return _read_json_object(path, is_it, "an allreduce-raw.json written by benchmarks/calibrate_allreduce.py")


def read_swap_speed(path: Path) -> dict:
    """A run of benchmarks/swap_speed.py."""
    return _read_json_object(path, lambda raw: isinstance(raw.get("runs"), dict) and "environment" in raw,
                             "a swap-speed.json written by benchmarks/swap_speed.py")


def default_name(gpu: str) -> str:
    """The fitted profile's name when --name is not given."""
    if "H200" in gpu.upper():
        return "h200-measured"
    slug = "".join(c if c.isalnum() else "-" for c in gpu.lower()).strip("-")
    return "-".join(filter(None, slug.split("-"))) + "-measured"
