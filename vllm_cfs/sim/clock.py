"""The simulated GPU's notion of time: wall-clock (sleep) or virtual (a counter)."""

from __future__ import annotations

import os
import time
from typing import Optional

CLOCK_ENV = "VLLM_CFS_SIM_CLOCK"


class HostGap:
    """The host's real time between two engine steps, beyond what the modeled step stands for.

    A profile's fixed per-step overhead stands for the host work vLLM does between steps
    (scheduling, preparing inputs, detokenizing); a host slower than the modeled one spends more,
    and only that excess lengthens a step cycle. Both clocks apply this one rule.
    """

    def __init__(self, host_overhead_credit_s: float):
        self.host_overhead_credit_s = host_overhead_credit_s
        self._last_step_end: float | None = None

    def host_between_steps(self, step_start: float) -> float:
        return 0.0 if self._last_step_end is None else max(0.0, step_start - self._last_step_end)

    def excess(self, step_start: float) -> float:
        return max(0.0, self.host_between_steps(step_start) - self.host_overhead_credit_s)

    def step_ended(self) -> None:
        self._last_step_end = time.monotonic()


class RealClock:
    """Each step takes its modeled duration in wall-clock time, so a server paces like the GPU.

    The host work vLLM really does between steps (scheduling, detokenizing) is counted against
    the modeled step, up to the profile's fixed per-step overhead, which stands for that work.
    A step that ends late (the sleep woke late, or the simulator's own bookkeeping outran the
    step) has the next step's sleep shortened by as much: a GPU does neither, so neither may
    drift the server's timeline, which only the host's work between steps lengthens.
    """

    name = "real"

    def __init__(self, host_overhead_credit_s: float = 0.0):
        self.host = HostGap(host_overhead_credit_s)
        self.late_s = 0.0  # how late the last step ended, owed back by the next one

    def now(self) -> float:
        return time.monotonic()

    def gpu_now(self) -> float:
        """Where the GPU's timeline stands: a step is done by the time ``run_step`` returns."""
        return self.now()

    def run_step(self, duration_s: float, step_start: float) -> None:
        credit = min(self.host.host_between_steps(step_start), self.host.host_overhead_credit_s)
        end = step_start + duration_s - credit - self.late_s
        remaining = end - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        self.host.step_ended()
        self.late_s = max(0.0, time.monotonic() - end)


class VirtualClock:
    """No sleeping: time is a number that each step advances by its modeled duration.

    With ``host`` set, each step also advances it by the host's measured time between steps
    beyond the credit (``HostGap``), as a real clock would: this machine's host work is charged,
    the scheduler's own CPU time included, and the replay is no longer deterministic.
    """

    name = "virtual"

    def __init__(self, start_s: float = 0.0, host: Optional[HostGap] = None):
        self._now = start_s
        self.host = host

    def now(self) -> float:
        return self._now

    def gpu_now(self) -> float:
        """Where the GPU's timeline stands: a step is done by the time ``run_step`` returns."""
        return self._now

    def advance_to(self, t: float) -> None:
        """Idle until t (no-op if t is in the past): the GPU waits for the next arrival."""
        self._now = max(self._now, t)

    def run_step(self, duration_s: float, step_start: float) -> None:
        self._now += duration_s
        if self.host is not None:
            self._now += self.host.excess(step_start)
            self.host.step_ended()


class PipelinedClock(VirtualClock):
    """Virtual time under vLLM's asynchronous scheduling: the host schedules step n+1 while the
    GPU runs step n, so a step starts when both the GPU is free and the host has handed it over.

    ``now()`` is the host's time: a submitted step does not move it; waiting for the step's
    result does (``advance_to`` its end). ``gpu_now()`` is where the GPU's timeline stands, the end of
    the last submitted step. Host work between steps hides behind the GPU's, so there is no gap
    to charge (the profile's step overhead stays in the modeled step).
    """

    def __init__(self, start_s: float = 0.0):
        super().__init__(start_s)
        self._gpu_free_s = start_s

    def gpu_now(self) -> float:
        return max(self._now, self._gpu_free_s)

    def run_step(self, duration_s: float, step_start: float) -> None:
        self._gpu_free_s = self.gpu_now() + duration_s


def clock_from_env(host_overhead_credit_s: float, pipelined: bool = False) -> RealClock | VirtualClock:
    """The clock CLOCK_ENV names; ``pipelined``: the engine schedules asynchronously (virtual time only)."""
    kind = os.environ.get(CLOCK_ENV, "real")
    if kind == "real":
        if pipelined:
            raise ValueError("asynchronous scheduling is modeled in virtual time only")
        return RealClock(host_overhead_credit_s)
    if kind == "virtual":
        return PipelinedClock() if pipelined else VirtualClock()
    raise ValueError(f"{CLOCK_ENV}={kind!r} is not a clock: use 'real' or 'virtual'")
