"""A seeded burst: which prompts, how many tokens each asks for, and when each is issued.

    workload = build_workload(WorkloadConfig("sharegpt", num_prompts=50, request_rate=3), tokenizer)
    for spec in workload.requests: ...

The same config (seed included) gives the same prompts, lengths and arrival times. Prompts and
arrivals draw from separate random streams, so changing the rate keeps the prompts.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from typing import Optional

from vllm_cfs.bench.datasets import (
    SHAREGPT_REPLY_LOG_MEAN,
    SHAREGPT_REPLY_LOG_SD,
    Tokenizer,
    WorkloadError,
    capped,
    humaneval_prompts,
    lognormal_reply_lengths,
    random_prompts,
    sharegpt_prompts,
)

DATASETS = ("sharegpt", "humaneval", "random")


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    index: int  # place in issue order
    prompt: str
    prompt_tokens: int
    output_tokens: int  # max_tokens to ask for: the cap
    issue_offset_s: float  # when to issue it, from the start of the burst
    # The reply's true length, EOS included, where the workload knows it (the dataset's reply, a
    # drawn length): only the simulated GPU may act on it. None: the reply is max_tokens long.
    reply_tokens: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class WorkloadConfig:
    dataset: str
    num_prompts: int = 50
    request_rate: float = 3.0  # requests per second; inf issues all at once
    burstiness: float = 1.0  # gamma shape of inter-arrival times; 1 is a Poisson process
    seed: int = 0
    dataset_path: Optional[Path] = None  # a ShareGPT JSON file instead of the packaged dump
    random_input_len: int = 1024
    random_output_len: int = 128
    random_range_ratio: float = 0.0
    random_prefix_len: int = 0  # random tokens shared by every random prompt, before its own
    humaneval_output_len: Optional[int] = None  # default: each problem's reference-solution length
    sharegpt_output_len: Optional[int] = None  # default: each reply's own length
    # None: every request asks for exactly its output length (ignore_eos), so max_tokens *is* the
    # reply's length. A number: every request asks for this many tokens (a real client's cap) and
    # its reply ends at EOS after its true length: the ShareGPT reply's, the reference solution's,
    # or for random prompts one drawn from a log-normal fitted to ShareGPT (datasets.py).
    reply_cap: Optional[int] = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise WorkloadError(f"unknown dataset {self.dataset!r} (choose from {', '.join(DATASETS)})")
        if self.num_prompts < 1:
            raise WorkloadError(f"the number of prompts must be at least 1, got {self.num_prompts}")
        if math.isnan(self.request_rate) or self.request_rate <= 0:
            raise WorkloadError(f"the request rate must be positive (or inf), got {self.request_rate}")
        if not (self.burstiness > 0 and math.isfinite(self.burstiness)):
            raise WorkloadError(f"burstiness must be a positive number, got {self.burstiness}")
        if self.random_input_len < 1 or self.random_output_len < 1:
            raise WorkloadError("random input and output lengths must be at least 1 token")
        if not 0 <= self.random_range_ratio < 1:
            raise WorkloadError(f"the random range ratio must be in [0, 1), got {self.random_range_ratio}")
        if self.random_prefix_len < 0:
            raise WorkloadError(f"the random prefix length must be at least 0, got {self.random_prefix_len}")
        if self.humaneval_output_len is not None and self.humaneval_output_len < 1:
            raise WorkloadError(f"the HumanEval output length must be at least 1, got {self.humaneval_output_len}")
        if self.sharegpt_output_len is not None and self.sharegpt_output_len < 1:
            raise WorkloadError(f"the ShareGPT output length must be at least 1, got {self.sharegpt_output_len}")
        if self.reply_cap is not None and self.reply_cap < 1:
            raise WorkloadError(f"the max_tokens cap must be at least 1, got {self.reply_cap}")
        if self.reply_cap is not None and (self.sharegpt_output_len or self.humaneval_output_len):
            raise WorkloadError("a fixed output length asks for exactly that many tokens: give it or a max_tokens cap, "
                                "not both")
        if self.dataset_path is not None and self.dataset != "sharegpt":
            raise WorkloadError("a dataset path is only read for the sharegpt dataset")


@dataclasses.dataclass(frozen=True)
class Workload:
    config: WorkloadConfig
    requests: list[RequestSpec]
    source: str  # one line on where the prompts came from, for reports


def arrival_offsets(n: int, request_rate: float, burstiness: float, rng: random.Random) -> list[float]:
    """Issue times of n requests, the first at 0.

    Gaps between requests are gamma-distributed with shape ``burstiness`` and mean
    1/request_rate: shape 1 is the exponential gap of a Poisson process, below 1 requests
    bunch together, above 1 they come more evenly. An infinite rate issues everything at 0.
    """
    if math.isinf(request_rate):
        return [0.0] * n
    scale = 1.0 / (request_rate * burstiness)
    offsets = [0.0]
    for _ in range(n - 1):
        offsets.append(offsets[-1] + rng.gammavariate(burstiness, scale))
    return offsets


def build_workload(config: WorkloadConfig, tokenizer: Tokenizer) -> Workload:
    # String seeds hash with SHA-512 in random.Random, so streams are the same in every process.
    prompt_rng = random.Random(f"vllm-cfs/{config.seed}/prompts")
    arrival_rng = random.Random(f"vllm-cfs/{config.seed}/arrivals")
    n = config.num_prompts
    if config.dataset == "sharegpt":
        prompts, source = sharegpt_prompts(n, tokenizer, prompt_rng, config.dataset_path, config.sharegpt_output_len)
    elif config.dataset == "humaneval":
        prompts, source = humaneval_prompts(n, tokenizer, prompt_rng, config.humaneval_output_len)
    else:
        prompts, source = random_prompts(n, tokenizer, prompt_rng, config.random_input_len,
                                         config.random_output_len, config.random_range_ratio,
                                         config.random_prefix_len)
    if config.reply_cap is not None:
        if config.dataset == "random":
            # A stream of its own, so that the prompts stay those of the same seed without a cap.
            lengths = lognormal_reply_lengths(n, random.Random(f"vllm-cfs/{config.seed}/reply-lengths"))
            prompts = [dataclasses.replace(p, output_tokens=length - 1) for p, length in zip(prompts, lengths)]
            source = source.split(", output ")[0] + (f", reply lengths log-normal (median {math.exp(SHAREGPT_REPLY_LOG_MEAN):.0f} "
                                                     f"tokens, log sd {SHAREGPT_REPLY_LOG_SD}, fitted to ShareGPT))")
        prompts = capped(prompts, config.reply_cap)
        source += f"; max_tokens {config.reply_cap}, replies end at EOS"
    offsets = arrival_offsets(n, config.request_rate, config.burstiness, arrival_rng)
    requests = [
        RequestSpec(i, p.text, p.prompt_tokens, p.output_tokens, offset, p.reply_tokens)
        for i, (p, offset) in enumerate(zip(prompts, offsets))
    ]
    return Workload(config, requests, source)
