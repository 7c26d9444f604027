"""vLLM V1 executor for the simulated GPU: one process, whatever the tensor-parallel size."""

from __future__ import annotations

import os
from concurrent.futures import Future
from typing import Any, Callable, Optional, Union

from vllm.logger import init_logger
from vllm.v1.executor.abstract import Executor

from vllm_cfs.sim.profile import PROFILE_ENV, load_profile
from vllm_cfs.sim.v1.worker import SimulatedWorker
from vllm_cfs.sim.worker_rpc import call_worker, log_start

# Under "vllm." so that vLLM's log handler (and so the server log) carries our lines.
logger = init_logger(f"vllm.{__name__}")


class SimulatedExecutor(Executor):
    """The V1 executor drives its workers through collective_rpc; here one simulated worker stands
    for all GPUs of the group, so every call returns a one-element list, and ``non_block`` calls
    return futures that are already done.

    Asynchronous scheduling is not supported (``supports_async_scheduling`` is False): with it
    the scheduler plans step n+1 while the GPU runs step n, so the host's scheduling time hides
    behind the GPU's. The clocks model a step as the GPU's time plus the host's time between
    steps (sim.clock.HostGap), not that overlap, and a step here is done by the time
    ``execute_model`` returns; supporting it exactly would take a model of the overlap, which
    the profiles do not measure. vLLM's engine then runs its synchronous step loop.
    """

    uses_ray = False
    supports_pp = False

    def _init_executor(self) -> None:
        gpu = load_profile(os.environ[PROFILE_ENV])
        self.worker = SimulatedWorker(self.vllm_config, gpu)
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

        return _done(step) if non_block else step()

    def sample_tokens(self, grammar_output, non_block: bool = False):
        # execute_model already returned the step's tokens, so the engine never asks for them.
        raise NotImplementedError("the simulated GPU samples in execute_model")

    def take_draft_token_ids(self):
        return None

    def check_health(self) -> None:
        self.worker.check_health()

    @classmethod
    def supports_async_scheduling(cls) -> bool:
        return False


def _done(call: Callable[[], Any]) -> Future:
    """A future that already holds the call's result or exception, as a worker's reply would."""
    future: Future = Future()
    try:
        future.set_result(call())
    except Exception as exc:  # noqa: BLE001 - handed over through the future
        future.set_exception(exc)
    return future
