"""The model numbers the cost model needs, read from a Hugging Face config.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A Llama-style decoder: the only architecture family the simulator models."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    dtype_bytes: int
    tie_word_embeddings: bool

    @classmethod
    def served(cls, model_config) -> "ModelSpec":
        """The model as vLLM serves it (a ModelConfig of either engine): the served dtype (--dtype)
        decides the bytes, not the checkpoint's torch_dtype."""
        spec = cls.from_config(model_config.hf_text_config.to_dict())
        return dataclasses.replace(spec, dtype_bytes=model_config.dtype.itemsize)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ModelSpec":
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        dtype = str(config.get("torch_dtype", "bfloat16")).removeprefix("torch.")
        if dtype not in _DTYPE_BYTES:
            raise ValueError(f"config.json torch_dtype {dtype!r} is not one of {sorted(_DTYPE_BYTES)}")
        return cls(
            num_layers=int(config["num_hidden_layers"]),
            hidden_size=hidden,
            num_attention_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            dtype_bytes=_DTYPE_BYTES[dtype],
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> "ModelSpec":
        return cls.from_config(json.loads((Path(model_dir) / "config.json").read_text()))

    @property
    def parameter_count(self) -> int:
        """Weights of embedding, decoder layers (attention, gated MLP, 2 norms), final norm, LM head."""
        h, d = self.hidden_size, self.head_dim
        attention = h * self.num_attention_heads * d * 2 + h * self.num_kv_heads * d * 2  # q, o; k, v
        mlp = 3 * h * self.intermediate_size  # gate, up, down
        per_layer = attention + mlp + 2 * h
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embeddings + h
