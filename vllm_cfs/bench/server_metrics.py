"""Reading a vLLM OpenAI server's Prometheus gauges (/metrics) from outside."""

from __future__ import annotations

import re
import urllib.request
from typing import Dict, Sequence

# vLLM 0.9 hides its swap gauges (deprecated with V0) unless the server is started with this.
SHOW_SWAP_GAUGES = ("--show-hidden-metrics-for-version", "0.8")
KV_AND_QUEUE_GAUGES = ("vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc",
                       "vllm:num_requests_running", "vllm:num_requests_swapped",
                       "vllm:num_requests_waiting")


def read_gauges(base_url: str, names: Sequence[str] = KV_AND_QUEUE_GAUGES) -> Dict[str, float]:
    """The named gauges' values; a gauge without a sample yet (before the engine's first step
    reports it) is absent from the result."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for name in names:
        match = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} (\S+)$", text, re.M)
        if match:
            found[name] = float(match.group(1))
    return found
