"""vllm-cfs: fair scheduling for vLLM under request bursts, on V0 (vLLM 0.9.0) and V1.

`vllm serve ... --scheduler-cls vllm_cfs.CFSScheduler` loads the assignment's policy,
`--scheduler-cls vllm_cfs.FairScheduler` ours (first token first, then first come first served),
each for the engine the installed vLLM runs: vllm_cfs.v0 on vLLM 0.9.0, vllm_cfs.v1 otherwise.
The imports are lazy so that the benchmark client and the analysis tools do not pay for vLLM.
"""

__all__ = ["CFSScheduler", "FairScheduler"]

V0_VLLM = "0.9.0"


def engine() -> str:
    """"v0" where the installed vLLM is the V0 pin, else "v1"."""
    from importlib.metadata import version

    return "v0" if version("vllm") == V0_VLLM else "v1"


def __getattr__(name: str):
    if name == "CFSScheduler":
        if engine() == "v0":
            from vllm_cfs.v0.scheduler import CFSScheduler
        else:
            from vllm_cfs.v1.scheduler import CFSScheduler
        return CFSScheduler
    if name == "FairScheduler":
        if engine() == "v0":
            from vllm_cfs.v0.fair import FairScheduler
        else:
            from vllm_cfs.v1.scheduler import FairScheduler
        return FairScheduler
    raise AttributeError(f"module 'vllm_cfs' has no attribute {name!r}")
