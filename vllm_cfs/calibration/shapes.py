"""CodeLlama-34B's layer shapes, and the sizes of weights, KV cache and swap copies they imply."""

from __future__ import annotations

from dataclasses import asdict, dataclass

BLOCK_TOKENS = 16  # vLLM's KV block size on CUDA


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    rope_theta: float = 1e6
    rms_eps: float = 1e-5
    dtype_bytes: int = 2

    @property
    def qkv_width(self) -> int:
        return (self.heads + 2 * self.kv_heads) * self.head_dim

    @property
    def layer_params(self) -> int:
        return (self.hidden * self.qkv_width + self.heads * self.head_dim * self.hidden
                + 3 * self.hidden * self.intermediate + 2 * self.hidden)

    @property
    def params(self) -> int:
        # untied embedding and LM head, as in CodeLlama-34B
        return self.layers * self.layer_params + 2 * self.vocab * self.hidden + self.hidden

    @property
    def weight_bytes(self) -> int:
        return self.params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def copy_bytes(self) -> int:
        """One block of one layer's K (or V): what one cudaMemcpyAsync of vLLM 0.9 moves."""
        return BLOCK_TOKENS * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def block_bytes(self) -> int:
        return BLOCK_TOKENS * self.kv_bytes_per_token

    def with_layers(self, layers: int) -> "ModelShape":
        return ModelShape(**{**asdict(self), "layers": layers})

    def describe(self) -> dict:
        return {**asdict(self), "params": self.params, "weight_bytes": self.weight_bytes,
                "kv_bytes_per_token": self.kv_bytes_per_token, "block_tokens": BLOCK_TOKENS,
                "block_bytes": self.block_bytes, "copy_bytes": self.copy_bytes}


CODELLAMA_34B = ModelShape(layers=48, hidden=8192, heads=64, kv_heads=8, head_dim=128,
                           intermediate=22016, vocab=32000)
# --dry-run: the same code paths on a CPU in seconds
TINY = ModelShape(layers=1, hidden=256, heads=4, kv_heads=2, head_dim=64, intermediate=512,
                  vocab=1024)
