"""vLLM platform for the simulated GPU on vLLM 0.9's V0 engine.

vllm_cfs.sim.plugin.activate (the entry point) selects it when ``VLLM_CFS_SIM_GPU`` names a
GPU profile and the installed vLLM is 0.9.x. vLLM's V0 engine, scheduler and OpenAI server then
run unchanged and the GPU's work is done by :class:`vllm_cfs.sim.executor.SimulatedExecutor`,
in one process whatever the TP size. The
hub ids the simulator ships (``codellama/CodeLlama-34b-hf``) resolve offline to their local
folders (vllm_cfs.sim.model_redirect); other ids are refused in one line.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Optional

import torch
from vllm.logger import init_logger
from vllm.platforms.interface import Platform, PlatformEnum

from vllm_cfs.sim import model_redirect
from vllm_cfs.sim.profile import PROFILE_ENV, load_profile

if TYPE_CHECKING:
    from vllm.config import VllmConfig

# Under "vllm." so that vLLM's log handler (and so the server log) carries our lines.
logger = init_logger(f"vllm.{__name__}")

# The modeled node's host memory (a DGX A100 has 1 TiB). vLLM refuses a swap space above 70% of
# host memory; the simulated CPU cache allocates nothing, so this host's RAM is not the limit.
SIMULATED_HOST_MEMORY_BYTES = 1024**4


def _simulated_host_memory() -> int:
    import psutil

    return max(psutil.virtual_memory().total, SIMULATED_HOST_MEMORY_BYTES)


class SimulatedGPUPlatform(Platform):
    _enum = PlatformEnum.OOT
    # "cuda", not "cpu": V0 swaps its GPU and CPU KV statistics when the device type is "cpu" (its
    # CPU worker reports CPU blocks as GPU blocks). torch.device("cuda") needs no GPU, and nothing
    # here allocates on it: the executor does no tensor work.
    device_type = "cuda"
    dispatch_key = "CPU"
    profile_name = os.environ.get(PROFILE_ENV, "")
    device_name = f"cuda (simulated {profile_name})"

    def __init__(self) -> None:
        # A patch (the only other one is in model_redirect.install): vLLM has no hook for host
        # memory, and checks the swap space against it while building its config (vllm.config
        # binds vllm.utils.get_cpu_memory at import).
        import vllm.utils

        vllm.utils.get_cpu_memory = _simulated_host_memory
        if "vllm.config" in sys.modules and hasattr(sys.modules["vllm.config"], "get_cpu_memory"):
            sys.modules["vllm.config"].get_cpu_memory = _simulated_host_memory

    @classmethod
    def get_device_name(cls, device_id: int = 0) -> str:
        return cls.device_name

    @classmethod
    def get_device_total_memory(cls, device_id: int = 0) -> int:
        return load_profile(cls.profile_name).memory_bytes

    @classmethod
    def is_async_output_supported(cls, enforce_eager: Optional[bool]) -> bool:
        return False

    @classmethod
    def inference_mode(cls):
        return torch.no_grad()

    @classmethod
    def get_attn_backend_cls(cls, selected_backend, head_size, dtype, kv_cache_dtype, block_size, use_v1, use_mla) -> str:
        # What vLLM 0.9 picks on the modelled GPUs. The executor runs no attention; a cache engine
        # built on CPU tensors (the staged swap worker's test) needs the backend's KV layout.
        return "vllm.attention.backends.flash_attn.FlashAttentionBackend"

    @classmethod
    def is_pin_memory_available(cls) -> bool:
        return False

    @classmethod
    def pre_register_and_update(cls, parser=None) -> None:
        # Called with the parser while `vllm serve` builds its command line, and without one by
        # EngineArgs.create_engine_config right before it builds the ModelConfig.
        if parser is not None:
            model_redirect.guard_model_arguments(parser)
        else:
            model_redirect.install()
        # vLLM inspects a lazily registered architecture in a fresh Python process, to keep CUDA out
        # of this one: ~15 s of imports on 2 cores, a third of the server's start. There is no CUDA
        # here, so register the Llama class itself and vLLM inspects it in this process (~3 s).
        from vllm.model_executor.models.llama import LlamaForCausalLM
        from vllm.model_executor.models.registry import ModelRegistry

        if getattr(ModelRegistry.models.get("LlamaForCausalLM"), "model_cls", None) is not LlamaForCausalLM:
            ModelRegistry.register_model("LlamaForCausalLM", LlamaForCausalLM)

    @classmethod
    def check_and_update_config(cls, vllm_config: "VllmConfig") -> None:
        import vllm.envs as envs

        from vllm_cfs.sim.executor import SimulatedExecutor

        if envs.VLLM_USE_V1:
            raise ValueError("the simulated GPU runs vLLM's V0 engine: set VLLM_USE_V1=0")
        parallel = vllm_config.parallel_config
        if parallel.pipeline_parallel_size > 1:
            raise ValueError("the simulated GPU models tensor parallelism only: use --pipeline-parallel-size 1")
        if vllm_config.scheduler_config is not None and vllm_config.scheduler_config.is_multi_step:
            raise ValueError("the simulated GPU runs one token per step: use --num-scheduler-steps 1")
        if vllm_config.speculative_config is not None:
            raise ValueError("the simulated GPU does not model speculative decoding")
        # TP stays in the config (shards, KV heads per GPU, all-reduces) but runs in this process.
        parallel.distributed_executor_backend = SimulatedExecutor
        if vllm_config.model_config is not None:
            vllm_config.model_config.enforce_eager = True  # no CUDA graphs to capture
        if vllm_config.cache_config is not None and vllm_config.cache_config.block_size is None:
            vllm_config.cache_config.block_size = 16
        logger.info(
            "The GPU is SIMULATED (vllm-cfs): profile %s, tensor parallel %d; times and memory are modeled",
            cls.profile_name, parallel.tensor_parallel_size,
        )
