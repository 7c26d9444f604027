"""The simulated GPU's side of vLLM V1's KV offloading to CPU memory (--kv-offloading-backend native).

vLLM's OffloadingConnector has two halves. The scheduler's half (vLLM's own, unchanged) decides
which blocks to store to host memory and which to load back, and sends them as transfer jobs in
each step's ``kv_connector_metadata``. The worker's half copies real KV tensors with CUDA
streams; there are none here, so this module stands in for it. It answers in the worker
protocol the scheduler's half reads (``KVConnectorOutput``: completed job ids in an
``OffloadingWorkerMetadata``, loaded requests in ``finished_recving``) and only models time:

- each direction of the host link (GPU to host, host to GPU) runs its transfers one after
  another, as vLLM's per-direction handler chains its streams, each lasting
  ``CostModel.kv_offload_time(blocks)``; the two directions and the forward passes overlap;
- stores a step schedules start at the next step's start (vLLM defers them there, after the
  step's sampling); loads start at their step's start;
- a job is reported complete at the end of the first step that ends after it does, and the
  request a load was for runs once that is reported, as vLLM's scheduler does;
- ``jobs_to_flush`` (blocks about to be reused, requests preempted) makes the step wait for
  those jobs: that wait is the only offloading time a step pays.

One report stands for every GPU of the tensor-parallel group (each copies its own shard at the
same time), so a completed job counts once per GPU, as the scheduler expects.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from vllm.distributed.kv_transfer.kv_connector.v1.offloading.common import (
    OffloadingConnectorMetadata,
    OffloadingWorkerMetadata,
)
from vllm.v1.kv_offload.base import GPULoadStoreSpec
from vllm.v1.outputs import KVConnectorOutput

from vllm_cfs.sim.cost_model import CostModel

CONNECTOR = "OffloadingConnector"  # what vLLM configures for --kv-offloading-backend native


@dataclasses.dataclass(frozen=True)
class Transfer:
    job_id: int
    request_id: str
    is_load: bool
    blocks: int
    start_s: float
    end_s: float


class HostLinkDirection:
    """One direction of the host link: a transfer starts when both it and the link are ready."""

    def __init__(self) -> None:
        self.free_at_s = 0.0

    def schedule(self, ready_s: float, duration_s: float) -> tuple[float, float]:
        start = max(ready_s, self.free_at_s)
        self.free_at_s = start + duration_s
        return start, self.free_at_s


class SimulatedOffload:
    def __init__(self, cost_model: CostModel, world_size: int):
        self.cost_model = cost_model
        self.world_size = world_size
        self.to_host = HostLinkDirection()
        self.to_gpu = HostLinkDirection()
        self.in_flight: dict[int, Transfer] = {}
        self._deferred_stores: list[tuple[int, str, int]] = []  # (job id, request id, blocks)
        # Over the worker's life, in GPU blocks (per GPU).
        self.blocks_stored = 0
        self.blocks_loaded = 0
        self.flush_wait_s = 0.0
        # In the last step, for the replay's samples.
        self.step_blocks_stored = 0
        self.step_blocks_loaded = 0

    def begin_step(self, metadata: Optional[OffloadingConnectorMetadata], now_s: float) -> float:
        """Start the step's transfers; the seconds the step waits for flushed jobs before it can run."""
        self.step_blocks_stored = self.step_blocks_loaded = 0
        for job_id, request_id, blocks in self._deferred_stores:
            self._start(job_id, request_id, False, blocks, now_s)
        self._deferred_stores.clear()
        if metadata is None:
            return 0.0
        flushed = [self.in_flight[j].end_s for j in metadata.jobs_to_flush or () if j in self.in_flight]
        ready = max([now_s, *flushed])
        for job_id, job in metadata.load_jobs.items():
            _, gpu = job.transfer_spec
            self._start(job_id, job.req_id, True, _gpu_blocks(gpu), ready)
        self.flush_wait_s += ready - now_s
        return ready - now_s

    def end_step(self, metadata: Optional[OffloadingConnectorMetadata], now_s: float) -> Optional[KVConnectorOutput]:
        """Defer the step's stores to the next step; report the transfers done by now."""
        if metadata is not None:
            for job_id, job in metadata.store_jobs.items():
                gpu, _ = job.transfer_spec
                self._deferred_stores.append((job_id, job.req_id, _gpu_blocks(gpu)))
        done = sorted((t for t in self.in_flight.values() if t.end_s <= now_s), key=lambda t: t.job_id)
        if metadata is None and not done:
            return None
        report = OffloadingWorkerMetadata()
        loaded: set[str] = set()
        for transfer in done:
            del self.in_flight[transfer.job_id]
            report.completed_jobs[transfer.job_id] = self.world_size
            stats = report.transfer_stats.load if transfer.is_load else report.transfer_stats.store
            for _ in range(self.world_size):
                stats.record(transfer.blocks * self.cost_model.block_bytes, transfer.end_s - transfer.start_s)
            if transfer.is_load:
                loaded.add(transfer.request_id)
        return KVConnectorOutput(finished_sending=set(), finished_recving=loaded,
                                 kv_connector_worker_meta=report if done else None)

    def next_completion_s(self) -> Optional[float]:
        """When the next transfer in flight ends (a waiting engine has nothing else to wait for)."""
        return min((t.end_s for t in self.in_flight.values()), default=None)

    def busy(self) -> bool:
        return bool(self.in_flight or self._deferred_stores)

    def _start(self, job_id: int, request_id: str, is_load: bool, blocks: int, ready_s: float) -> None:
        link = self.to_gpu if is_load else self.to_host
        start, end = link.schedule(ready_s, self.cost_model.kv_offload_time(blocks))
        self.in_flight[job_id] = Transfer(job_id, request_id, is_load, blocks, start, end)
        if is_load:
            self.blocks_loaded += blocks
            self.step_blocks_loaded += blocks
        else:
            self.blocks_stored += blocks
            self.step_blocks_stored += blocks


def _gpu_blocks(spec) -> int:
    if not isinstance(spec, GPULoadStoreSpec):
        raise TypeError(f"the simulated GPU expected a GPU side in an offloading transfer, got {type(spec).__name__}")
    return len(spec.block_ids)
