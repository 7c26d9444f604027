"""How a workload tells the simulated model how long its reply is, past the scheduler.

A real model decides where its reply ends (it samples EOS); nobody upstream of the GPU knows.
The simulated model has no weights, so the workload must tell it the reply's true length, and
must do so where a scheduler cannot look, or our policies would be measured with an oracle again.

The channel is the request's sampling ``seed``, tagged: ``reply_seed(n)`` is a seed whose top bits
say "reply length follows" and whose low 32 bits hold n. Why the seed:

* It reaches the simulated worker on every path unchanged: the replay's ``SamplingParams``, the
  OpenAI-compatible server's ``seed`` field over HTTP (an int64, OpenAI's own parameter), and
  both engines (V0's ``SequenceGroupMetadata.sampling_params``, V1's new-request data). No side
  file, no shared registry between the client and the server process.
* A scheduler keeps it only inside the sampling parameters, which the policy core never sees: the
  adapters (``vllm_cfs.v0.adapter``, ``vllm_cfs.v1.adapter``) build a ``RequestState`` without it,
  and ``tests/policy/test_no_oracle.py`` fails if a policy module reads a seed or imports this one.
* On a real GPU it is harmless: at temperature 0 (the burst client's default) the seed changes no
  token, and a real model ends where it ends.

A request without a tagged seed has no known length: the simulated model never says EOS for it,
and it ends at max_tokens, as before. ``ignore_eos`` always wins: the stop checker ignores EOS,
and the simulated model does not even sample it then.

Plain Python on purpose: the burst client imports it, and must not pull in vLLM or torch.
"""

from __future__ import annotations

from typing import Optional

# "5eed1e" ("seed, length"), in the bits above the length; a user's own seed of this form is
# improbable (it is above 10^17), and one that had it would only end its reply early.
_TAG = 0x5EED1E
_LENGTH_BITS = 32
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1


def reply_seed(reply_tokens: int) -> int:
    """The seed that tells the simulated model: this reply is ``reply_tokens`` tokens, EOS included."""
    if not 1 <= reply_tokens <= _LENGTH_MASK:
        raise ValueError(f"a reply length must be between 1 and {_LENGTH_MASK} tokens, got {reply_tokens}")
    return (_TAG << _LENGTH_BITS) | reply_tokens


def reply_tokens_of(seed: Optional[int]) -> Optional[int]:
    """The reply length a seed carries, or None for a seed that carries none (or no seed).

    vLLM V0 gives parallel sample i of a request the seed + i (``ParallelSampleSequenceGroup``):
    sample i is then i tokens longer, which is still a length and keeps parallel samples apart.
    """
    if seed is None or seed >> _LENGTH_BITS != _TAG:
        return None
    return (seed & _LENGTH_MASK) or None


def says_eos(seed: Optional[int], position: int) -> bool:
    """Whether the simulated model samples EOS as output token ``position`` (0-based) of a reply
    sampled with ``seed``: from the last token of a reply whose length the seed carries on (past
    it only where the engine held EOS back, as vLLM does before a request's min_tokens)."""
    length = reply_tokens_of(seed)
    return length is not None and position >= length - 1
