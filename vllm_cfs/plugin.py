"""vLLM general plugin: refuse a bad CFS, Fair or staged swap setting in one line, before any engine process starts.

vLLM runs general plugins while it builds its engine arguments, in the API server's process.
Raised there, SystemExit ends ``vllm serve`` with our message alone; raised later by the
scheduler in the engine process, the same message would come wrapped in two tracebacks.
"""

import os

from vllm_cfs.settings import (
    CFS_ENV_NAMES,
    CFSConfigError,
    read_cfs_interval,
    read_min_granularity,
    read_patience_tokens,
    staged_swap_blocks,
)


def check_cfs_settings() -> None:
    if not any(os.environ.get(name) for name in CFS_ENV_NAMES):
        return
    try:
        read_min_granularity(read_cfs_interval())
        read_patience_tokens()
        staged_swap_blocks()
    except CFSConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
