"""How many bytes of KV cache one token takes on one GPU, from the model's config.json and TP.

vLLM keeps, for every layer, a key and a value vector per KV head; tensor parallelism splits the
KV heads across the GPUs. So per token and GPU:

    layers x 2 (K and V) x (KV heads / TP) x head dim x bytes per element

and a block holds ``block_size`` tokens (16 in vLLM's CUDA default).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

GIB = 1024**3
DEFAULT_BLOCK_SIZE = 16
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2}


def dtype_bytes(dtype: str) -> int:
    name = dtype.removeprefix("torch.").lower()
    if name in _DTYPE_BYTES:
        return _DTYPE_BYTES[name]
    if name.startswith(("fp8", "float8")):  # fp8, fp8_e4m3, float8_e5m2, ...
        return 1
    raise ValueError(f"unknown dtype {dtype!r}")


@dataclasses.dataclass(frozen=True)
class KvFootprint:
    layers: int
    kv_heads: int
    head_dim: int
    tensor_parallel_size: int
    dtype: str  # e.g. "bfloat16"
    block_size: int = DEFAULT_BLOCK_SIZE

    @property
    def bytes_per_token_per_gpu(self) -> int:
        return self.layers * 2 * self.kv_heads // self.tensor_parallel_size * self.head_dim * dtype_bytes(self.dtype)

    @property
    def block_bytes(self) -> int:
        return self.bytes_per_token_per_gpu * self.block_size

    def gib(self, blocks: float) -> float:
        """GiB of KV held by this many blocks on one GPU."""
        return blocks * self.block_bytes / GIB

    def calculation(self) -> str:
        per_token = self.bytes_per_token_per_gpu
        return (f"{self.layers} layers x 2 (K and V) x {self.kv_heads} KV heads / {self.tensor_parallel_size} GPUs "
                f"x {self.head_dim} head dim x {dtype_bytes(self.dtype)} bytes ({self.dtype}) "
                f"= {per_token:,} bytes = {per_token / 1024:g} KiB per token per GPU; "
                f"a block of {self.block_size} tokens = {self.block_bytes / 1024**2:g} MiB")


def kv_footprint(config: dict[str, Any], tensor_parallel_size: int, dtype: Optional[str] = None,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> KvFootprint:
    """From a Hugging Face config.json (Llama layout); ``dtype`` defaults to the config's torch_dtype."""
    heads = int(config["num_attention_heads"])
    head_dim = config.get("head_dim") or int(config["hidden_size"]) // heads
    kv_heads = int(config.get("num_key_value_heads") or heads)
    if kv_heads % tensor_parallel_size:
        raise ValueError(f"{kv_heads} KV heads do not split over {tensor_parallel_size} GPUs")
    dtype_name = (dtype or config.get("torch_dtype") or "float16").removeprefix("torch.")
    return KvFootprint(int(config["num_hidden_layers"]), kv_heads, int(head_dim), tensor_parallel_size,
                       dtype_name, block_size)
