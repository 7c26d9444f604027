"""The lines of a vLLM V1 (0.24.0) server log that the analysis reads, beside V0's (server_log.py).

``server_log.parse_server_log`` reads both engines' logs into the same records; this module only
recognises V1's lines and returns what each says, so that it needs nothing from the V0 parser:

* vLLM V1's stats line (vllm/v1/metrics/loggers.py), every VLLM_LOG_STATS_INTERVAL seconds
  while the engine is busy (hw2/server.sh sets 5, V0's cadence; vLLM's default is 10)::

    (APIServer pid=10430) INFO 12-03 09:49:39 [loggers.py:273] Engine 000: Avg prompt throughput:
    2298.6 tokens/s, Avg generation throughput: 4.0 tokens/s, Running: 7 reqs, Waiting: 5 reqs,
    GPU KV cache usage: 65.1%, Prefix cache hit rate: 0.0%

  with ``Deferred: N reqs`` after Waiting when some waiting requests were skipped, and
  ``Preemptions: N`` (preemptions in the line's interval) when there were any. vLLM 0.24.0 resets
  that count before it prints the line, so its lines never carry it: the preemptions of a run come
  from the server's /metrics (vllm:num_preemptions_total), which hw2/sweep.sh keeps after each run.
  ``Waiting`` counts every request not running, new or preempted (V1 has no swapped state).
* the KV cache's size at start: ``GPU KV cache size: 40,992 tokens`` and ``Maximum concurrency for
  16,384 tokens per request: 2.50x`` (vLLM's, on any GPU), and the simulated GPU's
  ``Simulated GPU KV cache: 2562 blocks of 16 tokens per GPU (nothing allocated)``;
* our V1 schedulers' cumulative counters (vllm_cfs/v1/scheduler.py):
  ``CFSScheduler stats: policy_steps=16, victims=12, victim_blocks=3034, tokens_computed=233277,
  tokens_recomputed=3077`` (or ``FairScheduler``), periodically and when the scheduler drains;
* the engine's configuration: ``Initializing a V1 LLM engine (v0.24.0) with config: model=...``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Union

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_STATS = re.compile(
    rf"Engine (\d+): Avg prompt throughput: {_NUMBER} tokens/s, Avg generation throughput: {_NUMBER} tokens/s, "
    rf"Running: (\d+) reqs, Waiting: (\d+) reqs(?:, Deferred: (\d+) reqs)?(?:, Preemptions: (\d+))?, "
    rf"GPU KV cache usage: {_NUMBER}%, Prefix cache hit rate: {_NUMBER}%"
)
_KV_CACHE_TOKENS = re.compile(r"GPU KV cache size: ([\d,]+) tokens")
_CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
_SIM_BLOCKS = re.compile(r"Simulated GPU KV cache: (\d+) blocks of (\d+) tokens per GPU")
_POLICY_STATS = re.compile(r"\b(CFSScheduler|FairScheduler) stats: ((?:\w+=\d+(?:, )?)+)")
_ENGINE = re.compile(r"Initializing a V1 LLM engine \(v([^)]+)\) with config: (.*)")


@dataclasses.dataclass(frozen=True)
class V1Stats:
    engine_index: int
    prompt_throughput: float  # tokens/s over the line's interval
    generation_throughput: float
    running: int
    waiting: int  # every request not running (Deferred included)
    deferred: int  # 0 when the line has no Deferred field
    preemptions: int  # in the line's interval; 0 when the line has no Preemptions field
    gpu_kv_pct: float
    prefix_cache_hit_pct: float


@dataclasses.dataclass(frozen=True)
class V1KvCacheTokens:
    tokens: int  # per GPU: vLLM sizes every rank's cache alike


@dataclasses.dataclass(frozen=True)
class V1Concurrency:
    max_model_len: int
    max_concurrency: float  # requests of max_model_len tokens the KV cache holds at once


@dataclasses.dataclass(frozen=True)
class V1SimulatedBlocks:
    gpu_blocks: int  # per GPU
    block_size: int  # tokens per block


@dataclasses.dataclass(frozen=True)
class V1PolicyCounters:
    scheduler: str  # "CFSScheduler" or "FairScheduler"
    counters: dict[str, int]


@dataclasses.dataclass(frozen=True)
class V1EngineLine:
    vllm_version: str
    config: str  # the "key=value, ..." text after "with config: "


V1Line = Union[V1Stats, V1KvCacheTokens, V1Concurrency, V1SimulatedBlocks, V1PolicyCounters, V1EngineLine]


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def read_v1_line(line: str) -> Optional[V1Line]:
    """What one log line says, if it is one of V1's lines above; None for any other line."""
    if match := _STATS.search(line):
        index, prompt, generation, running, waiting, deferred, preemptions, gpu, prefix = match.groups()
        return V1Stats(int(index), float(prompt), float(generation), int(running), int(waiting),
                       int(deferred or 0), int(preemptions or 0), float(gpu), float(prefix))
    if match := _POLICY_STATS.search(line):
        return V1PolicyCounters(match.group(1), {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))})
    if match := _KV_CACHE_TOKENS.search(line):
        return V1KvCacheTokens(_int(match.group(1)))
    if match := _CONCURRENCY.search(line):
        return V1Concurrency(_int(match.group(1)), float(match.group(2)))
    if match := _SIM_BLOCKS.search(line):
        return V1SimulatedBlocks(int(match.group(1)), int(match.group(2)))
    if match := _ENGINE.search(line):
        return V1EngineLine(match.group(1), match.group(2))
    return None
