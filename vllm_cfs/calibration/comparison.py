"""Every measured point predicted through vllm_cfs.sim.cost_model, with two profiles."""

from __future__ import annotations

import dataclasses
import statistics

from vllm_cfs.calibration.formats import CalibrationError
from vllm_cfs.calibration.formulas import error_pct
from vllm_cfs.sim.cost_model import CostModel, PrefillChunk
from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import GPUProfile


@dataclasses.dataclass(frozen=True)
class Row:
    family: str
    point: str
    measured: float                 # seconds
    datasheet: float                # seconds, predicted with the datasheet profile
    calibrated: float               # seconds, predicted with the calibrated profile

    def error_pct(self, which: str) -> float:
        return error_pct(getattr(self, which), self.measured)


@dataclasses.dataclass(frozen=True)
class Comparison:
    rows: tuple[Row, ...]

    def family(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.family == name]

    def median_abs_error_pct(self, family: str, which: str) -> float:
        return statistics.median(abs(r.error_pct(which)) for r in self.family(family))

    @property
    def families(self) -> list[str]:
        return [f for f in ("prefill", "decode", "swap") if self.family(f)]


def model_spec(raw_model: dict, layers: int | None = None) -> ModelSpec:
    """The model that ran (or the same shapes with `layers` layers), as the cost model sees it."""
    spec = ModelSpec(num_layers=layers or raw_model["layers"], hidden_size=raw_model["hidden"],
                     num_attention_heads=raw_model["heads"], num_kv_heads=raw_model["kv_heads"],
                     head_dim=raw_model["head_dim"], intermediate_size=raw_model["intermediate"],
                     vocab_size=raw_model["vocab"], dtype_bytes=raw_model["dtype_bytes"],
                     tie_word_embeddings=False)
    if layers is None and spec.parameter_count != raw_model["params"]:
        raise CalibrationError(f"the cost model counts {spec.parameter_count} parameters, the measured model "
                          f"had {raw_model['params']}: the two disagree on the architecture")
    return spec


def swap_layout(spec: ModelSpec, copy_bytes: int) -> tuple[int, int]:
    """(TP, block size) whose per-layer K (or V) block is copy_bytes: how the cost model
    expresses a swap measured with another copy size (smaller at higher TP, larger blocks)."""
    options = []
    for tp in (1, 2, 4, 8):
        kv_heads = max(1, spec.num_kv_heads // tp)
        block, rest = divmod(copy_bytes, kv_heads * spec.head_dim * spec.dtype_bytes)
        if rest == 0 and block in (8, 16, 32, 64, 128):
            options.append((block != 16, tp, block))
    if not options:
        raise CalibrationError(f"no TP and block size give {copy_bytes}-byte copies for this model")
    _, tp, block = min(options)
    return tp, block


def compare(raw: dict, datasheet: GPUProfile, calibrated: GPUProfile) -> Comparison:
    spec = model_spec(raw["model"])
    models = {name: CostModel(gpu, spec, 1) for name, gpu in (("datasheet", datasheet), ("calibrated", calibrated))}
    rows = []
    for p in raw.get("prefill") or []:
        chunks = [PrefillChunk(t) for t in p["seq_lens"]]
        rows.append(Row("prefill", f"{len(p['seq_lens'])} x {p['seq_lens'][0]}", p["seconds"],
                        *(m.prefill_time(chunks) for m in models.values())))
    for p in raw.get("decode") or []:
        contexts = [p["context"]] * p["batch"]
        rows.append(Row("decode", f"B={p['batch']} ctx={p['context']}", p["seconds"],
                        *(m.decode_time(contexts) for m in models.values())))
    for p in (raw.get("swap") or {}).get("points", []):
        if p["path"] != "per_block":
            continue   # the cost model is of vLLM 0.9's path; the others are shown apart
        tp, block = swap_layout(spec, p["copy_bytes"])
        layout = f"TP {tp}" + (f", {block}-token blocks" if block != 16 else "")
        times = [CostModel(gpu, spec, tp, block).swap_time(p["blocks"]) for gpu in (datasheet, calibrated)]
        rows.append(Row("swap", f"{p['direction']} n={p['blocks']} ({p['copy_bytes'] // 1024} KiB/copy = {layout})",
                        p["seconds"], *times))
    return Comparison(tuple(rows))
