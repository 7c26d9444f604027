"""The policies on vLLM V1's scheduler (the V1 pin, vllm==0.24.0): CFSScheduler and FairScheduler.

``--scheduler-cls vllm_cfs.v1.FairScheduler`` (or ``vllm_cfs.FairScheduler`` where V1 is installed).
Both subclass vLLM's AsyncScheduler and rank requests with the shared policy core
(vllm_cfs.policy) through ``adapter``.
"""

__all__ = ["CFSScheduler", "FairScheduler"]


def __getattr__(name: str):
    if name in __all__:
        from vllm_cfs.v1 import scheduler

        return getattr(scheduler, name)
    raise AttributeError(f"module 'vllm_cfs.v1' has no attribute {name!r}")
