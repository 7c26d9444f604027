"""vllm-cfs: a Completely-Fair-Scheduler policy for vLLM 0.9.0's V0 scheduler.

`vllm serve ... --scheduler-cls vllm_cfs.CFSScheduler` loads the assignment's policy,
`--scheduler-cls vllm_cfs.FairScheduler` ours (first token first, then first come first served).
The imports are lazy so that the benchmark client and the analysis tools do not pay for vLLM.
"""

__all__ = ["CFSScheduler", "FairScheduler"]


def __getattr__(name: str):
    if name == "CFSScheduler":
        from vllm_cfs.scheduler import CFSScheduler

        return CFSScheduler
    if name == "FairScheduler":
        from vllm_cfs.fair import FairScheduler

        return FairScheduler
    raise AttributeError(f"module 'vllm_cfs' has no attribute {name!r}")
