"""The simulated GPU's "sampled" tokens: deterministic, and EOS only where the reply ends.

No weights exist, so a token is a pure function of (seed, sequence id, position): the same
seed and the same arrival order give the same text. Special tokens (BOS, UNK) are never
produced. EOS is, at the end of a reply whose true length the request's seed carries
(``vllm_cfs.sim.reply_length``), unless the request says ignore_eos; any other request ends at
max_tokens, a stop string or max_model_len, as it did before the simulated model could stop.
"""

from __future__ import annotations

from typing import Optional

from vllm_cfs.sim.reply_length import says_eos

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64's finalizer: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def eos_token_id(hf_config) -> Optional[int]:
    """The model's end-of-sequence token (config.json's; the first where it lists several)."""
    eos = getattr(hf_config, "eos_token_id", None)
    if isinstance(eos, (list, tuple)):
        return eos[0] if eos else None
    return eos


class TokenSampler:
    def __init__(self, vocab_size: int, eos_token_id: Optional[int] = None, first_ordinary_token: int = 3):
        if vocab_size <= first_ordinary_token:
            raise ValueError(f"vocab_size {vocab_size} leaves no ordinary tokens")
        self.first = first_ordinary_token
        self.span = vocab_size - first_ordinary_token
        self.eos_token_id = eos_token_id

    def token(self, seed: int, seq_id: int, position: int) -> int:
        """An ordinary token (never a special one)."""
        h = _mix64(_mix64(_mix64(seed & _MASK64) ^ seq_id) ^ position)
        return self.first + h % self.span

    def next_token(self, seed: int, seq_id: int, position: int, ignore_eos: bool) -> int:
        """Output token ``position`` of a sequence: EOS where its reply ends, else ``token``."""
        if self.eos_token_id is not None and not ignore_eos and says_eos(seed, position):
            return self.eos_token_id
        return self.token(seed, seq_id, position)
