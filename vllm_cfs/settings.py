"""Settings of the CFS and Fair schedulers and of the staged swap worker, read from the environment (no vLLM import: the plugin uses it)."""

from __future__ import annotations

import os
from typing import Mapping

CFS_INTERVAL_ENV = "CFS_INTERVAL"
DEFAULT_CFS_INTERVAL = 10
MIN_GRANULARITY_ENV = "CFS_MIN_GRANULARITY"
PATIENCE_ENV = "FAIR_PATIENCE_TOKENS"
DEFAULT_PATIENCE_TOKENS = 8
STAGING_BLOCKS_ENV = "VLLM_CFS_STAGING_BLOCKS"
CFS_ENV_NAMES = (CFS_INTERVAL_ENV, MIN_GRANULARITY_ENV, PATIENCE_ENV, STAGING_BLOCKS_ENV)


class CFSConfigError(ValueError):
    """A configuration the CFS scheduler refuses; the message is one line meant for the user."""


def _read_count(environ: Mapping[str, str], name: str, default: int, meaning: str) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise CFSConfigError(f"{name}={raw!r} is invalid: expected a whole number >= 0 ({meaning})")
    return value


def read_cfs_interval(environ: Mapping[str, str] = os.environ) -> int:
    return _read_count(environ, CFS_INTERVAL_ENV, DEFAULT_CFS_INTERVAL,
                       "a CFS step every N scheduling steps; 0 = vLLM's default FCFS")


def read_min_granularity(interval: int, environ: Mapping[str, str] = os.environ) -> int:
    return _read_count(environ, MIN_GRANULARITY_ENV, interval,
                       "tokens a running request must be ahead of a swapped one to yield to it")


def read_patience_tokens(environ: Mapping[str, str] = os.environ) -> int:
    return _read_count(environ, PATIENCE_ENV, DEFAULT_PATIENCE_TOKENS,
                       "decode steps a new arrival waits for a finishing request's room before evicting one")


# 32 blocks of CodeLlama-34B at TP 2 are 48 MiB: copies that large already run at the host link's
# speed, while the buffer costs only 3% of an A100-40GB's KV blocks at that size.
DEFAULT_STAGING_BLOCKS = 32


def staged_swap_blocks(environ: Mapping[str, str] = os.environ) -> int:
    """KV blocks the staged swap worker sets aside on the GPU for its staging buffer."""
    blocks = _read_count(environ, STAGING_BLOCKS_ENV, DEFAULT_STAGING_BLOCKS,
                         "KV blocks of GPU memory the staged swap worker stages copies through")
    if blocks == 0:
        raise CFSConfigError(f"{STAGING_BLOCKS_ENV}=0 is invalid: the staged swap needs at least one block")
    return blocks
