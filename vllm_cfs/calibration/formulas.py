"""The cost model's formulas, as agreed with vllm_cfs.sim.cost_model (TP 1 here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelNumbers:
    """What the cost model needs of a model, for the model that actually ran."""
    layers: int
    hidden: int
    params: int
    weight_bytes: int
    kv_bytes_per_token: int

    @classmethod
    def from_dict(cls, model: dict) -> "ModelNumbers":
        return cls(model["layers"], model["hidden"], model["params"], model["weight_bytes"],
                   model["kv_bytes_per_token"])


def prefill_flops(m: ModelNumbers, seq_lens) -> float:
    return 2 * m.params * sum(seq_lens) + 4 * m.layers * m.hidden * sum(t * t for t in seq_lens) / 2


def predict_prefill(p: dict, m: ModelNumbers, seq_lens) -> float:
    tokens = sum(seq_lens)
    eff = p["prefill_flops_efficiency"] * tokens / (tokens + p["prefill_half_efficiency_tokens"])
    return max(prefill_flops(m, seq_lens) / (p["peak_flops"] * eff),
               m.weight_bytes / (p["hbm_bytes_per_s"] * p["decode_bandwidth_efficiency"]))


def predict_decode(p: dict, m: ModelNumbers, batch: int, context: int) -> float:
    read = m.weight_bytes + m.kv_bytes_per_token * batch * context
    return max(read / (p["hbm_bytes_per_s"] * p["decode_bandwidth_efficiency"]),
               2 * m.params * batch / (p["peak_flops"] * p["decode_flops_efficiency"]))


def predict_swap(p: dict, copies: int, total_bytes: int) -> float:
    return (copies * p["swap_copy_overhead_s"]
            + total_bytes / (p["host_link_bytes_per_s"] * p["swap_bandwidth_efficiency"]))


def predict_swap_with_calls(p: dict, layers: int, copies: int, total_bytes: int) -> float:
    """The proposed swap formula: predict_swap plus 2 * layers * swap_call_overhead_s."""
    return 2 * layers * p["swap_call_overhead_s"] + predict_swap(p, copies, total_bytes)


def error_pct(pred: float, meas: float) -> float:
    """Prediction error as a percentage of the measurement."""
    return 100.0 * (pred - meas) / meas
