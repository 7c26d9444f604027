"""The simulated GPU's "sampled" tokens: deterministic, never a special token.

No weights exist, so a token is a pure function of (seed, sequence id, position): the same
seed and the same arrival order give the same text. Special tokens (BOS, EOS, UNK) are never
produced, so a sequence ends only at max_tokens, a stop string or max_model_len, whatever
ignore_eos says: request lengths are exactly what the client asked for.
"""

from __future__ import annotations

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64's finalizer: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class TokenSampler:
    def __init__(self, vocab_size: int, first_ordinary_token: int = 3):
        if vocab_size <= first_ordinary_token:
            raise ValueError(f"vocab_size {vocab_size} leaves no ordinary tokens")
        self.first = first_ordinary_token
        self.span = vocab_size - first_ordinary_token

    def token(self, seed: int, seq_id: int, position: int) -> int:
        h = _mix64(_mix64(_mix64(seed & _MASK64) ^ seq_id) ^ position)
        return self.first + h % self.span
