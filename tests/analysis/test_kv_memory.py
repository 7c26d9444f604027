"""KV bytes per token per GPU from a model's config.json."""

from __future__ import annotations

import json

import pytest

from vllm_cfs.analysis.kv_memory import GIB, dtype_bytes, kv_footprint
from vllm_cfs.sim.model_dir import codellama_34b_dir


@pytest.fixture(scope="module")
def codellama_config():
    return json.loads((codellama_34b_dir() / "config.json").read_text())


def test_codellama_34b_at_tp2(codellama_config):
    footprint = kv_footprint(codellama_config, tensor_parallel_size=2)
    c = codellama_config

    # K and V of every layer, for this GPU's half of the KV heads, in bf16.
    expected = c["num_hidden_layers"] * 2 * (c["num_key_value_heads"] // 2) * c["head_dim"] * 2
    assert footprint.bytes_per_token_per_gpu == expected
    assert footprint.block_bytes == expected * 16
    assert footprint.gib(1000) == pytest.approx(1000 * expected * 16 / GIB)
    calculation = footprint.calculation()
    assert f"{expected:,} bytes" in calculation and "/ 2 GPUs" in calculation


def test_tensor_parallelism_splits_the_kv_heads(codellama_config):
    one = kv_footprint(codellama_config, tensor_parallel_size=1)
    four = kv_footprint(codellama_config, tensor_parallel_size=4)
    assert one.bytes_per_token_per_gpu == 4 * four.bytes_per_token_per_gpu
    with pytest.raises(ValueError, match="do not split"):
        kv_footprint(codellama_config, tensor_parallel_size=3)


def test_dtypes_as_vllm_writes_them(codellama_config):
    assert dtype_bytes("torch.bfloat16") == dtype_bytes("float16") == 2
    assert dtype_bytes("torch.float32") == 4
    assert kv_footprint(codellama_config, 2, "torch.float32").bytes_per_token_per_gpu == \
        2 * kv_footprint(codellama_config, 2).bytes_per_token_per_gpu
    with pytest.raises(ValueError, match="unknown dtype"):
        dtype_bytes("int3")
