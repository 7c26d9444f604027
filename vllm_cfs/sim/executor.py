"""vLLM executor for the simulated GPU: one process, whatever the tensor-parallel size."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Union

from vllm.executor.executor_base import ExecutorBase
from vllm.logger import init_logger

from vllm_cfs.sim.profile import PROFILE_ENV, load_profile
from vllm_cfs.sim.worker import SimulatedWorker
from vllm_cfs.sim.worker_rpc import call_worker, log_start

# Under "vllm." so that vLLM's log handler (and so the server log) carries our lines.
logger = init_logger(f"vllm.{__name__}")


class SimulatedExecutor(ExecutorBase):
    """ExecutorBase drives its workers through collective_rpc; here there is one simulated worker
    standing for all GPUs of the group, so every call returns a one-element list."""

    uses_ray = False

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
    ) -> list[Any]:
        return [call_worker(self.worker, method, args, kwargs or {})]

    def check_health(self) -> None:
        self.worker.check_health()
