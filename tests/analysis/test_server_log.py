"""The server-log parser, on a log that vLLM wrote on the simulated GPU, and on the odd lines of real logs."""

from __future__ import annotations

import datetime
import json
import math

import pytest

from vllm_cfs.analysis.kv_memory import GIB, kv_footprint
from vllm_cfs.analysis.server_log import MARKER, parse_server_log, read_server_log

SWAP_SPACE_GIB = 16  # ServerOptions' default, as in the assignment


def test_startup_lines_say_what_ran(served_log):
    log = read_server_log(served_log.path)

    assert log.simulated is not None
    assert (log.simulated.profile, log.simulated.tensor_parallel_size) == ("a100-40gb", 2)
    assert log.engine.vllm_version == "0.9.0"
    # Served by its hub id: vLLM's model redirect names the shipped folder in the config line.
    assert log.engine.model == str(served_log.model_dir)
    assert f"model redirect: [ codellama/CodeLlama-34b-hf ] -> [ {served_log.model_dir} ]" in served_log.path.read_text()
    assert log.engine.tensor_parallel_size == 2
    assert log.engine.dtype == "torch.bfloat16"
    assert "simulated a100-40gb" in log.blocks.device


def test_block_counts_agree_with_the_kv_size_of_the_model(served_log):
    log = read_server_log(served_log.path)
    config = json.loads((served_log.model_dir / "config.json").read_text())
    footprint = kv_footprint(config, log.engine.tensor_parallel_size, log.engine.dtype)

    # vLLM sizes the swap space in blocks of exactly this many bytes.
    assert log.blocks.cpu_blocks == SWAP_SPACE_GIB * GIB // footprint.block_bytes
    # The GPU blocks held what the running prompts needed: each running request of the first
    # burst holds at least its prompt's blocks, and usage is reported to 0.1 % of the pool.
    prompt_blocks = min(math.ceil(r.prompt_tokens / footprint.block_size) for r in served_log.bursts[0].records)
    first = log.for_run(1)
    for sample in first.stats:
        used = sample.gpu_kv_pct / 100 * log.blocks.gpu_blocks
        assert used >= sample.running * prompt_blocks - 0.001 * log.blocks.gpu_blocks - 1, sample


def test_stats_lines_follow_the_bursts(served_log):
    log = read_server_log(served_log.path)
    burst_sizes = [len(b.records) for b in served_log.bursts]

    assert log.runs == [1, 2]
    first, second = log.for_run(1).stats, log.for_run(2).stats
    assert len(first) >= 2 and second
    assert len(first) + len(second) <= len(log.stats)
    times = [s.time for s in log.stats]
    assert times == sorted(times)
    # Timestamps are the server's local clock, to the second.
    assert all(s.time >= served_log.marked_at[0] - datetime.timedelta(seconds=1) for s in first)
    assert all(s.time >= served_log.marked_at[1] - datetime.timedelta(seconds=1) for s in second)
    assert all(s.time <= served_log.finished_at + datetime.timedelta(seconds=1) for s in log.stats)
    for samples, size in ((first, burst_sizes[0]), (second, burst_sizes[1])):
        assert all(s.running + s.swapped + s.pending <= size for s in samples)
        assert all(0 <= s.gpu_kv_pct <= 100 and 0 <= s.cpu_kv_pct <= 100 for s in samples)
    # Each line is a 5-second sample, so which queue it catches a request in is timing; what every
    # line must show is one consistent moment: KV in CPU memory exactly while requests sit swapped.
    assert all((s.cpu_kv_pct > 0) == (s.swapped > 0) for s in log.stats)
    # Only the step that ends a burst can log an empty system, so a burst of two lines logs a busy one.
    assert any(s.running + s.swapped + s.pending > 0 for s in first)
    assert sum(s.generation_throughput for s in first) > 0


def test_cfs_counters_are_read_from_the_log(served_log):
    log = read_server_log(served_log.path)

    # The first burst needs more KV than the GPU has: at the first CFS step new arrivals are waiting,
    # so CFS swaps running requests out (the counters, unlike the stats lines, miss nothing).
    counters = log.for_run(1).cfs
    assert counters
    last = counters[-1]
    assert last.get("cfs_steps") > 0 and last.get("preempted_by_swap") > 0
    assert last.get("blocks_swapped_out") >= last.get("blocks_swapped_in") > 0
    for before, after in zip(log.cfs, log.cfs[1:]):
        assert all(after.get(k) >= v for k, v in before.counters.items())


STATS = ("INFO 11-29 05:01:03 [metrics.py:486] Avg prompt throughput: 226.5 tokens/s, Avg generation throughput: "
         "166.8 tokens/s, Running: 11 reqs, Swapped: 2 reqs, Pending: 3 reqs, GPU KV cache usage: 98.0%, "
         "CPU KV cache usage: 1.5%.")


def _stats_at(stamp: str, running: int = 11) -> str:
    return STATS.replace("11-29 05:01:03", stamp).replace("Running: 11", f"Running: {running}")


def test_unrelated_and_broken_lines_are_skipped():
    lines = [
        "garbage \x00\xff line",
        "INFO:     127.0.0.1:51234 - \"GET /health HTTP/1.1\" 200 OK",
        STATS[:80],  # cut off mid-line
        "Avg prompt throughput: 1.0 tokens/s, no timestamp before it",
        STATS,
        "(VllmWorkerProcess pid=7) INFO 11-29 05:01:09 [scheduler.py:334] CFS stats: cfs_steps=4, "
        "preempted_by_swap=2, preempted_by_recompute=0, swap_space_full_fallbacks=0, blocks_swapped_out=188, "
        "blocks_swapped_in=94",
    ]
    log = parse_server_log(lines, year=2026)

    assert len(log.stats) == 1
    sample = log.stats[0]
    assert sample.time == datetime.datetime(2026, 11, 29, 5, 1, 3)
    assert (sample.running, sample.swapped, sample.pending) == (11, 2, 3)
    assert (sample.prompt_throughput, sample.generation_throughput) == (226.5, 166.8)
    assert (sample.gpu_kv_pct, sample.cpu_kv_pct) == (98.0, 1.5)
    assert log.cfs[0].counters == {"cfs_steps": 4, "preempted_by_swap": 2, "preempted_by_recompute": 0,
                                   "swap_space_full_fallbacks": 0, "blocks_swapped_out": 188, "blocks_swapped_in": 94}
    assert log.blocks is None and log.simulated is None and log.runs == []
    assert log.for_run(1) is log  # no markers: the whole log is the run


def test_times_run_on_across_new_year():
    log = parse_server_log([_stats_at("12-31 23:59:58"), _stats_at("01-01 00:00:03")], year=2026)

    assert [s.time for s in log.stats] == [datetime.datetime(2026, 12, 31, 23, 59, 58),
                                           datetime.datetime(2027, 1, 1, 0, 0, 3)]


def test_runs_are_cut_at_markers_and_the_latest_run_wins():
    lines = [
        _stats_at("11-29 05:00:00", running=1),
        f"{MARKER} run 1 of 2, CFS_INTERVAL=10",
        _stats_at("11-29 05:00:05", running=2),
        f"{MARKER} run 2 of 2, CFS_INTERVAL=10",
        _stats_at("11-29 05:00:10", running=0).replace("Swapped: 2", "Swapped: 0").replace("Pending: 3", "Pending: 0"),
        _stats_at("11-29 05:00:15", running=3),
        f"{MARKER} run 1 of 1, CFS_INTERVAL=10",  # a later sweep appended to the same log
        _stats_at("11-29 06:00:00", running=4),
    ]
    log = parse_server_log(lines, year=2026)

    assert log.runs == [1, 2, 1]
    assert [s.running for s in log.for_run(1).stats] == [4]
    # The idle line that closes the previous burst does not start run 2.
    assert [s.running for s in log.for_run(2).stats] == [3]
    with pytest.raises(KeyError):
        log.for_run(3)


ENGINE = "INFO 11-29 05:00:00 [llm_engine.py:230] Initializing a V0 LLM engine (v0.9.0) with config: model='m'"


def test_the_staged_swap_workers_buffer_is_read_in_both_wordings_per_server_start():
    simulated = ("INFO 11-29 05:00:01 [worker.py:78] Simulated staged swap (vllm_cfs.swap.StagedSwapWorker): "
                 "a 32-block staging buffer")
    real = ("(VllmWorkerProcess pid=7) INFO 11-29 05:00:01 [worker.py:96] staged swap: 48-block staging buffer, "
            "block-major pinned host cache")
    assert parse_server_log([ENGINE, simulated], year=2026).staging_blocks == 32
    assert parse_server_log([ENGINE, real], year=2026).staging_blocks == 48
    assert parse_server_log([ENGINE], year=2026).staging_blocks is None
    # A log appended to by a later start of vLLM's own worker describes that start: no buffer.
    assert parse_server_log([ENGINE, simulated, ENGINE], year=2026).staging_blocks is None
