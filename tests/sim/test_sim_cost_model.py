"""The cost model and memory plan against numbers computed by hand (CodeLlama-34B, TP 2)."""

import dataclasses

import pytest

from vllm_cfs.sim.cost_model import CostModel, PrefillChunk, StepWork
from vllm_cfs.sim.memory import ModelDoesNotFit, plan_kv_cache
from vllm_cfs.sim.model_dir import CODELLAMA_34B_CONFIG
from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import GPUProfile, load_profile

# Round numbers so that every expected value below can be checked on paper.
ROUND_GPU = GPUProfile(
    name="round", description="round numbers for hand computation", source="test",
    memory_bytes=10**11, hbm_bytes_per_s=1e12, peak_flops=1e15, gpu_link_bytes_per_s=1e11,
    host_link_bytes_per_s=1e10, prefill_flops_efficiency=0.5, prefill_half_efficiency_tokens=100,
    decode_bandwidth_efficiency=0.5, decode_flops_efficiency=0.25, allreduce_latency_s=1e-5,
    allreduce_bandwidth_efficiency=0.5, swap_copy_overhead_s=1e-6, swap_bandwidth_efficiency=0.5,
    staged_swap_chunk_overhead_s=1e-4, staged_swap_bandwidth_efficiency=0.8, step_overhead_s=0.002, non_kv_overhead_bytes=10**9,
)
P = 33_743_970_304  # 48 * (2*8192*8192 + 2*8192*1024 + 3*8192*22016 + 2*8192) + 2*32000*8192 + 8192


@pytest.fixture
def codellama():
    return ModelSpec.from_config(CODELLAMA_34B_CONFIG)


@pytest.fixture
def model(codellama):
    return CostModel(ROUND_GPU, codellama, tensor_parallel_size=2)


def test_codellama_numbers(codellama, model):
    assert codellama.parameter_count == P
    assert model.weight_bytes_per_gpu == P  # 2 bytes per parameter over 2 GPUs
    assert model.kv_bytes_per_token_per_gpu == 48 * 2 * 4 * 128 * 2 == 96 * 1024
    assert model.block_bytes == 16 * 96 * 1024 == 1.5 * 1024**2


def test_prefill_short_is_bound_by_reading_the_weights(model):
    # compute: (2P*100 + 4*48*8192*100^2/2) / 2 FLOPs at 1e15 * 0.5 * 100/200 -> 0.0135 s
    # weights: P bytes / (1e12 * 0.5) = 0.067487940608 s, the larger
    assert model.prefill_time([PrefillChunk(100)]) == pytest.approx(0.067487940608)


def test_prefill_long_is_bound_by_compute(model):
    flops = (2 * P * 1000 + 4 * 48 * 8192 * 1000**2 / 2) / 2
    assert flops == 34_137_186_304_000
    assert model.prefill_time([PrefillChunk(1000)]) == pytest.approx(34_137_186_304_000 * 1100 / 5e17)


def test_prefill_attention_grows_with_cached_context(model):
    # Each of the 1000 new tokens also attends to the 1000 cached ones: 4 * layers * hidden FLOPs per pair.
    fresh = model.prefill_flops_per_gpu([PrefillChunk(1000)])
    chunked = model.prefill_flops_per_gpu([PrefillChunk(1000, cached_tokens=1000)])
    assert chunked - fresh == pytest.approx(4 * 48 * 8192 * 1000 * 1000 / 2)


def test_decode_memory_bound_and_compute_bound(model):
    assert model.decode_time([100, 200, 300, 400]) == pytest.approx((P + 98_304 * 1000) / 5e11)
    assert model.decode_time([0] * 1000) == pytest.approx(2 * P * 1000 / 2 / 2.5e14)


def test_allreduce(model, codellama):
    one = 1e-5 + 2 * 1 / 2 * (10 * 8192 * 2) / (1e11 * 0.5)
    assert model.allreduce_time(10) == pytest.approx(2 * 48 * one)
    assert CostModel(ROUND_GPU, codellama, tensor_parallel_size=1).allreduce_time(10) == 0


def test_swap(model):
    assert model.swap_time(3) == pytest.approx(3 * 48 * 2 * 1e-6 + 3 * 1_572_864 / 5e9)
    assert model.swap_time(0) == 0


def test_staged_swap_pays_per_staging_load_not_per_copy(codellama):
    staged = CostModel(ROUND_GPU, codellama, tensor_parallel_size=2, staging_blocks=32)
    block = 1_572_864
    assert staged.swap_time(1) == pytest.approx(1e-4 + block / 8e9)
    assert staged.swap_time(32) == pytest.approx(1e-4 + 32 * block / 8e9)
    assert staged.swap_time(33) == pytest.approx(2e-4 + 33 * block / 8e9)  # a second load of the buffer
    assert staged.swap_time(0) == 0
    with pytest.raises(ValueError, match="staging_blocks"):
        CostModel(ROUND_GPU, codellama, tensor_parallel_size=2, staging_blocks=0)


def test_step_is_the_sum_of_its_parts(model):
    cost = model.step_cost(StepWork(decode_contexts=(100, 200, 300, 400), swap_out_blocks=3))
    assert cost.swap_in == 0 and cost.prefill == 0
    assert cost.total == pytest.approx(0.072002096128)


def test_activation_peak(model):
    per_token = 2 * 8192 + (64 + 16) * 128 / 2 + 3 * 22016 / 2
    logits = 2 * 256 * 32000 / 2 * 4
    assert model.activation_peak_bytes(16384, 256) == 16384 * per_token * 2 + logits == 1_819_541_504


def test_reference_setup_blocks(codellama):
    gpu = load_profile("a100-40gb")
    cost = CostModel(gpu, codellama, tensor_parallel_size=2)
    plan = plan_kv_cache(
        memory_bytes=gpu.memory_bytes, gpu_memory_utilization=0.9, weight_bytes=cost.weight_bytes_per_gpu,
        activation_bytes=cost.activation_peak_bytes(16384, 256), overhead_bytes=gpu.non_kv_overhead_bytes,
        block_bytes=cost.block_bytes, swap_space_bytes=16 * 1024**3, block_size=16, max_model_len=16384,
    )
    # (39.59 GiB as CUDA reports it * 0.9 - P bytes - 1_819_541_504 - 1 GiB) // 1.5 MiB; 16 GiB // 1.5 MiB
    assert plan.gpu_blocks == (42_505_273_344 * 0.9 - P - 1_819_541_504 - 1_073_741_824) // 1_572_864 == 1028
    assert plan.cpu_blocks == 10922


def test_model_that_does_not_fit_says_why(codellama):
    gpu = load_profile("a100-40gb")
    cost = CostModel(gpu, codellama, tensor_parallel_size=1)
    with pytest.raises(ModelDoesNotFit, match=r"weights 62\.85 GiB.*tensor-parallel-size"):
        plan_kv_cache(
            memory_bytes=gpu.memory_bytes, gpu_memory_utilization=0.9, weight_bytes=cost.weight_bytes_per_gpu,
            activation_bytes=cost.activation_peak_bytes(16384, 256), overhead_bytes=gpu.non_kv_overhead_bytes,
            block_bytes=cost.block_bytes, swap_space_bytes=0, block_size=16, max_model_len=16384,
        )


def test_max_model_len_must_fit_in_the_cache(codellama):
    with pytest.raises(ModelDoesNotFit, match=r"max seq len \(16384\)"):
        plan_kv_cache(
            memory_bytes=40 * 1024**3, gpu_memory_utilization=0.9, weight_bytes=P, activation_bytes=0,
            overhead_bytes=38_654_705_664 - P - 100 * 1_572_864, block_bytes=1_572_864, swap_space_bytes=0,
            block_size=16, max_model_len=16384,
        )


def test_served_dtype_decides_bytes(codellama):
    fp32 = dataclasses.replace(codellama, dtype_bytes=4)
    assert CostModel(ROUND_GPU, fp32, 2).kv_bytes_per_token_per_gpu == 2 * 96 * 1024
