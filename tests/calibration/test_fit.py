"""The fit recovers a known profile from noisy synthetic measurements."""

import numpy as np
import pytest

from vllm_cfs.calibration.decoder import grouped_decode_attention
from vllm_cfs.calibration.fit import fit_profile, fit_swap
from vllm_cfs.calibration.formats import DATASHEET_H200
from vllm_cfs.calibration.formulas import ModelNumbers, predict_decode, predict_prefill, predict_swap
from vllm_cfs.calibration.plans import FULL_PLAN
from vllm_cfs.calibration.shapes import CODELLAMA_34B

TRUTH = {
    "prefill_flops_efficiency": 0.62,
    "prefill_half_efficiency_tokens": 96,
    "decode_bandwidth_efficiency": 0.74,
    "decode_flops_efficiency": 0.45,
    "swap_copy_overhead_s": 3e-6,
    "swap_bandwidth_efficiency": 0.7,
    "host_link_bytes_per_s": 55e9,
}


def synthetic_raw(truth, decode_batches=(1, 8, 64, 256, 512), noise=0.02, seed=0):
    """A raw.json as the GPU run writes it, with times from the formulas under log-normal noise."""
    rng = np.random.default_rng(seed)
    shape = CODELLAMA_34B
    m = ModelNumbers.from_dict(shape.describe())
    profile = {**DATASHEET_H200, **truth}

    def jitter(t):
        return float(t * np.exp(rng.normal(0.0, noise)))

    prefill = [{"seq_lens": list(s), "tokens": sum(s), "seconds": jitter(predict_prefill(profile, m, s))}
               for s in FULL_PLAN.prefill]
    decode = [{"batch": b, "context": c, "seconds": jitter(predict_decode(profile, m, b, c))}
              for b in decode_batches for c in (256, 1024, 4096)]
    swap = []
    for copy_bytes, blocks in [(shape.copy_bytes, (1, 4, 16, 64, 256)), (4096, (64,)), (131072, (64,))]:
        for n in blocks:
            copies = n * shape.layers * 2
            t = predict_swap(profile, copies, copies * copy_bytes)
            swap.append({"path": "per_block", "direction": "out", "blocks": n, "copy_bytes": copy_bytes,
                         "copies": copies, "bytes": copies * copy_bytes, "seconds": jitter(t)})
    link = {"bytes_per_s": truth["host_link_bytes_per_s"]}
    return {"schema": "vllm-cfs gpu calibration raw v1",
            "environment": {"device": "cuda", "gpu": "Synthetic H200", "driver": "0", "torch": "0", "cuda": "0",
                            "python": "3", "memory_bytes": 150_000_000_000, "date": "2026-11-29T00:00:00Z"},
            "model": shape.describe(), "ceilings": {"host_to_device": link, "device_to_host": link},
            "prefill": prefill, "decode": decode, "swap": {"points": swap}}


def test_fit_recovers_known_factors_from_noisy_points():
    fit = fit_profile(synthetic_raw(TRUTH), DATASHEET_H200)
    v = fit.values
    assert v["prefill_flops_efficiency"] == pytest.approx(TRUTH["prefill_flops_efficiency"], abs=0.02)
    assert v["prefill_half_efficiency_tokens"] == pytest.approx(TRUTH["prefill_half_efficiency_tokens"], abs=40)
    assert v["decode_bandwidth_efficiency"] == pytest.approx(TRUTH["decode_bandwidth_efficiency"], abs=0.015)
    assert v["decode_flops_efficiency"] == pytest.approx(TRUTH["decode_flops_efficiency"], abs=0.02)
    assert v["swap_copy_overhead_s"] == pytest.approx(TRUTH["swap_copy_overhead_s"], rel=0.1)
    assert v["swap_bandwidth_efficiency"] == pytest.approx(TRUTH["swap_bandwidth_efficiency"], rel=0.1)
    assert v["host_link_bytes_per_s"] == TRUTH["host_link_bytes_per_s"]
    assert v["memory_bytes"] == 150_000_000_000


def test_factor_the_data_cannot_see_keeps_the_base_value():
    # with no batch large enough to be compute-bound, decode_flops_efficiency is unconstrained
    # (noise-free: with noise, a low enough value can fit the noise of the largest batch)
    raw = synthetic_raw(TRUTH, decode_batches=(1, 8, 32), noise=0.0)
    base = {**DATASHEET_H200, "decode_flops_efficiency": 0.55}
    fit = fit_profile(raw, base)
    assert fit.values["decode_flops_efficiency"] == pytest.approx(0.55)
    assert fit.values["decode_bandwidth_efficiency"] == pytest.approx(TRUTH["decode_bandwidth_efficiency"], abs=0.015)


def test_swap_faster_than_the_link_pins_efficiency_at_one():
    # copies that beat the "measured" link: an efficiency above 1 would be refused by the loader
    truth = {**TRUTH, "swap_bandwidth_efficiency": 1.0, "host_link_bytes_per_s": 55e9}
    raw = synthetic_raw(truth, noise=0.0)
    for p in raw["swap"]["points"]:
        p["seconds"] *= 0.8
    fitted = fit_swap(raw["swap"]["points"], 55e9)
    assert fitted["swap_bandwidth_efficiency"] == 1.0
    assert fitted["swap_copy_overhead_s"] > 0


def test_per_call_term_is_found_when_present():
    # the proposed formula: a fixed 2 * layers * call cost on top of the agreed one
    raw = synthetic_raw(TRUTH, noise=0.0)
    for p in raw["swap"]["points"]:
        p["seconds"] += 2 * 48 * 5e-6
    fitted = fit_swap(raw["swap"]["points"], 55e9, call_layers=48)
    assert fitted["swap_call_overhead_s"] == pytest.approx(5e-6, rel=0.01)
    assert fitted["swap_copy_overhead_s"] == pytest.approx(TRUTH["swap_copy_overhead_s"], rel=0.01)
    assert fitted["swap_bandwidth_efficiency"] == pytest.approx(TRUTH["swap_bandwidth_efficiency"], rel=0.01)


def test_grouped_decode_attention_is_gqa_attention():
    import torch

    gen = torch.Generator().manual_seed(1)
    q = torch.randn(3, 8, 16, generator=gen, dtype=torch.float64)
    k = torch.randn(3, 2, 11, 16, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 2, 11, 16, generator=gen, dtype=torch.float64)
    got = grouped_decode_attention(torch.nn.functional, q, k, v)
    # reference: every query head attends to its KV head (h // group), K/V expanded explicitly
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.unsqueeze(2), k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1))
    assert torch.allclose(got, ref.reshape(3, 8 * 16), atol=1e-12)


def test_model_shape_counts_codellama_34b():
    shape = CODELLAMA_34B
    assert shape.params == 33_743_970_304
    assert shape.kv_bytes_per_token == 48 * 2 * 8 * 128 * 2
    assert shape.copy_bytes == 32 * 1024 and shape.block_bytes == 3 * 1024**2
