"""Run by test_staged_worker.py in a fresh process: vLLM's own Worker.execute_worker swapping through
StagedSwapWorker's cache engine on CPU tensors. Prints one JSON line of findings."""

import dataclasses
import importlib
import json
import sys
import types

import torch


def import_vllm_worker() -> None:
    """vLLM's worker module loads its CUDA-only memory-pool extension at import; this machine has no
    libcuda.so.1, and nothing here uses the pool (sleep mode is off), so an empty module stands in."""
    try:
        importlib.import_module("vllm.cumem_allocator")
    except ImportError:
        stand_in = types.ModuleType("vllm.cumem_allocator")
        for name in ("init_module", "python_create_and_map", "python_unmap_and_release"):
            setattr(stand_in, name, None)
        sys.modules["vllm.cumem_allocator"] = stand_in


def main() -> None:
    import_vllm_worker()
    from vllm.config import DeviceConfig
    from vllm.engine.arg_utils import EngineArgs
    from vllm.sequence import ExecuteModelRequest

    from vllm_cfs.sim.model_dir import codellama_34b_dir
    from vllm_cfs.swap.worker import StagedCacheEngine, StagedSwapWorker

    model = str(codellama_34b_dir())
    config = EngineArgs(model=model, tensor_parallel_size=2, load_format="dummy").create_engine_config()
    config = dataclasses.replace(config, device_config=DeviceConfig("cpu"))
    worker = StagedSwapWorker(vllm_config=config, local_rank=0, rank=0,
                              distributed_init_method="tcp://127.0.0.1:1", is_driver_worker=True)
    worker.device = torch.device("cpu")  # what Worker.init_device sets, which accepts CUDA devices only
    worker.cache_config.num_gpu_blocks, worker.cache_config.num_cpu_blocks = 12, 9
    worker._init_cache_engine()
    engine = worker.cache_engine[0]
    generator = torch.Generator().manual_seed(0)
    for layer in engine.gpu_cache:
        layer.copy_(torch.randn(layer.shape, generator=generator).to(layer.dtype))
    before = [layer.clone() for layer in engine.gpu_cache]

    def step(**swaps):
        request = ExecuteModelRequest(seq_group_metadata_list=[], **swaps)
        worker.execute_worker(worker.prepare_worker_input(request))

    out_pairs = [(3, 0), (5, 1), (11, 7), (1, 8)]
    step(blocks_to_swap_out=out_pairs)
    swapped_out = all(torch.equal(engine.cpu_cache[i][c].reshape(-1), layer[:, g].reshape(-1))
                      for i, layer in enumerate(before) for g, c in out_pairs)
    device_unchanged = all(torch.equal(a, b) for a, b in zip(engine.gpu_cache, before))

    in_pairs = [(0, 9), (1, 2), (7, 4), (8, 6)]
    step(blocks_to_swap_in=in_pairs)
    swapped_in = all(torch.equal(engine.gpu_cache[i][:, d], before[i][:, g])
                     for i in range(len(before)) for (c, d), (g, _) in zip(in_pairs, out_pairs))
    moved = {d for _, d in in_pairs}
    others_unchanged = all(torch.equal(engine.gpu_cache[i][:, b], before[i][:, b])
                           for i in range(len(before)) for b in range(12) if b not in moved)
    print(json.dumps({
        "engine": type(engine).__name__, "is_staged": isinstance(engine, StagedCacheEngine),
        "backend": engine.attn_backend.get_name(), "gpu_layer_shape": list(engine.gpu_cache[0].shape),
        "host_shape": list(engine.host_cache.shape), "staging_blocks": engine.copier.staging_blocks,
        "swapped_out": swapped_out, "device_unchanged_by_swap_out": device_unchanged,
        "swapped_in": swapped_in, "other_blocks_unchanged": others_unchanged,
    }))


if __name__ == "__main__":
    main()
