"""Print the simulated GPU's figures for a setup: KV blocks, prefill, decode and swap times,
and (with --server-start) how long `vllm serve` takes to start on it.

    python benchmarks/sim_figures.py                      # the reference setup
    python benchmarks/sim_figures.py --profile h200 --tensor-parallel-size 1 --server-start

All times are MODELED for the simulated GPU (vllm_cfs.sim.cost_model), not measured on a GPU;
only the server start time is measured, on this machine.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from vllm_cfs.settings import staged_swap_blocks
from vllm_cfs.sim.cost_model import CostModel, PrefillChunk, StepWork
from vllm_cfs.sim.memory import ModelDoesNotFit, plan_kv_cache
from vllm_cfs.sim.model_dir import CODELLAMA_34B_CONFIG, codellama_34b_dir
from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import ProfileError, load_profile


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="a100-40gb", help="GPU profile name or JSON path (default: a100-40gb)")
    p.add_argument("--tensor-parallel-size", type=int, default=2)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--swap-space", type=float, default=16, help="GiB of CPU swap space per GPU (default: 16)")
    p.add_argument("--model-dir", type=Path, help="model folder with config.json (default: CodeLlama-34B)")
    p.add_argument("--context", type=int, default=1024, help="context per sequence for decode figures")
    p.add_argument("--server-start", action="store_true", help="also start `vllm serve` on the simulated GPU and time it")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """benchmarks/sim_figures.py: 0, or 1 when the setup cannot be modeled."""
    args = parse_args(argv)
    try:
        gpu = load_profile(args.profile)
        spec = ModelSpec.from_model_dir(args.model_dir) if args.model_dir else ModelSpec.from_config(CODELLAMA_34B_CONFIG)
        cost = CostModel(gpu, spec, args.tensor_parallel_size)
        max_model_len = int(CODELLAMA_34B_CONFIG["max_position_embeddings"]) if not args.model_dir else 16384
        plan = plan_kv_cache(
            memory_bytes=gpu.memory_bytes, gpu_memory_utilization=args.gpu_memory_utilization,
            weight_bytes=cost.weight_bytes_per_gpu,
            # V0 without chunked prefill: max_num_batched_tokens = max(max_model_len, 2048), 256 seqs
            activation_bytes=cost.activation_peak_bytes(max(max_model_len, 2048), 256),
            overhead_bytes=gpu.non_kv_overhead_bytes, block_bytes=cost.block_bytes,
            swap_space_bytes=int(args.swap_space * 1024**3), block_size=16, max_model_len=max_model_len,
        )
    except (ProfileError, ModelDoesNotFit, ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print(f"SIMULATED GPU figures: {args.tensor_parallel_size} x {gpu.name} ({gpu.source}), "
          f"gpu_memory_utilization {args.gpu_memory_utilization}, swap space {args.swap_space:g} GiB")
    print(f"  parameters {spec.parameter_count / 1e9:.2f} B, weights per GPU {cost.weight_bytes_per_gpu / 1024**3:.2f} GiB, "
          f"KV per token per GPU {cost.kv_bytes_per_token_per_gpu / 1024:.0f} KiB, block {cost.block_bytes / 1024**2:.2f} MiB")
    print(f"  memory: {plan.describe()}")
    print(f"  GPU blocks {plan.gpu_blocks} ({plan.gpu_blocks * 16} tokens), CPU blocks {plan.cpu_blocks}")
    print("  step times (ms): total = overhead + swap + prefill/decode + all-reduce")
    rows = [(f"prefill {n} tokens (1 sequence)", StepWork(prefills=(PrefillChunk(n),))) for n in (512, 2048)]
    rows += [(f"decode batch {b}, context {args.context}", StepWork(decode_contexts=(args.context,) * b)) for b in (1, 16, 64)]
    for label, work in rows:
        c = cost.step_cost(work)
        print(f"    {label:<34} {c.total * 1e3:9.3f}  = {c.overhead * 1e3:.3f} + {c.swap_in * 1e3 + c.swap_out * 1e3:.3f} "
              f"+ {(c.prefill + c.decode) * 1e3:.3f} + {c.allreduce * 1e3:.3f}")
    staging = staged_swap_blocks()
    staged = CostModel(gpu, spec, args.tensor_parallel_size, staging_blocks=staging)
    print("  swap times (ms; each delays the step it is in):")
    for n in (1, 64):
        for path, model in (("per-block (vLLM 0.9)", cost), (f"staged ({staging}-block buffer)", staged)):
            print(f"    swap out, {n} blocks, {path:<26} {model.swap_time(n) * 1e3:9.3f}")
    if args.server_start:
        from vllm_cfs.sim.server import ServerOptions, simulated_server

        options = ServerOptions(
            profile=args.profile, tensor_parallel_size=args.tensor_parallel_size,
            swap_space_gib=args.swap_space, gpu_memory_utilization=args.gpu_memory_utilization,
            model_dir=args.model_dir or codellama_34b_dir(),
        )
        print("  starting vllm serve on the simulated GPU ...", flush=True)
        with simulated_server(options) as server:
            line = re.search(r"# .* blocks: \d+, # CPU blocks: \d+", server.log_text())
            print(f"  server start (measured on this machine, launch to healthy /health): {server.startup_s:.1f} s")
            print(f"  server log: {line.group(0) if line else 'no blocks line found'}")
            gaps = _inter_token_gaps(server, max_tokens=64)
            print(f"  one request, 64 tokens, real clock (measured): mean inter-token gap {sum(gaps) / len(gaps) * 1e3:.1f} ms "
                  f"(modeled decode step at batch 1: {cost.step_cost(StepWork(decode_contexts=(64,))).total * 1e3:.1f} ms)")
    return 0


def _inter_token_gaps(server, max_tokens: int) -> list[float]:
    import time

    import openai

    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused")
    stream = client.completions.create(model=server.served_model_name, prompt="def main():", max_tokens=max_tokens,
                                       stream=True, extra_body={"ignore_eos": True})
    arrivals = [time.monotonic() for chunk in stream if chunk.choices and chunk.choices[0].text]
    return [b - a for a, b in zip(arrivals, arrivals[1:])]

