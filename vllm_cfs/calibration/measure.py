"""The measurement families and a whole run that records them, with CUDA events, warm-up and medians.

  prefill  equal-length sequences through the whole decoder, logits of each last token only;
  decode   one step for a batch at a context, replayed from a CUDA graph as vLLM 0.9 does
           (the eager time beside it);
  swap     KV blocks between GPU and pinned host memory, both directions, three ways (see
           swap_rig): per_block (vLLM 0.9's pattern), batched_memcpy and staged;
  ceilings a large GEMM, a device copy and a pinned host copy, for scale.
"""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path

from vllm_cfs.calibration.copiers import LoopCopier, build_copier, prepare_build_environment
from vllm_cfs.calibration.decoder import Decoder
from vllm_cfs.calibration.environment import describe_environment
from vllm_cfs.calibration.formats import RAW_SCHEMA, CalibrationError
from vllm_cfs.calibration.plans import DRY_PLAN, FULL_PLAN, QUICK_PLAN, SweepPlan
from vllm_cfs.calibration.shapes import CODELLAMA_34B, TINY, ModelShape
from vllm_cfs.calibration.swap_rig import SwapRig
from vllm_cfs.calibration.timing import Clock, Progress


def measure_ceilings(torch, device, clock: Clock, quick: bool) -> dict:
    """What this GPU reaches on the simplest kernels: a large GEMM, a device copy, a host copy."""
    out: dict = {}
    n = 8192 if device.type == "cuda" else 256
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    t = clock.time(partial(torch.matmul, a, b), 3, 10)
    out["gemm_bf16"] = {"m_n_k": n, "seconds": t.seconds, "flops_per_s": 2 * n**3 / t.seconds}
    del a, b
    elems = (2 * 1024**3 if device.type == "cuda" else 2**22) // 2
    src = torch.empty(elems, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    t = clock.time(partial(dst.copy_, src), 3, 10)
    out["device_copy"] = {"bytes": 2 * elems, "seconds": t.seconds,
                          "bytes_per_s_read_plus_write": 2 * 2 * elems / t.seconds}
    del src, dst
    if device.type == "cuda":
        elems = 512 * 1024**2 // 2
        dev = torch.empty(elems, dtype=torch.bfloat16, device=device).normal_()
        host = torch.empty(elems, dtype=torch.bfloat16, pin_memory=True)
        for name, fn in (("host_to_device", partial(dev.copy_, host, non_blocking=True)),
                         ("device_to_host", partial(host.copy_, dev, non_blocking=True))):
            t = clock.time(fn, 2, 3 if quick else 7)
            out[name] = {"bytes": 2 * elems, "seconds": t.seconds, "bytes_per_s": 2 * elems / t.seconds}
        del dev, host
    return out


def measure_prefill(torch, model: Decoder, clock: Clock, plan: SweepPlan) -> list[dict]:
    progress = Progress("prefill", len(plan.prefill))
    points = []
    with model.attention_backends(), torch.inference_mode():
        for seq_lens in plan.prefill:
            tokens = torch.randint(model.shape.vocab, (len(seq_lens), seq_lens[0]), device=model.device)
            big = sum(seq_lens) >= 4096
            t = clock.time(partial(model.prefill, tokens), 1, 3 if big else plan.reps)
            points.append({"seq_lens": list(seq_lens), "tokens": sum(seq_lens), **t.as_dict()})
            progress.step(f"{len(seq_lens)} x {seq_lens[0]} tokens: {t.seconds * 1e3:9.2f} ms")
    return points


def capture_graph(torch, fn):
    """A CUDA graph of fn, captured after warm-up on a side stream (as vLLM captures decode)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def measure_decode(torch, model: Decoder, clock: Clock, plan: SweepPlan) -> tuple[list[dict], list[dict]]:
    grid = [(b, c) for c in plan.decode_contexts for b in plan.decode_batches]
    progress = Progress("decode", len(grid))
    points, skipped = [], []
    cuda = model.device.type == "cuda"
    s = model.shape
    with model.attention_backends(), torch.inference_mode():
        for batch, context in grid:
            if cuda:
                torch.cuda.empty_cache()   # free() below must count what prefill's cache still holds
            need = s.layers * 2 * batch * s.kv_heads * (context + 1) * s.head_dim * s.dtype_bytes
            if cuda and need > torch.cuda.mem_get_info()[0] - 4 * 1024**3:
                skipped.append({"batch": batch, "context": context,
                                "reason": f"KV cache of {need / 1024**3:.1f} GiB does not fit beside the weights"})
                progress.step(f"B={batch} ctx={context}: skipped (KV {need / 1024**3:.1f} GiB does not fit)")
                continue
            state = model.new_decode_batch(batch, context)
            step = partial(model.decode_step, state)
            eager = clock.time(step, 2, plan.reps)
            point = {"batch": batch, "context": context, "eager_seconds": eager.seconds,
                     "eager_samples": eager.samples}
            if cuda:
                graph = capture_graph(torch, step)
                t = clock.time(graph.replay, 3, max(plan.reps, 10))
                point.update(t.as_dict(), cuda_graph=True)
                del graph
            else:
                point.update(eager.as_dict(), cuda_graph=False)
            points.append(point)
            progress.step(f"B={batch} ctx={context}: {point['seconds'] * 1e3:8.3f} ms"
                          f" (eager {eager.seconds * 1e3:8.3f} ms)")
            del state, step   # frees the KV cache before the next point allocates its own
    return points, skipped


def measure_swap(torch, device, shape: ModelShape, clock: Clock, plan: SweepPlan, copier, seed: int) -> dict:
    """All swap points; a path that fails its byte check is reported and not timed."""
    cuda = device.type == "cuda"
    stream = torch.cuda.Stream() if cuda else None
    result: dict = {"copier": copier.description, "points": [], "verified": {}, "failed": {}}
    paths = ["per_block", "staged"] + (["batched_memcpy"] if copier.has_batched else [])
    rigs = [(shape.copy_bytes, plan.swap_blocks)] + [
        (size, (plan.swap_copy_size_blocks,)) for size in plan.swap_copy_sizes]
    total = sum(len(paths if size == shape.copy_bytes else ["per_block"]) * len(blocks) * 2
                for size, blocks in rigs)
    progress = Progress("swap", total)
    ctx = torch.cuda.stream(stream) if cuda else nullcontext()
    with ctx:
        for copy_bytes, blocks in rigs:
            max_n = max(blocks)
            rig = SwapRig(torch, device, shape.layers, copy_bytes, gpu_blocks=2 * max_n + 8,
                          cpu_blocks=max_n + max_n // 4 + 4, max_blocks=max_n, copier=copier,
                          stream=stream, seed=seed)
            rig_paths = paths if copy_bytes == shape.copy_bytes else ["per_block"]
            for path in rig_paths:
                key = f"{path}@{copy_bytes}"
                try:
                    rig.verify(path, min(8, max_n))
                    result["verified"][key] = True
                except Exception as exc:  # report the broken path, keep measuring the others
                    result["failed"][key] = f"{type(exc).__name__}: {exc}"
                    for _ in range(len(blocks) * 2):
                        progress.step(f"{path} {copy_bytes} B/copy: FAILED ({exc})")
                    continue
                for n in blocks:
                    pick = rig.pick(n)
                    for to_host in (True, False):
                        t = clock.time(partial(getattr(rig, path), pick, to_host), plan.warmup, plan.reps)
                        copies = n * shape.layers * 2
                        result["points"].append({
                            "path": path, "direction": "out" if to_host else "in", "blocks": n,
                            "copy_bytes": copy_bytes, "copies": copies, "bytes": copies * copy_bytes,
                            **t.as_dict()})
                        progress.step(f"{path:14s} {'out' if to_host else 'in ':3s} n={n:4d} "
                                      f"{copy_bytes:6d} B/copy: {t.seconds * 1e3:9.3f} ms")
            del rig
            if cuda:
                torch.cuda.empty_cache()
    return result


def choose_layers(torch, device, requested: int | None) -> int:
    """--layers, else all 48 when they fit on the card, else as many as do (1 on a CPU)."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 1
    total = torch.cuda.get_device_properties(device).total_memory
    fixed = (2 * CODELLAMA_34B.vocab * CODELLAMA_34B.hidden + CODELLAMA_34B.hidden) * 2
    # weights in at most 55% of the card leave room for the decode KV caches
    fits = int((0.55 * total - fixed) // (CODELLAMA_34B.layer_params * 2))
    if fits < 1:
        raise CalibrationError(f"this GPU ({total / 1024**3:.1f} GiB) cannot hold one CodeLlama-34B layer")
    return min(CODELLAMA_34B.layers, fits)


def measure(args, torch, out: Path) -> dict:
    """A whole run as the command line asks: every family, raw.json rewritten after each."""
    device = torch.device("cpu" if args.dry_run else "cuda")
    plan = DRY_PLAN if args.dry_run else QUICK_PLAN if args.quick else FULL_PLAN
    base_shape = TINY if args.dry_run else CODELLAMA_34B
    shape = base_shape.with_layers(choose_layers(torch, device, args.layers))
    torch.manual_seed(args.seed)
    env = describe_environment(torch, device)
    clock = Clock(torch, device)
    print(f"{env.gpu} (driver {env.driver}), torch {env.torch}, CUDA {env.cuda}", flush=True)
    if shape.layers < base_shape.layers:
        print(f"running {shape.layers} of {base_shape.layers} layers: weights and KV are per layer, "
              f"so times scale about linearly with layers ({base_shape.layers / shape.layers:.2f}x); "
              "the fit counts parameters and bytes of the model that ran, so its factors carry over",
              flush=True)

    # the swap extension compiles on the CPU while the GPU runs prefill and decode
    build_dir = Path(tempfile.mkdtemp(prefix="calib_swap_"))
    pool = concurrent.futures.ThreadPoolExecutor(1)
    copier_future = None
    if device.type == "cuda":
        prepare_build_environment(torch, device)
        copier_future = pool.submit(build_copier, torch, build_dir)

    max_positions = max([max(s) for s in plan.prefill] + [c + 1 for c in plan.decode_contexts])
    model = Decoder(torch, shape, device, max_positions)
    raw = {
        "schema": RAW_SCHEMA,
        "tool": "benchmarks/calibrate_gpu.py",
        "environment": asdict(env),
        "model": {"name": "CodeLlama-34B shapes, random bf16 weights", **shape.describe()},
        "settings": {"plan": "dry-run" if args.dry_run else "quick" if args.quick else "full",
                     "seed": args.seed, "warmup": plan.warmup, "reps": plan.reps,
                     "prefill_attention": f"scaled_dot_product_attention, causal, {model.attention_mode} K/V",
                     "decode_kv_cache": "contiguous per sequence (reads the same bytes as vLLM's paged cache)",
                     "decode_timing": "CUDA graph replay (vLLM 0.9 captures decode); eager_seconds beside it",
                     "timing": "CUDA events, median of repetitions, a sync after each" if device.type == "cuda"
                     else "host clock (CPU dry run: exercises the code, the figures mean nothing)",
                     "swap_stream": "a dedicated CUDA stream (cudaMemcpyBatchAsync refuses the legacy default stream)"},
        "errors": {},
    }
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info()
        raw["memory"] = {"total_bytes": total, "free_after_weights_bytes": free,
                         "torch_reserved_bytes": torch.cuda.memory_reserved(),
                         "outside_torch_bytes": total - free - torch.cuda.memory_reserved()}

    def save():
        (out / "raw.json").write_text(json.dumps(raw, indent=1) + "\n")

    def family(name: str, fn: Callable[[], None]) -> None:
        # one family failing (say, out of memory) must not cost the others: the device time is scarce
        try:
            fn()
        except Exception as exc:
            raw["errors"][name] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: FAILED: {raw['errors'][name]}", flush=True)
        save()

    def run_ceilings():
        raw["ceilings"] = measure_ceilings(torch, device, clock, args.quick)

    def run_prefill():
        raw["prefill"] = measure_prefill(torch, model, clock, plan)

    def run_decode():
        raw["decode"], raw["decode_skipped"] = measure_decode(torch, model, clock, plan)

    family("ceilings", run_ceilings)
    family("prefill", run_prefill)
    family("decode", run_decode)
    model = None   # frees the weights before the swap pools take their memory
    if device.type == "cuda":
        torch.cuda.empty_cache()

    def run_swap():
        if copier_future is None:
            copier, errors = LoopCopier("CPU dry run"), []
        else:
            try:
                copier, errors = copier_future.result(timeout=300)
            except concurrent.futures.TimeoutError:
                copier, errors = LoopCopier("the C++ build took over 5 minutes"), ["build timed out"]
        raw["swap_build_errors"] = errors
        print(f"swap copies: {copier.description}", flush=True)
        raw["swap"] = measure_swap(torch, device, shape, clock, plan, copier, args.seed)

    family("swap", run_swap)
    pool.shutdown(wait=False)
    return raw
