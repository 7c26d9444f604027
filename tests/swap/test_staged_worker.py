"""The vLLM glue: vLLM's Worker.execute_worker → StagedCacheEngine → StagedCopier, on CPU tensors."""

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).with_name("staged_worker_probe.py")


def test_vllm_worker_swaps_through_the_staged_cache_engine():
    # a fresh process: the simulated platform must be chosen before vLLM first resolves one
    env = dict(os.environ, VLLM_CFS_SIM_GPU="a100-40gb", VLLM_USE_V1="0", VLLM_CFS_STAGING_BLOCKS="3")
    run = subprocess.run([sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    # CodeLlama-34B at TP 2: 48 layers, 4 KV heads of 128 per GPU, 16-token blocks, FlashAttention's layout
    assert found["is_staged"] and found["backend"] == "FLASH_ATTN"
    assert found["gpu_layer_shape"] == [2, 12, 16, 4, 128]
    assert found["host_shape"] == [9, 48, 2, 16 * 4 * 128]
    assert found["staging_blocks"] == 3  # 4 blocks per swap: the copier goes through it in two chunks
    assert found["swapped_out"] and found["device_unchanged_by_swap_out"]
    assert found["swapped_in"] and found["other_blocks_unchanged"]
