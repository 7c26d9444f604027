"""vLLM's real V0 LLMEngine loads and runs CFSScheduler from `scheduler_cls`.

The engine runs on the simulated GPU in a child process: vLLM fixes its platform once per
process, and the test process must stay free to use any other.
"""

import json
import os
import subprocess
import sys
import textwrap

ENGINE_SCRIPT = textwrap.dedent("""
    import json
    from vllm import EngineArgs, LLMEngine, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm_cfs.sim.model_dir import codellama_34b_dir

    engine = LLMEngine.from_engine_args(EngineArgs(
        model=str(codellama_34b_dir()), scheduler_cls="vllm_cfs.CFSScheduler",
        tensor_parallel_size=2, preemption_mode="swap", swap_space=1,
        num_gpu_blocks_override=40, max_num_seqs=16))
    requests = {f"r{i}": (20 + 37 * i, 30 + 11 * i, 1 + (i % 3 == 0)) for i in range(10)}
    for rid, (prompt_len, max_tokens, n) in requests.items():
        engine.add_request(rid, TokensPrompt(prompt_token_ids=[1 + t for t in range(prompt_len)]),
                           SamplingParams(max_tokens=max_tokens, ignore_eos=True, n=n))
    finished = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                finished[out.request_id] = [len(c.token_ids) for c in out.outputs]
    scheduler = engine.scheduler[0]
    bm = scheduler.block_manager
    print("RESULT " + json.dumps({
        "scheduler": type(scheduler).__module__ + "." + type(scheduler).__qualname__,
        "interval": scheduler.cfs_interval,
        "requests": requests, "finished": finished,
        "stats": vars(scheduler.cfs_stats),
        "free_gpu": bm.get_num_free_gpu_blocks(), "total_gpu": engine.cache_config.num_gpu_blocks,
        "free_cpu": bm.get_num_free_cpu_blocks(), "total_cpu": engine.cache_config.num_cpu_blocks,
    }))
""")


def run_engine(interval: str) -> dict:
    env = dict(os.environ, VLLM_USE_V1="0", VLLM_CFS_SIM_GPU="h200", VLLM_CFS_SIM_CLOCK="virtual",
               HF_HUB_OFFLINE="1", CFS_INTERVAL=interval)
    proc = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_engine_runs_cfs_scheduler_with_swapping_and_parallel_sampling():
    result = run_engine("4")
    assert result["scheduler"] == "vllm_cfs.v0.scheduler.CFSScheduler"
    assert result["interval"] == 4
    # Every request, the n=2 ones included, got exactly its max_tokens per completion.
    assert result["finished"] == {rid: [max_tokens] * n
                                  for rid, (_, max_tokens, n) in result["requests"].items()}
    stats = result["stats"]
    assert stats["cfs_steps"] > 0 and stats["preempted_by_swap"] > 0
    assert stats["blocks_swapped_in"] == stats["blocks_swapped_out"] > 0
    assert result["free_gpu"] == result["total_gpu"] and result["free_cpu"] == result["total_cpu"]
