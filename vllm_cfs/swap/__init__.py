"""Staged KV swap for vLLM 0.9.0 V0: `--worker-cls vllm_cfs.swap.StagedSwapWorker`.

`copy_engine` is plain torch (it runs without vLLM, on CPU tensors or a real GPU); `worker` is the
vLLM glue, imported only when the worker class is asked for.
"""

__all__ = ["StagedSwapWorker", "WORKER_CLS", "is_staged_worker"]

WORKER_CLS = "vllm_cfs.swap.StagedSwapWorker"


def is_staged_worker(worker_cls) -> bool:
    """Whether vLLM's --worker-cls (a dotted name or a class) names our staged swap worker."""
    name = worker_cls if isinstance(worker_cls, str) else f"{worker_cls.__module__}.{worker_cls.__qualname__}"
    return name in (WORKER_CLS, "vllm_cfs.swap.worker.StagedSwapWorker")


def __getattr__(name: str):
    if name == "StagedSwapWorker":
        from vllm_cfs.swap.worker import StagedSwapWorker

        return StagedSwapWorker
    raise AttributeError(f"module 'vllm_cfs.swap' has no attribute {name!r}")
