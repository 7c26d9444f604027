"""All-reduce at tensor parallel 2: NCCL through torch.distributed, at the sizes a TP-2 engine sends.

Every decoder layer all-reduces its attention output and its MLP output: tokens x hidden x 2
bytes each, so a decode step of B sequences sends B x 16 KiB per call (CodeLlama-34B, bf16) and a
prefill of 8192 tokens 128 MiB. A forward pass issues its 96 calls in lock-step between the ranks,
so each sample times CALLS back-to-back `all_reduce`s on rank 0 with CUDA events (after a barrier
and warm-up) and divides: one call timed alone mostly measures how late the other process
launched its half. Each point is the median of the samples. The simulator's model of one call is
    latency + 2 (TP - 1) / TP x bytes / (gpu_link_bytes_per_s x efficiency),
fitted here by least squares of relative error. Needs PyTorch and two CUDA GPUs only.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass

import numpy as np

TOKEN_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
DECODE_TOKENS = 64  # a decode batch of up to 64 sequences: the reference burst's whole range
PREFILL_TOKENS = 1024  # one 1024-token prompt and up
CALLS = 20


@dataclass(frozen=True)
class AllReducePoint:
    tokens: int
    bytes: int
    median_s: float
    samples_s: list[float]


def _measure_rank(rank: int, world: int, port: int, hidden: int, reps: int, warmup: int, results) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", rank))
    points = []
    for tokens in TOKEN_COUNTS:
        x = torch.randn(tokens, hidden, dtype=torch.bfloat16, device="cuda")
        for _ in range(warmup):
            dist.all_reduce(x)
        samples = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            dist.barrier()
            torch.cuda.synchronize()
            start.record()
            for _ in range(CALLS):
                dist.all_reduce(x)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3 / CALLS)
        points.append(AllReducePoint(tokens, x.numel() * x.element_size(), statistics.median(samples), samples))
    if rank == 0:
        results.put([asdict(p) for p in points])
    dist.destroy_process_group()


def measure(hidden: int = 8192, reps: int = 50, warmup: int = 10, port: int = 29531) -> list[dict]:
    """All-reduce times between GPUs 0 and 1, one point per entry of TOKEN_COUNTS."""
    import torch
    import torch.multiprocessing as mp

    if torch.cuda.device_count() < 2:
        raise RuntimeError(f"the all-reduce needs 2 GPUs, this machine has {torch.cuda.device_count()}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_measure_rank, args=(r, 2, port, hidden, reps, warmup, results)) for r in range(2)]
    for p in procs:
        p.start()
    points = results.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
    return points


def fit(points: list[dict], link_bytes_per_s: float, tp: int = 2) -> dict:
    """allreduce_latency_s from the decode-sized calls (DECODE_TOKENS or fewer: the transfer is
    under 2% of them); allreduce_bandwidth_efficiency from the slope of time over bytes among the
    prefill-sized ones (PREFILL_TOKENS or more, a least-squares line), where the transfer dominates.
    NCCL changes protocol with the size (4-8 MiB calls measured faster than 16 KiB ones), so one
    latency-plus-bandwidth line cannot follow every size: it is right where the engine's time goes,
    decode steps (96 calls each) and large prefills, and over-estimates the sizes in between."""
    small = [p["median_s"] for p in points if p["tokens"] <= DECODE_TOKENS]
    large = [p for p in points if p["tokens"] >= PREFILL_TOKENS]
    if not small or len(large) < 2:
        raise ValueError(f"the fit needs points of <= {DECODE_TOKENS} and two or more of >= {PREFILL_TOKENS} tokens")
    ring = np.array([2 * (tp - 1) / tp * p["bytes"] for p in large], dtype=float)
    seconds = np.array([p["median_s"] for p in large])
    per_byte = np.polyfit(ring, seconds, 1)[0]
    return {"allreduce_latency_s": statistics.median(small),
            "allreduce_bandwidth_efficiency": float(1.0 / (per_byte * link_bytes_per_s))}


def predict(params: dict, link_bytes_per_s: float, size: int, tp: int = 2) -> float:
    return params["allreduce_latency_s"] + 2 * (tp - 1) / tp * size / (
        link_bytes_per_s * params["allreduce_bandwidth_efficiency"])


def environment() -> dict:
    """What ran the measurement: GPUs, torch, NCCL."""
    import torch

    return {"gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "nccl": ".".join(map(str, torch.cuda.nccl.version()))}
