"""A decoder with CodeLlama-34B's shapes and random weights: prefill and one decode step."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from vllm_cfs.calibration.shapes import ModelShape


def grouped_decode_attention(F, q, k_cache, v_cache):
    """Attention of one new token per sequence over its whole cache, without expanding K/V.

    q is [B, heads, head_dim]; the caches are [B, kv_heads, context, head_dim]. Query head h
    reads KV head h // group (Llama's grouping), so the group's query heads are laid out as
    `group` query positions of their KV head; with nothing masked (the new token sees the whole
    cache) that is exactly GQA decode, and flash attention takes it as is.
    """
    batch, heads, head_dim = q.shape
    kv_heads = k_cache.shape[1]
    grouped = q.reshape(batch, kv_heads, heads // kv_heads, head_dim)
    return F.scaled_dot_product_attention(grouped, k_cache, v_cache).reshape(batch, heads * head_dim)


class Decoder:
    """CodeLlama-shaped decoder with random weights: the work of a forward pass, not its meaning."""

    def __init__(self, torch, shape: ModelShape, device, max_positions: int, dtype=None):
        self.torch, self.F = torch, torch.nn.functional
        self.shape, self.device = shape, device
        self.dtype = dtype or torch.bfloat16
        s = shape

        def weight(rows: int, cols: int):
            # fan-in scaling keeps activations finite through 48 random layers; filled on the
            # device (a CPU init of 67 GB would take minutes)
            return torch.empty((rows, cols), dtype=self.dtype, device=device).normal_(0.0, cols ** -0.5)

        def ones():
            return torch.ones(s.hidden, dtype=self.dtype, device=device)

        self.embed = weight(s.vocab, s.hidden)
        self.layers = [
            {"norm1": ones(), "qkv": weight(s.qkv_width, s.hidden),
             "o": weight(s.hidden, s.heads * s.head_dim), "norm2": ones(),
             "gate_up": weight(2 * s.intermediate, s.hidden), "down": weight(s.hidden, s.intermediate)}
            for _ in range(s.layers)
        ]
        self.norm = ones()
        self.lm_head = weight(s.vocab, s.hidden)
        self.cos, self.sin = self._rotary_tables(max_positions)
        self.attention_mode = self._probe_attention()

    def _rotary_tables(self, positions: int):
        torch, half = self.torch, self.shape.head_dim // 2
        inv_freq = self.shape.rope_theta ** (-torch.arange(half, dtype=torch.float64) / half)
        angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
        cos = torch.cat([angles.cos(), angles.cos()], -1)
        # rotate_half(x) = [-x2, x1] = roll(x, half) * [-1, +1]: the sign lives in the table, so
        # rotary costs a roll, a mul and an addcmul
        sin = torch.cat([-angles.sin(), angles.sin()], -1)
        return cos.to(self.device, self.dtype), sin.to(self.device, self.dtype)

    def _rotary(self, x, cos, sin):
        return self.torch.addcmul(x * cos, self.torch.roll(x, self.shape.head_dim // 2, dims=-1), sin)

    def _rms_norm(self, x, weight):
        return self.F.rms_norm(x, (self.shape.hidden,), weight, self.shape.rms_eps)

    def _probe_attention(self) -> str:
        """'gqa' when SDPA takes grouped K/V directly, else 'expanded' (K/V repeated per head)."""
        torch, s = self.torch, self.shape
        q = torch.randn(1, s.heads, 32, s.head_dim, dtype=self.dtype, device=self.device)
        kv = torch.randn(1, s.kv_heads, 32, s.head_dim, dtype=self.dtype, device=self.device)
        try:
            with self.attention_backends():
                self.F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
            return "gqa"
        except (RuntimeError, TypeError, NotImplementedError):
            return "expanded"

    def attention_backends(self):
        """On a GPU, forbid SDPA's unfused math fallback, so a slow path cannot creep in unseen."""
        if self.device.type != "cuda":
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                            SDPBackend.CUDNN_ATTENTION])

    def _causal_attention(self, q, k, v):
        if self.attention_mode == "gqa":
            return self.F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        group = self.shape.heads // self.shape.kv_heads
        return self.F.scaled_dot_product_attention(
            q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), is_causal=True)

    def _mlp(self, layer, x):
        gate, up = self.F.linear(self._rms_norm(x, layer["norm2"]), layer["gate_up"]).chunk(2, -1)
        return self.F.linear(self.F.silu(gate) * up, layer["down"])

    def prefill(self, tokens):
        """tokens [n, T] -> the next token of each sequence (logits of the last position only)."""
        s, F = self.shape, self.F
        n, t = tokens.shape
        qk_heads = s.heads + s.kv_heads
        cos, sin = self.cos[:t, None, :], self.sin[:t, None, :]
        x = F.embedding(tokens, self.embed)
        for layer in self.layers:
            qkv = F.linear(self._rms_norm(x, layer["norm1"]), layer["qkv"])
            qkv = qkv.view(n, t, s.heads + 2 * s.kv_heads, s.head_dim)
            qk = self._rotary(qkv[:, :, :qk_heads], cos, sin)
            attn = self._causal_attention(qk[:, :, :s.heads].transpose(1, 2),
                                          qk[:, :, s.heads:].transpose(1, 2),
                                          qkv[:, :, qk_heads:].transpose(1, 2))
            x = x + F.linear(attn.transpose(1, 2).reshape(n, t, s.heads * s.head_dim), layer["o"])
            x = x + self._mlp(layer, x)
        return F.linear(self._rms_norm(x[:, -1], self.norm), self.lm_head).argmax(-1)

    def new_decode_batch(self, batch: int, context: int) -> "DecodeBatch":
        s, torch = self.shape, self.torch
        kv = torch.empty((s.layers, 2, batch, s.kv_heads, context + 1, s.head_dim),
                         dtype=self.dtype, device=self.device).normal_()
        tokens = torch.randint(s.vocab, (batch,), device=self.device)
        return DecodeBatch(tokens=tokens, kv=kv, position=context)

    def decode_step(self, batch: "DecodeBatch"):
        """One new token for each sequence, its K/V written at `position`, attending to all."""
        s, F = self.shape, self.F
        n, p = batch.tokens.shape[0], batch.position
        qk_heads = s.heads + s.kv_heads
        cos, sin = self.cos[p], self.sin[p]
        x = F.embedding(batch.tokens, self.embed)
        for i, layer in enumerate(self.layers):
            qkv = F.linear(self._rms_norm(x, layer["norm1"]), layer["qkv"])
            qkv = qkv.view(n, s.heads + 2 * s.kv_heads, s.head_dim)
            qk = self._rotary(qkv[:, :qk_heads], cos, sin)
            k_cache, v_cache = batch.kv[i, 0], batch.kv[i, 1]
            k_cache[:, :, p] = qk[:, s.heads:]
            v_cache[:, :, p] = qkv[:, qk_heads:]
            attn = grouped_decode_attention(F, qk[:, :s.heads], k_cache, v_cache)
            x = x + F.linear(attn, layer["o"])
            x = x + self._mlp(layer, x)
        return F.linear(self._rms_norm(x, self.norm), self.lm_head).argmax(-1)


@dataclass
class DecodeBatch:
    tokens: object     # [B] token ids
    kv: object         # [layers, 2, B, kv_heads, context + 1, head_dim]
    position: int      # where the new token's K/V go (= context)
