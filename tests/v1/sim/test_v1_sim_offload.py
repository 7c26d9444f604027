"""The simulated GPU's half of vLLM's KV offloading connector: when transfers start, end and are reported.

Real vLLM metadata objects in, the KVConnectorOutput vLLM's scheduler reads out.
"""

import pytest
from vllm.distributed.kv_transfer.kv_connector.v1.offloading.common import (
    OffloadingConnectorMetadata,
    OffloadingWorkerMetadata,
    TransferJob,
)
from vllm.v1.kv_offload.base import GPULoadStoreSpec
from vllm.v1.kv_offload.cpu.common import CPULoadStoreSpec

from vllm_cfs.sim.cost_model import CostModel
from vllm_cfs.sim.model_dir import CODELLAMA_34B_CONFIG
from vllm_cfs.sim.model_spec import ModelSpec
from vllm_cfs.sim.profile import load_profile
from vllm_cfs.sim.v1.offload import SimulatedOffload


def gpu(*blocks):
    return GPULoadStoreSpec(list(blocks), group_sizes=[len(blocks)], block_indices=[0])


def cpu(*blocks):
    return CPULoadStoreSpec(list(blocks))


def meta(stores=(), loads=(), flush=()):
    return OffloadingConnectorMetadata(
        load_jobs={job: TransferJob(req, (cpu(*range(n)), gpu(*range(n)))) for job, req, n in loads},
        store_jobs={job: TransferJob(req, (gpu(*range(n)), cpu(*range(n)))) for job, req, n in stores},
        jobs_to_flush=set(flush),
    )


@pytest.fixture
def cost():
    return CostModel(load_profile("a100-40gb"), ModelSpec.from_config(CODELLAMA_34B_CONFIG), tensor_parallel_size=2)


def test_one_copy_per_block_over_the_host_link(cost):
    block = 1.5 * 1024**2  # CodeLlama-34B at TP 2, per GPU
    assert cost.kv_offload_time(10) == pytest.approx(10 * (2.48e-6 + block / (25e9 * 0.785)))


def test_stores_start_a_step_later_and_are_reported_once_done(cost):
    offload = SimulatedOffload(cost, world_size=2)
    assert offload.begin_step(meta(), 0.0) == 0.0
    report = offload.end_step(meta(stores=[(1, "a", 10)]), 0.05)
    assert report.kv_connector_worker_meta is None  # deferred: nothing in flight yet
    assert offload.begin_step(meta(), 0.05) == 0.0  # the store starts now, beside the forward pass
    store_end = 0.05 + cost.kv_offload_time(10)
    assert offload.next_completion_s() == pytest.approx(store_end)
    assert offload.end_step(meta(), store_end - 1e-9).kv_connector_worker_meta is None
    report = offload.end_step(meta(), store_end)
    assert isinstance(report.kv_connector_worker_meta, OffloadingWorkerMetadata)
    assert report.kv_connector_worker_meta.completed_jobs == {1: 2}  # once per GPU of the TP group
    assert report.finished_recving == set()
    assert report.kv_connector_worker_meta.transfer_stats.store.bytes == 2 * 10 * cost.block_bytes
    assert offload.blocks_stored == 10 and not offload.busy()


def test_a_direction_runs_its_transfers_one_after_another(cost):
    offload = SimulatedOffload(cost, world_size=2)
    offload.begin_step(meta(loads=[(1, "a", 4), (2, "b", 6)]), 1.0)
    first, second = offload.in_flight[1], offload.in_flight[2]
    assert (first.start_s, first.end_s) == (1.0, pytest.approx(1.0 + cost.kv_offload_time(4)))
    assert second.start_s == first.end_s
    report = offload.end_step(meta(), first.end_s)
    assert report.finished_recving == {"a"}  # request a may run; b still loads
    assert offload.end_step(meta(), second.end_s).finished_recving == {"b"}


def test_a_flush_makes_the_step_wait(cost):
    offload = SimulatedOffload(cost, world_size=1)
    offload.end_step(meta(stores=[(7, "a", 20)]), 0.0)
    offload.begin_step(meta(), 0.0)
    store_end = offload.in_flight[7].end_s
    # The next step reuses blocks that store still reads: it waits, and only then starts its loads.
    assert offload.begin_step(meta(loads=[(8, "b", 1)], flush=[7]), 0.0005) == pytest.approx(store_end - 0.0005)
    assert offload.in_flight[8].start_s == pytest.approx(store_end)
    assert offload.flush_wait_s == pytest.approx(store_end - 0.0005)
