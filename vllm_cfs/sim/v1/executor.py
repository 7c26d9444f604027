"""vLLM V1 executor for the simulated GPU: one process, whatever the tensor-parallel size."""

from __future__ import annotations

import os
from concurrent.futures import Future
from typing import Any, Callable, Optional, Union

from vllm.logger import init_logger
from vllm.v1.executor.abstract import Executor

from vllm_cfs.sim.clock import CLOCK_ENV, PipelinedClock
from vllm_cfs.sim.profile import PROFILE_ENV, load_profile
from vllm_cfs.sim.v1.worker import SimulatedWorker
from vllm_cfs.sim.worker_rpc import call_worker, log_start

# Under "vllm." so that vLLM's log handler (and so the server log) carries our lines.
logger = init_logger(f"vllm.{__name__}")


class SimulatedExecutor(Executor):
    """The V1 executor drives its workers through collective_rpc; here one simulated worker stands
    for all GPUs of the group, so every call returns a one-element list, and ``non_block`` calls
    return futures that are already done.

    Asynchronous scheduling (vLLM's default on a GPU: the host schedules step n+1 while the GPU
    runs step n, so a request's next step is planned before its last token is known) is supported
    in virtual time, where the replay gives the worker a ``PipelinedClock``: a step's future holds
    its output at once and moves the host's clock to the step's end when the engine waits on it.
    On the wall clock a step is done when ``execute_model`` returns, which would hand its tokens
    over a step late, so a live server runs vLLM's synchronous loop.
    """

    uses_ray = False
    supports_pp = False

    def _init_executor(self) -> None:
        gpu = load_profile(os.environ[PROFILE_ENV])
        self.worker = SimulatedWorker(self.vllm_config, gpu)
        self._step_future: Optional[Future] = None  # the step last submitted without blocking
        log_start(logger, gpu, self.parallel_config, self.worker.clock.name)

    def collective_rpc(
        self,
        method: Union[str, Callable[..., Any]],
        timeout: Optional[float] = None,
        args: tuple = (),
        kwargs: Optional[dict[str, Any]] = None,
        non_block: bool = False,
    ) -> Union[list[Any], Future]:
        def call() -> list[Any]:
            return [call_worker(self.worker, method, args, kwargs or {})]

        return _done(call) if non_block else call()

    def execute_model(self, scheduler_output, non_block: bool = False):
        def step():
            return self.worker.execute_model(scheduler_output)

        if not non_block:
            return step()
        clock = self.worker.clock
        if not isinstance(clock, PipelinedClock):
            return _done(step)
        self._step_future = _done(step, _StepFuture(clock))
        self._step_future.end_s = clock.gpu_now()
        return self._step_future

    def sample_tokens(self, grammar_output, non_block: bool = False):
        """The step's output: execute_model samples its tokens, so the synchronous loop never asks
        and the asynchronous one gets the step it just submitted."""
        return self._step_future if non_block else self._step_future.result()

    def take_draft_token_ids(self):
        return None

    def check_health(self) -> None:
        self.worker.check_health()

    @classmethod
    def supports_async_scheduling(cls) -> bool:
        """In virtual time only (see the class docstring); vLLM asks before the worker exists."""
        return os.environ.get(CLOCK_ENV) == "virtual"


class _StepFuture(Future):
    """A step's result, ready at once; waiting on it is the host waiting for the GPU to end it."""

    def __init__(self, clock: PipelinedClock):
        super().__init__()
        self.clock = clock
        self.end_s = clock.gpu_now()  # set to the step's end once it is submitted

    def result(self, timeout: Optional[float] = None) -> Any:
        self.clock.advance_to(self.end_s)
        return super().result(timeout)


def _done(call: Callable[[], Any], future: Optional[Future] = None) -> Future:
    """A future that already holds the call's result or exception, as a worker's reply would."""
    future = Future() if future is None else future
    try:
        future.set_result(call())
    except Exception as exc:  # noqa: BLE001 - handed over through the future
        future.set_exception(exc)
    return future
