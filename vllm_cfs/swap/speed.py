"""Swap speed on a real GPU: vLLM 0.9's per-block copies against the staged copier, side by side.

Both paths move the same blocks between the same kind of memory: GPU layers in FlashAttention's
layout and pinned host memory; vLLM's path with its per-layer host tensors and
one cudaMemcpyAsync per block, layer and K/V (issued from C++, as vLLM does), ours with the
block-major host cache. Block ids are drawn at random on both sides, as in a pool that has been
running a while (the staged path's worst case: no two host blocks are neighbours). Every path is
checked byte for byte before it is timed. Needs PyTorch and one CUDA GPU only.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import torch

from vllm_cfs.settings import DEFAULT_STAGING_BLOCKS
from vllm_cfs.swap.copy_engine import KVLayout, StagedCopier, device_cache, host_cache

BLOCK_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class Shape:
    """One GPU's share of the KV cache: CodeLlama-34B at TP 2 by default (4 KV heads of 128, 16-token blocks)."""

    layers: int = 48
    block_tokens: int = 16
    kv_heads: int = 4
    head_size: int = 128

    @property
    def block_elems(self) -> int:
        return self.block_tokens * self.kv_heads * self.head_size

    @property
    def block_bytes(self) -> int:
        """A whole block: every layer, K and V, bf16."""
        return self.layers * 2 * self.block_elems * 2


@dataclass(frozen=True)
class SpeedPoint:
    path: str
    direction: str
    blocks: int
    median_s: float
    samples_s: list[float]
    gb_per_s: float


def time_cuda(fn, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
    return samples


def pinned_link_bandwidth(nbytes: int = 512 * 2**20, reps: int = 10) -> dict:
    """Bytes/s of one large pinned copy each way: the ceiling any swap path can reach."""
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    out = statistics.median(time_cuda(lambda: host.copy_(dev, non_blocking=True), 2, reps))
    into = statistics.median(time_cuda(lambda: dev.copy_(host, non_blocking=True), 2, reps))
    return {"bytes": nbytes, "device_to_host_bytes_per_s": nbytes / out, "host_to_device_bytes_per_s": nbytes / into}


class SwapBench:
    """GPU and host pools for both paths, and one swap of n random blocks along each."""

    def __init__(self, shape: Shape, gpu_blocks: int, cpu_blocks: int, staging_blocks: int, per_block_copier, seed: int):
        self.shape, self.copier = shape, per_block_copier
        block = (shape.block_tokens, shape.kv_heads, shape.head_size)
        # one allocation, as StagedCacheEngine makes it; vLLM's path sees the same per-layer tensors
        self.gpu = device_cache(shape.layers, (2, gpu_blocks) + block, torch.bfloat16, "cuda").normal_()
        self.vllm_host = [torch.zeros((2, cpu_blocks) + block, dtype=torch.bfloat16, pin_memory=True)
                          for _ in range(shape.layers)]
        self.host = host_cache(cpu_blocks, shape.layers, shape.block_elems, torch.bfloat16, pin_memory=True)
        self.staged = StagedCopier(self.gpu, self.host, KVLayout(block_dim=1), staging_blocks)
        # the worker's configuration: swap-out transfers on a side stream (checked, not timed)
        self.side = StagedCopier(self.gpu, self.host, KVLayout(block_dim=1), staging_blocks, stream=torch.cuda.Stream())
        self.generator = torch.Generator().manual_seed(seed)
        self.gpu_blocks, self.cpu_blocks = gpu_blocks, cpu_blocks

    def pick(self, n: int) -> tuple[list[int], list[int]]:
        gpu = torch.randperm(self.gpu_blocks, generator=self.generator)[:n].tolist()
        cpu = torch.randperm(self.cpu_blocks, generator=self.generator)[:n].tolist()
        return gpu, cpu

    def per_block(self, gpu: list[int], cpu: list[int], to_host: bool) -> None:
        """vLLM 0.9's pattern: every layer, K then V, one copy per block."""
        pairs = list(zip(gpu, cpu)) if to_host else list(zip(cpu, gpu))
        mapping = torch.tensor(pairs, dtype=torch.int64)
        stream = torch.cuda.current_stream().cuda_stream
        for layer in range(self.shape.layers):
            src, dst = (self.gpu[layer], self.vllm_host[layer]) if to_host else (self.vllm_host[layer], self.gpu[layer])
            for kv in (0, 1):
                self.copier.copy_blocks(src[kv], dst[kv], mapping, to_host, stream)

    def staged_swap(self, gpu: list[int], cpu: list[int], to_host: bool) -> None:
        if to_host:
            self.staged.swap_out(gpu, cpu)
        else:
            self.staged.swap_in(cpu, gpu)

    def verify(self, n: int) -> None:
        """Swap n blocks out and back along both paths; raise if any byte differs."""
        gpu, cpu = self.pick(n)
        want = [self.gpu[:, :, g].cpu() for g in gpu]
        self.per_block(gpu, cpu, True)
        self.staged_swap(gpu, cpu, True)
        torch.cuda.synchronize()
        for w, c in zip(want, cpu):
            if not torch.equal(torch.stack([self.vllm_host[l][:, c] for l in range(self.shape.layers)]), w):
                raise RuntimeError("per_block: swap-out copied the wrong bytes")
            if not torch.equal(self.host[c].view(w.shape), w):
                raise RuntimeError("staged: swap-out copied the wrong bytes")
        self.host[cpu] = 0
        self.side.swap_out(gpu, cpu)
        self.side.synchronize()
        for w, c in zip(want, cpu):
            if not torch.equal(self.host[c].view(w.shape), w):
                raise RuntimeError("staged on a side stream: swap-out copied the wrong bytes")
        swap_in = {"per_block": lambda: self.per_block(gpu, cpu, False), "staged": lambda: self.staged.swap_in(cpu, gpu),
                   "side_stream": lambda: self.side.swap_in(cpu, gpu)}
        for path, run in swap_in.items():
            self.gpu[:, :, gpu] = 0
            run()
            torch.cuda.synchronize()
            for w, g in zip(want, gpu):
                if not torch.equal(self.gpu[:, :, g].cpu(), w):
                    raise RuntimeError(f"{path}: swap-in copied the wrong bytes")


def measure(per_block_copier, shape: Shape = Shape(), counts=BLOCK_COUNTS, staging_blocks: int = DEFAULT_STAGING_BLOCKS,
            reps: int = 20, warmup: int = 3, seed: int = 0, progress=print) -> dict:
    """Every path, direction and block count; plus the pinned link bandwidth for scale."""
    top = max(counts)
    bench = SwapBench(shape, gpu_blocks=4 * top, cpu_blocks=2 * top, staging_blocks=staging_blocks,
                      per_block_copier=per_block_copier, seed=seed)
    for n in (1, 7, top):
        bench.verify(n)
    points = []
    for n in counts:
        gpu, cpu = bench.pick(n)
        for path, fn in (("per_block", bench.per_block), ("staged", bench.staged_swap)):
            for direction, to_host in (("out", True), ("in", False)):
                samples = time_cuda(lambda: fn(gpu, cpu, to_host), warmup, reps)
                median = statistics.median(samples)
                points.append(SpeedPoint(path, direction, n, median, samples, n * shape.block_bytes / median / 1e9))
        progress(f"swap speed: {n} blocks done")
    return {"shape": asdict(shape) | {"block_bytes": shape.block_bytes}, "staging_blocks": staging_blocks,
            "verified_block_counts": [1, 7, top], "link": pinned_link_bandwidth(),
            "points": [asdict(p) for p in points]}


def speedups(run: dict) -> list[dict]:
    """One row per (blocks, direction): both paths' medians, the speed-up and the staged path's share of the link."""
    link = run["link"]
    by_key = {(p["path"], p["direction"], p["blocks"]): p for p in run["points"]}
    rows = []
    for (path, direction, blocks), staged in sorted(by_key.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if path != "staged":
            continue
        per_block = by_key[("per_block", direction, blocks)]
        ceiling = link["device_to_host_bytes_per_s" if direction == "out" else "host_to_device_bytes_per_s"]
        rows.append({"blocks": blocks, "direction": direction, "per_block_ms": per_block["median_s"] * 1e3,
                     "staged_ms": staged["median_s"] * 1e3, "speedup": per_block["median_s"] / staged["median_s"],
                     "per_block_gb_s": per_block["gb_per_s"], "staged_gb_s": staged["gb_per_s"],
                     "staged_link_share": staged["gb_per_s"] * 1e9 / ceiling})
    return rows


def render(result: dict) -> str:
    """Markdown tables, one per staging size, and the two goal figures of each."""
    lines = [f"per-block copier: {result['per_block_copier']}"]
    for staging, run in result["runs"].items():
        link = run["link"]
        lines += ["", f"staging buffer {staging} blocks; block {run['shape']['block_bytes'] / 2**20:.2f} MiB; "
                  f"pinned link {link['device_to_host_bytes_per_s'] / 1e9:.1f} GB/s out, "
                  f"{link['host_to_device_bytes_per_s'] / 1e9:.1f} GB/s in", "",
                  "| blocks | dir | per-block ms | staged ms | speed-up | per-block GB/s | staged GB/s | staged / link |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        rows = speedups(run)
        for r in rows:
            lines.append(f"| {r['blocks']} | {r['direction']} | {r['per_block_ms']:.3f} | {r['staged_ms']:.3f} | "
                         f"{r['speedup']:.2f}x | {r['per_block_gb_s']:.2f} | {r['staged_gb_s']:.2f} | "
                         f"{r['staged_link_share']:.0%} |")
        big = [r for r in rows if r["blocks"] >= 64]
        top = [r for r in rows if r["blocks"] == max(x["blocks"] for x in rows)]
        lines += ["", f"staging {staging}: smallest speed-up at >= 64 blocks {min(r['speedup'] for r in big):.2f}x; "
                  f"at {top[0]['blocks']} blocks the staged path reaches "
                  + ", ".join(f"{r['staged_link_share']:.0%} of the link {r['direction']}" for r in top)]
    return "\n".join(lines)
