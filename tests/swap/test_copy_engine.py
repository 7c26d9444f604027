"""The staged copier moves exactly the right bytes, on CPU tensors, in both vLLM KV layouts."""

import pytest
import torch

from vllm_cfs.swap.copy_engine import KVLayout, StagedCopier, consecutive_runs, device_cache, host_cache

LAYERS, GPU_BLOCKS, CPU_BLOCKS = 3, 40, 30
BLOCK_SHAPE = (4, 2, 8)  # tokens, kv heads, head size: small, but every axis distinct


def device_layers(layout: KVLayout, generator) -> torch.Tensor:
    shape = ((2, GPU_BLOCKS) if layout.block_dim == 1 else (GPU_BLOCKS, 2)) + BLOCK_SHAPE
    cache = device_cache(LAYERS, shape, torch.bfloat16, "cpu")
    cache.copy_(torch.randn(cache.shape, generator=generator).to(torch.bfloat16))
    return cache


def block(layers, layout: KVLayout, layer: int, kv: int, block_id: int) -> torch.Tensor:
    t = layers[layer]
    return t[kv, block_id] if layout.block_dim == 1 else t[block_id, kv]


def rig(layout, staging_blocks, seed):
    generator = torch.Generator().manual_seed(seed)
    layers = device_layers(layout, generator)
    elems = torch.Size(BLOCK_SHAPE).numel()
    host = host_cache(CPU_BLOCKS, LAYERS, elems, torch.bfloat16, pin_memory=False)
    host.copy_(torch.randn(host.shape, generator=generator).to(torch.bfloat16))
    return layers, host, StagedCopier(layers, host, layout, staging_blocks), generator


def pick(generator, n):
    gpu = torch.randperm(GPU_BLOCKS, generator=generator)[:n].tolist()
    cpu = torch.randperm(CPU_BLOCKS, generator=generator)[:n].tolist()
    return gpu, cpu


@pytest.mark.parametrize("block_dim", [0, 1])
@pytest.mark.parametrize("staging_blocks", [1, 4, 64])
@pytest.mark.parametrize("seed", range(4))
def test_swap_out_then_in_moves_exact_bytes(block_dim, staging_blocks, seed):
    layout = KVLayout(block_dim)
    layers, host, copier, generator = rig(layout, staging_blocks, seed)
    n = 1 + seed * 7
    gpu, cpu = pick(generator, n)
    before_layers = layers.clone()
    untouched = [h for h in range(CPU_BLOCKS) if h not in cpu]
    host_before = host.clone()

    copier.swap_out(gpu, cpu)
    for g, c in zip(gpu, cpu):
        for layer in range(LAYERS):
            for kv in (0, 1):
                assert torch.equal(host[c, layer, kv], block(layers, layout, layer, kv, g).reshape(-1))
    assert torch.equal(host[untouched], host_before[untouched])
    assert torch.equal(layers, before_layers), "swap-out wrote to the device"

    # fresh host contents come back into other device blocks; nothing else on the device moves
    host[cpu] = torch.randn((n,) + tuple(host.shape[1:]), generator=generator).to(torch.bfloat16)
    targets = torch.randperm(GPU_BLOCKS, generator=generator)[:n].tolist()
    copier.swap_in(cpu, targets)
    for g, c in zip(targets, cpu):
        for layer in range(LAYERS):
            for kv in (0, 1):
                assert torch.equal(block(layers, layout, layer, kv, g).reshape(-1), host[c, layer, kv])
    others = [g for g in range(GPU_BLOCKS) if g not in targets]
    for layer in range(LAYERS):
        for kv in (0, 1):
            for g in others:
                assert torch.equal(block(layers, layout, layer, kv, g), block(before_layers, layout, layer, kv, g))


def test_an_empty_swap_is_a_no_op():
    layers, host, copier, _ = rig(KVLayout(1), 4, 0)
    snapshot = host.clone()
    copier.swap_out([], [])
    copier.swap_in([], [])
    assert torch.equal(host, snapshot)


def test_consecutive_runs_merge_neighbours_only():
    assert consecutive_runs([3, 4, 5, 9, 10, 2]) == [(0, 3, 3), (3, 9, 2), (5, 2, 1)]
    assert consecutive_runs([]) == []


@pytest.mark.parametrize("bad", [
    dict(host_shape=(CPU_BLOCKS, LAYERS + 1, 2, 64)),
    dict(host_shape=(CPU_BLOCKS, LAYERS, 2, 63)),
])
def test_a_host_cache_of_another_shape_is_refused(bad):
    layers = device_layers(KVLayout(1), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="does not match"):
        StagedCopier(layers, torch.zeros(bad["host_shape"], dtype=torch.bfloat16), KVLayout(1), 4)


def test_mismatched_block_lists_are_refused():
    _, _, copier, _ = rig(KVLayout(1), 4, 0)
    with pytest.raises(ValueError, match="2 device blocks but 1 host blocks"):
        copier.swap_out([0, 1], [0])
