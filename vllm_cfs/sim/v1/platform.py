"""vLLM platform for the simulated GPU on vLLM's V1 engine (vLLM 0.24).

vllm_cfs.sim.plugin.activate (the entry point) selects it when ``VLLM_CFS_SIM_GPU`` names a
GPU profile and the installed vLLM is not 0.9.x. vLLM's real V1 engine core, scheduler, KV cache
manager and OpenAI server then run unchanged; the GPU's work is done by
:class:`vllm_cfs.sim.v1.executor.SimulatedExecutor` in the engine core's process, whatever the
tensor-parallel size. The hub ids the simulator ships (``codellama/CodeLlama-34b-hf``) resolve
offline to their local folders (vllm_cfs.sim.model_redirect); other ids are refused in one line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from vllm.logger import init_logger
from vllm.platforms.interface import Platform, PlatformEnum

from vllm_cfs.sim import model_redirect
from vllm_cfs.sim.profile import PROFILE_ENV, load_profile

if TYPE_CHECKING:
    from vllm.config import VllmConfig

# Under "vllm." so that vLLM's log handler (and so the server log) carries our lines.
logger = init_logger(f"vllm.{__name__}")


class SimulatedGPUPlatform(Platform):
    _enum = PlatformEnum.OOT
    # The modeled device is a CUDA GPU, and vLLM's own lines name it so; torch.device("cuda")
    # needs no GPU, and nothing here allocates on it: the executor does no tensor work.
    device_type = "cuda"
    dispatch_key = "CPU"
    profile_name = os.environ.get(PROFILE_ENV, "")
    device_name = f"cuda (simulated {profile_name})"

    @classmethod
    def get_device_name(cls, device_id: int = 0) -> str:
        return cls.device_name

    @classmethod
    def get_device_total_memory(cls, device_id: int = 0) -> int:
        # vLLM picks its default batch sizes from this and the name (a GPU of 70 GiB or more that is
        # not an A100 gets the larger ones), as it would on the modeled GPU.
        return load_profile(cls.profile_name).memory_bytes

    @classmethod
    def import_kernels(cls) -> None:
        return  # no kernel runs on the simulated GPU (and vLLM's CUDA build has none for this host)

    @classmethod
    def inference_mode(cls):
        return torch.no_grad()

    @classmethod
    def is_pin_memory_available(cls) -> bool:
        return False

    @classmethod
    def get_attn_backend_cls(cls, selected_backend, attn_selector_config, num_heads=None) -> str:
        # What vLLM picks for a Llama on the modeled GPUs; the executor runs no attention.
        return "vllm.v1.attention.backends.flash_attn.FlashAttentionBackend"

    @classmethod
    def pre_register_and_update(cls, parser=None) -> None:
        # Called with the parser while `vllm serve` builds its command line, and without one by
        # EngineArgs.create_engine_config right before it builds the ModelConfig.
        if parser is not None:
            model_redirect.resolve_model_arguments(parser)
        else:
            model_redirect.install()

    @classmethod
    def apply_config_platform_defaults(cls, vllm_config: "VllmConfig") -> None:
        # No model is compiled and no CUDA graph captured: eager mode says so in vLLM's own config
        # line. This hook runs before vLLM derives the CUDA-graph settings from enforce_eager, but
        # after it has derived the compilation mode, so that is set here too.
        from vllm.config.compilation import CompilationMode

        if vllm_config.model_config is not None:
            vllm_config.model_config.enforce_eager = True
        vllm_config.compilation_config.mode = CompilationMode.NONE

    @classmethod
    def check_and_update_config(cls, vllm_config: "VllmConfig") -> None:
        from vllm_cfs.sim.v1.executor import SimulatedExecutor
        from vllm_cfs.sim.v1.offload import CONNECTOR as OFFLOAD_CONNECTOR

        parallel = vllm_config.parallel_config
        if parallel.pipeline_parallel_size > 1:
            raise ValueError("the simulated GPU models tensor parallelism only: use --pipeline-parallel-size 1")
        if parallel.data_parallel_size > 1:
            raise ValueError("the simulated GPU models one engine: use --data-parallel-size 1")
        if vllm_config.speculative_config is not None:
            raise ValueError("the simulated GPU does not model speculative decoding")
        if vllm_config.lora_config is not None:
            raise ValueError("the simulated GPU does not model LoRA adapters")
        model = vllm_config.model_config
        if model is not None and model.runner_type != "generate":
            raise ValueError("the simulated GPU models text generation only")
        transfer = vllm_config.kv_transfer_config
        if transfer is not None and transfer.kv_connector is not None and transfer.kv_connector != OFFLOAD_CONNECTOR:
            raise ValueError(
                f"the simulated GPU models one KV connector, vLLM's {OFFLOAD_CONNECTOR} "
                f"(--kv-offloading-backend native --kv-offloading-size GiB), not {transfer.kv_connector}")
        if vllm_config.cache_config.cache_dtype != "auto":
            raise ValueError("the simulated GPU models the KV cache in the model's dtype: use --kv-cache-dtype auto")
        # TP stays in the config (shards, KV heads per GPU, all-reduces) but runs in this process.
        parallel.distributed_executor_backend = SimulatedExecutor
        scheduler = vllm_config.scheduler_config
        if scheduler.async_scheduling and not SimulatedExecutor.supports_async_scheduling():
            # vLLM turned it on for the executor it had in mind, before this hook runs.
            logger.info("Asynchronous scheduling is off on the simulated GPU's wall clock (see SimulatedExecutor)")
            scheduler.async_scheduling = False
        logger.info(
            "The GPU is SIMULATED (vllm-cfs): profile %s, tensor parallel %d; times and memory are modeled",
            cls.profile_name, parallel.tensor_parallel_size,
        )
