"""GPU profiles: the numbers the cost model needs, loaded from a flat JSON file.

The format is shared with ``benchmarks/calibrate_gpu.py`` (which measures a real GPU and writes
one), so every key is in SI base units: bytes, seconds, FLOP/s, bytes/s. Keys beyond the ones
below are allowed (e.g. ``"measured"`` raw points) and ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

PROFILE_ENV = "VLLM_CFS_SIM_GPU"


class ProfileError(ValueError):
    """A profile name or file that cannot be used; the message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class GPUProfile:
    name: str
    description: str
    source: str
    memory_bytes: int  # bytes of GPU memory
    hbm_bytes_per_s: float  # datasheet HBM bandwidth, bytes/s
    peak_flops: float  # dense bf16 FLOP/s
    gpu_link_bytes_per_s: float  # GPU-GPU bandwidth per direction, bytes/s
    host_link_bytes_per_s: float  # GPU <-> pinned host memory per direction, bytes/s
    prefill_flops_efficiency: float  # fraction of peak_flops large prefills reach
    prefill_half_efficiency_tokens: float  # prefill tokens at which efficiency is half (0 = no ramp)
    decode_bandwidth_efficiency: float  # fraction of hbm_bytes_per_s decode reaches
    decode_flops_efficiency: float  # fraction of peak_flops a compute-bound decode reaches
    allreduce_latency_s: float  # fixed cost of one all-reduce call, s
    allreduce_bandwidth_efficiency: float  # fraction of gpu_link_bytes_per_s all-reduce reaches
    swap_copy_overhead_s: float  # fixed cost of one cudaMemcpyAsync, s
    swap_bandwidth_efficiency: float  # fraction of host_link_bytes_per_s block copies reach
    staged_swap_chunk_overhead_s: float  # staged swap (vllm_cfs.swap): fixed cost per staging-buffer load, s
    staged_swap_bandwidth_efficiency: float  # staged swap: fraction of host_link_bytes_per_s it reaches
    step_overhead_s: float  # fixed cost of one engine step, s
    non_kv_overhead_bytes: int  # memory besides weights, KV and activations, bytes

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str) -> "GPUProfile":
        values = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                raise ProfileError(f"GPU profile {origin} lacks the key {field.name!r}")
            raw = data[field.name]
            if field.type == "str":
                if not isinstance(raw, str):
                    raise ProfileError(f"GPU profile {origin}: {field.name} must be a string")
                values[field.name] = raw
                continue
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
                raise ProfileError(f"GPU profile {origin}: {field.name} must be a finite number, got {raw!r}")
            if raw < 0 or (raw == 0 and field.name not in _MAY_BE_ZERO):
                raise ProfileError(f"GPU profile {origin}: {field.name} must be > 0, got {raw!r}")
            if field.name.endswith("_efficiency") and raw > 1:
                raise ProfileError(f"GPU profile {origin}: {field.name} is a fraction, got {raw!r}")
            values[field.name] = int(raw) if field.type == "int" else float(raw)
        return cls(**values)


# Fixed costs may be measured as negligible; rates, capacities and efficiencies may not.
_MAY_BE_ZERO = {
    "prefill_half_efficiency_tokens",
    "allreduce_latency_s",
    "swap_copy_overhead_s",
    "staged_swap_chunk_overhead_s",
    "step_overhead_s",
    "non_kv_overhead_bytes",
}


def shipped_profile_names() -> list[str]:
    folder = resources.files(__package__).joinpath("profiles")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_profile(name_or_path: str) -> GPUProfile:
    """A shipped profile by name (``a100-40gb``...) or any profile JSON file by path."""
    if name_or_path in shipped_profile_names():
        text = resources.files(__package__).joinpath("profiles", f"{name_or_path}.json").read_text()
        origin = name_or_path
    elif name_or_path.endswith(".json") or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ProfileError(f"{PROFILE_ENV}={name_or_path}: no such profile file")
        text = path.read_text()
        origin = str(path)
    else:
        raise ProfileError(
            f"{PROFILE_ENV}={name_or_path!r} is not a GPU profile: use one of "
            f"{', '.join(shipped_profile_names())} or a path to a profile JSON file"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"GPU profile {origin} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"GPU profile {origin} must be a JSON object")
    return GPUProfile.from_mapping(data, origin)
