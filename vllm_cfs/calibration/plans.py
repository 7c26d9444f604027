"""The sweeps: which prefill batches, decode (batch, context) points and swap sizes a run measures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SweepPlan:
    prefill: tuple[tuple[int, ...], ...]           # each entry: the sequence lengths of one batch
    decode_batches: tuple[int, ...]
    decode_contexts: tuple[int, ...]
    swap_blocks: tuple[int, ...]                   # block counts, at the model's own copy size
    swap_copy_sizes: tuple[int, ...]               # other bytes-per-copy, to separate the overhead
    swap_copy_size_blocks: int                     # block count used for those
    reps: int = 7
    warmup: int = 2


def _batches(n: int, t: int) -> tuple[int, ...]:
    return (t,) * n


FULL_PLAN = SweepPlan(
    prefill=tuple((t,) for t in (128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192))
    + tuple(_batches(n, t) for n, t in (
        (2, 128), (4, 128), (8, 128), (16, 128), (32, 128), (4, 256), (16, 256), (2, 512),
        (4, 512), (8, 512), (16, 512), (2, 1024), (4, 1024), (8, 1024), (2, 2048), (4, 2048),
        (2, 4096))),
    decode_batches=(1, 2, 4, 8, 16, 32, 64, 128),
    decode_contexts=(256, 512, 1024, 2048, 4096),
    swap_blocks=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    # 4, 8 and 16 KiB are the per-layer blocks at TP 8, 4 and 2; 64 and 128 KiB are 32- and
    # 64-token blocks at TP 1
    swap_copy_sizes=(4096, 8192, 16384, 65536, 131072),
    swap_copy_size_blocks=64,
)
QUICK_PLAN = SweepPlan(
    prefill=((128,), (1024,), (4096,), _batches(4, 512), _batches(2, 2048)),
    decode_batches=(1, 16, 128),
    decode_contexts=(256, 2048),
    swap_blocks=(1, 16, 256),
    swap_copy_sizes=(16384, 65536),
    swap_copy_size_blocks=64,
    reps=5,
)
DRY_PLAN = SweepPlan(
    prefill=((16,), (64,), _batches(2, 32)),
    decode_batches=(1, 2),
    decode_contexts=(16, 32),
    swap_blocks=(1, 4),
    swap_copy_sizes=(2048, 8192),
    swap_copy_size_blocks=4,
    reps=2,
    warmup=1,
)
