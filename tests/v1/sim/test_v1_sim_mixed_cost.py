"""The V1 cost of one mixed step (prefill chunks and decodes in one pass), against numbers by hand."""

import pytest

from vllm_cfs.sim.cost_model import CostModel, PrefillChunk
from vllm_cfs.sim.model_dir import CODELLAMA_34B_CONFIG
from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import GPUProfile

# Round numbers so that every expected value below can be checked on paper.
ROUND_GPU = GPUProfile(
    name="round", description="round numbers for hand computation", source="test",
    memory_bytes=10**11, hbm_bytes_per_s=1e12, peak_flops=1e15, gpu_link_bytes_per_s=1e11,
    host_link_bytes_per_s=1e10, prefill_flops_efficiency=0.5, prefill_half_efficiency_tokens=100,
    decode_bandwidth_efficiency=0.5, decode_flops_efficiency=0.25, allreduce_latency_s=1e-5,
    allreduce_bandwidth_efficiency=0.5, swap_copy_overhead_s=1e-6, swap_bandwidth_efficiency=0.5,
    staged_swap_chunk_overhead_s=1e-4, staged_swap_bandwidth_efficiency=0.8, step_overhead_s=0.002,
    non_kv_overhead_bytes=10**9,
)
P = 33_743_970_304  # CodeLlama-34B's parameters; at TP 2 in bf16 also its weight bytes per GPU
KV = 98_304  # KV bytes per token per GPU at TP 2


@pytest.fixture
def model():
    return CostModel(ROUND_GPU, ModelSpec.from_config(CODELLAMA_34B_CONFIG), tensor_parallel_size=2)


def test_a_mixed_step_adds_both_parts_inside_one_roofline(model):
    # 100 new tokens after 1000 cached, and 4 decodes with contexts 100..400.
    prefill_flops = (2 * P * 100 + 4 * 48 * 8192 * 100 * (1000 + 50)) / 2
    assert prefill_flops == 3_456_972_390_400
    compute = prefill_flops / (1e15 * 0.5 * 100 / 200) + 2 * P * 4 / 2 / (1e15 * 0.25)
    memory = (P + KV * (1000 + 100 + 200 + 300 + 400)) / (1e12 * 0.5)
    assert (compute, memory) == (pytest.approx(0.014367793086464), pytest.approx(0.067881156608))
    cost = model.mixed_step_cost([PrefillChunk(100, cached_tokens=1000)], [100, 200, 300, 400])
    assert cost.compute == pytest.approx(compute)
    assert cost.memory == pytest.approx(memory)
    assert cost.forward == cost.memory  # memory-bound: the weights and 2000 tokens of KV
    assert cost.allreduce == pytest.approx(model.allreduce_time(104))  # over every token
    assert cost.total == pytest.approx(0.002 + memory + model.allreduce_time(104))


def test_the_weights_are_read_once_per_step(model):
    decodes = [1000] * 8
    apart = model.mixed_step_cost([PrefillChunk(100)], []).forward + model.mixed_step_cost([], decodes).forward
    together = model.mixed_step_cost([PrefillChunk(100)], decodes).forward
    assert together < apart
    assert together == pytest.approx((P + KV * 8000) / 5e11)


def test_a_large_chunk_is_bound_by_compute(model):
    cost = model.mixed_step_cost([PrefillChunk(2000)], [500] * 10)
    flops = (2 * P * 2000 + 4 * 48 * 8192 * 2000 * 1000) / 2
    assert cost.forward == pytest.approx(flops / (1e15 * 0.5 * 2000 / 2100) + 2 * P * 10 / 2 / 2.5e14)
    assert cost.forward == cost.compute > cost.memory


def test_one_part_alone_is_priced_as_v0_prices_it(model):
    only_prefill = model.mixed_step_cost([PrefillChunk(300), PrefillChunk(700)], [])
    assert only_prefill.forward == pytest.approx(model.prefill_time([PrefillChunk(300), PrefillChunk(700)]))
    only_decode = model.mixed_step_cost([], [100, 2000, 30])
    assert only_decode.forward == pytest.approx(model.decode_time([100, 2000, 30]))
    assert only_decode.allreduce == model.allreduce_time(3)


def test_an_empty_step_computes_nothing(model):
    cost = model.mixed_step_cost([], [])
    assert (cost.forward, cost.allreduce, cost.total) == (0.0, 0.0, 0.002)
