"""vllm-cfs: a Completely-Fair-Scheduler policy for vLLM 0.9.0's V0 scheduler.

`vllm serve ... --scheduler-cls vllm_cfs.CFSScheduler` loads the policy. The import is lazy so
that the benchmark client and the analysis tools do not pay for importing vLLM.
"""

__all__ = ["CFSScheduler"]


def __getattr__(name: str):
    if name == "CFSScheduler":
        from vllm_cfs.scheduler import CFSScheduler

        return CFSScheduler
    raise AttributeError(f"module 'vllm_cfs' has no attribute {name!r}")
