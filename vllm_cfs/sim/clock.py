"""The simulated GPU's notion of time: wall-clock (sleep) or virtual (a counter)."""

from __future__ import annotations

import os
import time

CLOCK_ENV = "VLLM_CFS_SIM_CLOCK"


class RealClock:
    """Each step takes its modeled duration in wall-clock time, so a server paces like the GPU.

    The host work vLLM really does between steps (scheduling, detokenizing) is counted against
    the modeled step, up to the profile's fixed per-step overhead, which stands for that work.
    """

    name = "real"

    def __init__(self, host_overhead_credit_s: float = 0.0):
        self.host_overhead_credit_s = host_overhead_credit_s
        self._last_step_end: float | None = None

    def now(self) -> float:
        return time.monotonic()

    def run_step(self, duration_s: float, step_start: float) -> None:
        host_between_steps = 0.0 if self._last_step_end is None else step_start - self._last_step_end
        credit = min(max(0.0, host_between_steps), self.host_overhead_credit_s)
        remaining = step_start + duration_s - credit - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        self._last_step_end = time.monotonic()


class VirtualClock:
    """No sleeping: time is a number that each step advances by its modeled duration."""

    name = "virtual"

    def __init__(self, start_s: float = 0.0):
        self._now = start_s

    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        """Idle until t (no-op if t is in the past): the GPU waits for the next arrival."""
        self._now = max(self._now, t)

    def run_step(self, duration_s: float, step_start: float) -> None:
        self._now += duration_s


def clock_from_env(host_overhead_credit_s: float) -> RealClock | VirtualClock:
    kind = os.environ.get(CLOCK_ENV, "real")
    if kind == "real":
        return RealClock(host_overhead_credit_s)
    if kind == "virtual":
        return VirtualClock()
    raise ValueError(f"{CLOCK_ENV}={kind!r} is not a clock: use 'real' or 'virtual'")
