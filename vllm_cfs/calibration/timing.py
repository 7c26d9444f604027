"""Medians of repeated runs, timed with CUDA events on a GPU and the host clock on a CPU."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Timing:
    seconds: float                  # median device time (CUDA events; host clock on CPU)
    samples: list[float]
    host_seconds: float             # median host time from issue to completion

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "samples": self.samples, "host_seconds": self.host_seconds}


class Clock:
    """Times a callable on the current stream: CUDA events on a GPU, the host clock on a CPU."""

    def __init__(self, torch, device):
        self.torch = torch
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, fn: Callable[[], object], warmup: int, reps: int) -> Timing:
        for _ in range(warmup):
            fn()
        self.sync()
        device, host = [], []
        for _ in range(reps):
            # one event pair and a sync per repetition, so a repetition never overlaps the next
            if self.cuda:
                start = self.torch.cuda.Event(enable_timing=True)
                end = self.torch.cuda.Event(enable_timing=True)
                h0 = time.perf_counter()
                start.record()
                fn()
                end.record()
                end.synchronize()
                host.append(time.perf_counter() - h0)
                device.append(start.elapsed_time(end) / 1e3)
            else:
                h0 = time.perf_counter()
                fn()
                host.append(time.perf_counter() - h0)
                device.append(host[-1])
        return Timing(statistics.median(device), device, statistics.median(host))


class Progress:
    """One line per finished point, with its place in the family: readable in a log tail."""

    def __init__(self, family: str, total: int):
        self.family, self.total, self.done, self.t0 = family, total, 0, time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        print(f"[{self.family} {self.done}/{self.total} {time.perf_counter() - self.t0:6.1f}s] {what}",
              flush=True)
