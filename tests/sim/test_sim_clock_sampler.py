"""Virtual clock and the simulated sampler."""

import time

import pytest

from vllm_cfs.sim.clock import CLOCK_ENV, HostGap, PipelinedClock, RealClock, VirtualClock, clock_from_env
from vllm_cfs.sim.sampler import TokenSampler


def test_virtual_clock_advances_by_steps_and_waits_for_arrivals():
    clock = VirtualClock()
    clock.run_step(0.25, step_start=123.0)  # the wall-clock start is irrelevant to virtual time
    clock.advance_to(0.1)  # never backwards
    assert clock.now() == 0.25
    clock.advance_to(2.0)
    clock.run_step(0.5, step_start=0.0)
    assert clock.now() == 2.5


def test_a_virtual_clock_with_a_host_charges_the_host_time_beyond_the_credit():
    clock = VirtualClock(host=HostGap(host_overhead_credit_s=0.004))
    clock.run_step(0.25, step_start=time.monotonic())  # nothing before the first step
    assert clock.now() == 0.25
    time.sleep(0.05)
    clock.run_step(0.25, step_start=time.monotonic())
    assert clock.now() >= 0.25 + 0.25 + 0.05 - 0.004
    host = HostGap(host_overhead_credit_s=0.004)
    host.step_ended()
    assert host.excess(step_start=time.monotonic() - 1.0) == 0.0  # a step start before the last end: no gap
    assert host.excess(step_start=time.monotonic() + 0.5) >= 0.5 - 0.004


def test_a_real_clock_gives_back_what_a_late_step_overran(monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)  # what the clock asks for, not how long it took
    clock = RealClock(host_overhead_credit_s=0.004)
    clock.run_step(0.1, step_start=time.monotonic() - 0.6)  # its bookkeeping outran the step by 0.5 s
    assert slept == [] and clock.late_s >= 0.5
    clock.run_step(1.0, step_start=time.monotonic())
    assert sum(slept) <= 1.0 - 0.5  # the 1 s step owed 0.5 s


def test_a_pipelined_clock_queues_steps_on_the_gpu_and_moves_the_host_only_when_it_waits():
    clock = PipelinedClock()
    clock.run_step(0.5, step_start=123.0)
    clock.run_step(0.25, step_start=123.0)  # planned while the first runs: it starts at the first's end
    assert (clock.now(), clock.gpu_now()) == (0.0, 0.75)
    clock.advance_to(0.5)  # the host waits for the first step's result
    assert (clock.now(), clock.gpu_now()) == (0.5, 0.75)
    clock.advance_to(2.0)  # an idle GPU: the next step starts when the host hands it over
    clock.run_step(0.5, step_start=0.0)
    assert (clock.now(), clock.gpu_now()) == (2.0, 2.5)


def test_clock_chosen_by_environment(monkeypatch):
    monkeypatch.delenv(CLOCK_ENV, raising=False)
    assert isinstance(clock_from_env(0.004), RealClock)
    monkeypatch.setenv(CLOCK_ENV, "virtual")
    assert type(clock_from_env(0.004)) is VirtualClock
    assert type(clock_from_env(0.004, pipelined=True)) is PipelinedClock
    monkeypatch.delenv(CLOCK_ENV)
    with pytest.raises(ValueError, match="virtual time only"):
        clock_from_env(0.004, pipelined=True)
    monkeypatch.setenv(CLOCK_ENV, "wall")
    with pytest.raises(ValueError, match="'real' or 'virtual'"):
        clock_from_env(0.004)


def test_sampler_is_deterministic_and_never_special():
    sampler = TokenSampler(vocab_size=32000)
    tokens = [sampler.token(seed=0, seq_id=s, position=p) for s in range(20) for p in range(200)]
    assert tokens == [sampler.token(seed=0, seq_id=s, position=p) for s in range(20) for p in range(200)]
    assert min(tokens) >= 3 and max(tokens) < 32000
    assert len(set(tokens)) > 3000  # spread over the vocabulary
    seq0 = [sampler.token(0, 0, p) for p in range(50)]
    assert seq0 != [sampler.token(0, 1, p) for p in range(50)]
    assert seq0 != [sampler.token(1, 0, p) for p in range(50)]
