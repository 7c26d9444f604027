"""vLLM executor for the simulated GPU: one process, whatever the tensor-parallel size."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Union

from vllm.executor.executor_base import ExecutorBase
from vllm.logger import init_logger

from vllm_cfs.sim.profile import PROFILE_ENV, load_profile
from vllm_cfs.sim.worker import SimulatedWorker

# Under "vllm." so that vLLM's log handler (and so the server log) carries our lines.
logger = init_logger(f"vllm.{__name__}")


class SimulatedExecutor(ExecutorBase):
    """ExecutorBase drives its workers through collective_rpc; here there is one simulated worker
    standing for all GPUs of the group, so every call returns a one-element list."""

    uses_ray = False

    def _init_executor(self) -> None:
        gpu = load_profile(os.environ[PROFILE_ENV])
        self.worker = SimulatedWorker(self.vllm_config, gpu)
        pc = self.parallel_config
        logger.info(
            "Simulated GPU: %d x %s (%s; source: %s), tensor parallel %d modeled in one process, %s clock; "
            "no model weights are loaded",
            pc.world_size, gpu.name, gpu.description, gpu.source, pc.tensor_parallel_size, self.worker.clock.name,
        )

    def collective_rpc(
        self,
        method: Union[str, Callable[..., Any]],
        timeout: Optional[float] = None,
        args: tuple = (),
        kwargs: Optional[dict[str, Any]] = None,
    ) -> list[Any]:
        kwargs = kwargs or {}
        if callable(method):
            return [method(self.worker, *args, **kwargs)]
        if not hasattr(self.worker, method):
            raise NotImplementedError(f"the simulated GPU does not support {method!r}")
        return [getattr(self.worker, method)(*args, **kwargs)]

    def check_health(self) -> None:
        self.worker.check_health()
