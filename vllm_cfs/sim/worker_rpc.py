"""What both engines' simulated executors do alike: say what they model, and call their one worker.

Engine-free on purpose (no vLLM import): vllm_cfs.sim.executor (V0) and vllm_cfs.sim.v1.executor
(V1) subclass different vLLM executor bases, in different venvs.
"""

from __future__ import annotations

from typing import Any, Callable, Union


def log_start(logger, gpu, parallel_config, clock_name: str) -> None:
    logger.info(
        "Simulated GPU: %d x %s (%s; source: %s), tensor parallel %d modeled in one process, %s clock; "
        "no model weights are loaded",
        parallel_config.world_size, gpu.name, gpu.description, gpu.source, parallel_config.tensor_parallel_size,
        clock_name,
    )


def call_worker(worker, method: Union[str, Callable[..., Any]], args: tuple, kwargs: dict) -> Any:
    """One collective_rpc call on the worker that stands for every GPU of the group."""
    if callable(method):
        return method(worker, *args, **kwargs)
    if not hasattr(worker, method):
        raise NotImplementedError(f"the simulated GPU does not support {method!r}")
    return getattr(worker, method)(*args, **kwargs)
