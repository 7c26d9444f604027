"""How many KV blocks fit: the simulated counterpart of vLLM's memory profiling at start-up."""

from __future__ import annotations

import dataclasses

_GIB = 1024**3


class ModelDoesNotFit(ValueError):
    """The model (or its longest sequence) does not fit in the simulated GPU's memory."""


@dataclasses.dataclass(frozen=True)
class KVCachePlan:
    """All in bytes per GPU, except the block counts."""

    usable_bytes: float  # memory_bytes * gpu_memory_utilization
    weight_bytes: float
    activation_bytes: float
    overhead_bytes: float
    block_bytes: int
    swap_space_bytes: int
    gpu_blocks: int
    cpu_blocks: int

    @property
    def kv_cache_bytes(self) -> float:
        return self.usable_bytes - self.weight_bytes - self.activation_bytes - self.overhead_bytes

    def describe(self) -> str:
        return (
            f"usable {self.usable_bytes / _GIB:.2f} GiB - weights {self.weight_bytes / _GIB:.2f} GiB "
            f"- activations {self.activation_bytes / _GIB:.2f} GiB - overhead {self.overhead_bytes / _GIB:.2f} GiB "
            f"= KV cache {self.kv_cache_bytes / _GIB:.2f} GiB = {self.gpu_blocks} blocks of "
            f"{self.block_bytes / 1024**2:.2f} MiB"
        )


def plan_kv_cache(
    *,
    memory_bytes: int,
    gpu_memory_utilization: float,
    weight_bytes: float,
    activation_bytes: float,
    overhead_bytes: float,
    block_bytes: int,
    swap_space_bytes: int,
    block_size: int,
    max_model_len: int,
) -> KVCachePlan:
    """GPU blocks = (memory * utilization - weights - activations - overhead) // block bytes.

    Raises ModelDoesNotFit, with the numbers, when no block fits or when one sequence of
    max_model_len tokens would not fit: vLLM refuses to start on a real GPU in both cases.
    """
    usable = memory_bytes * gpu_memory_utilization
    kv_bytes = usable - weight_bytes - activation_bytes - overhead_bytes
    plan = KVCachePlan(
        usable_bytes=usable,
        weight_bytes=weight_bytes,
        activation_bytes=activation_bytes,
        overhead_bytes=overhead_bytes,
        block_bytes=block_bytes,
        swap_space_bytes=swap_space_bytes,
        gpu_blocks=max(0, int(kv_bytes // block_bytes)),
        cpu_blocks=int(swap_space_bytes // block_bytes),
    )
    if plan.gpu_blocks == 0:
        raise ModelDoesNotFit(
            f"the model does not fit on the simulated GPU: {plan.describe()}; "
            "use more GPUs (--tensor-parallel-size), a larger GPU profile or a higher --gpu-memory-utilization"
        )
    if plan.gpu_blocks * block_size < max_model_len:
        raise ModelDoesNotFit(
            f"the model's max seq len ({max_model_len}) is larger than the {plan.gpu_blocks * block_size} tokens "
            f"the simulated KV cache holds ({plan.describe()}); lower --max-model-len or give the cache more memory"
        )
    return plan
