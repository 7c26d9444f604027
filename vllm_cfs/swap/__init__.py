"""Staged KV swap for vLLM 0.9.0 V0: `--worker-cls vllm_cfs.swap.StagedSwapWorker`.

`copy_engine` is plain torch (it runs without vLLM, on CPU tensors or a real GPU); `worker` is the
vLLM glue, imported only when the worker class is asked for.
"""

__all__ = ["StagedSwapWorker"]


def __getattr__(name: str):
    if name == "StagedSwapWorker":
        from vllm_cfs.swap.worker import StagedSwapWorker

        return StagedSwapWorker
    raise AttributeError(f"module 'vllm_cfs.swap' has no attribute {name!r}")
