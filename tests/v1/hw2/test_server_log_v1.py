"""The V1 server-log parser on real V1 lines: excerpts of two logs that hw2/sweep.sh --engine v1
wrote on the simulated GPU (data/*.log; their first lines say how they were made)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from vllm_cfs.analysis.server_log import StatsSample, read_server_log
from vllm_cfs.analysis.server_log_v1 import V1Stats, read_v1_line

DATA = Path(__file__).parent / "data"
CFS_LOG = DATA / "server_p10_v1.log"  # CFS_INTERVAL=10, two runs
FAIR_LOG = DATA / "server_fair_v1.log"  # FairScheduler, one run


def _at(hh_mm_ss: str) -> datetime.datetime:
    return datetime.datetime.strptime(f"2026-12-03 {hh_mm_ss}", "%Y-%m-%d %H:%M:%S")


def test_start_up_lines_give_the_engine_the_gpu_and_the_kv_cache():
    log = read_server_log(CFS_LOG, year=2026)
    assert log.engine_name == "V1"
    assert (log.engine.engine, log.engine.vllm_version) == ("V1", "0.24.0")
    assert (log.engine.tensor_parallel_size, log.engine.dtype) == (2, "torch.bfloat16")
    assert log.engine.model == "/root/.cache/vllm-cfs/codellama-34b-26e459fc5c0a"
    assert (log.simulated.profile, log.simulated.tensor_parallel_size) == ("a100-40gb", 2)
    # vLLM's own size line and the simulated GPU's block line say the same: 2562 x 16 = 40,992.
    assert log.kv_cache_tokens == 40_992
    assert (log.blocks.gpu_blocks, log.blocks.block_size, log.blocks.cpu_blocks) == (2562, 16, None)
    assert log.blocks.device == "cuda (simulated a100-40gb)"
    assert log.kv_cache_tokens == log.blocks.gpu_blocks * log.blocks.block_size
    assert (log.max_model_len, log.max_concurrency) == (16_384, 2.5)
    assert log.staging_blocks is None  # V1 has no swap, so no staging buffer


def test_stats_lines_read_into_the_records_v0_lines_fill():
    log = read_server_log(CFS_LOG, year=2026)
    assert log.runs == [1, 2]
    run1 = log.for_run(1).stats
    # Running, Waiting (as pending) and GPU KV as V0's records hold them; V0's Swapped and CPU KV
    # do not exist on V1.
    assert [(s.time, s.prompt_throughput, s.generation_throughput, s.running, s.pending, s.gpu_kv_pct)
            for s in run1] == [
        (_at("10:21:58"), 4799.6, 8.4, 7, 5, 65.1),
        (_at("10:22:03"), 4795.4, 50.8, 10, 2, 93.5),
        (_at("10:22:08"), 0.0, 77.2, 9, 1, 89.2),
    ]
    assert all(s.swapped is None and s.cpu_kv_pct is None for s in run1)
    # vLLM 0.24.0 prints no Preemptions or Deferred field on these lines: none preempted in a line's
    # interval as far as the line says (the run's count comes from /metrics), none deferred.
    assert all((s.preemptions, s.deferred, s.prefix_cache_hit_pct) == (0, 0, 0.0) for s in run1)


def test_a_run_starts_at_its_first_line_with_work():
    # The line at 10:22:13, just after run 2's marker, is the end of run 1 (nothing running or
    # waiting): run 2 starts at the next one.
    log = read_server_log(CFS_LOG, year=2026)
    assert any(s.time == _at("10:22:13") and s.running == s.pending == 0 for s in log.stats)
    run2 = log.for_run(2).stats
    assert [(s.time, s.running, s.pending, s.gpu_kv_pct, s.prefix_cache_hit_pct) for s in run2] == [
        (_at("10:22:18"), 10, 2, 98.0, 17.1),
        (_at("10:22:23"), 10, 2, 93.9, 13.0),
    ]


def test_our_v1_schedulers_counters_are_the_runs_cfs_counters():
    cfs = read_server_log(CFS_LOG, year=2026)
    assert cfs.for_run(1).cfs[-1].counters == {"policy_steps": 7, "victims": 6, "victim_blocks": 1518}
    assert cfs.for_run(2).cfs[-1].counters == {"policy_steps": 16, "victims": 12, "victim_blocks": 3034}
    assert cfs.for_run(2).cfs[-1].get("victims") == 12
    fair = read_server_log(FAIR_LOG, year=2026)
    assert fair.runs == [1]
    assert [c.counters for c in fair.for_run(1).cfs] == [
        {"policy_steps": 1, "victims": 1, "victim_blocks": 250},
        {"policy_steps": 3, "victims": 2, "victim_blocks": 500},
    ]
    assert fair.engine_name == "V1" and fair.kv_cache_tokens == 40_992


def test_every_other_line_is_skipped():
    lines = [line for line in CFS_LOG.read_text().splitlines() if not line.startswith("#")]
    read = [line for line in lines if read_v1_line(line) is not None]
    # 6 stats lines, 6 counter lines, the engine line and the three KV cache lines.
    assert len(read) == 6 + 6 + 1 + 3
    # The simulator's per-step summary ("Simulated GPU: N tokens computed ...") is no block line.
    summary = next(line for line in lines if "tokens computed in" in line)
    assert read_v1_line(summary) is None
    assert isinstance(read_v1_line(next(line for line in lines if "Engine 000:" in line)), V1Stats)


def test_a_v0_stats_line_is_no_v1_line_and_still_parses_as_v0():
    # The one V0 line vLLM 0.9.0 prints (server_log.py's docstring): both engines' logs read into
    # the same records, each line by its own pattern.
    from vllm_cfs.analysis.server_log import parse_server_log

    v0 = ("INFO 11-29 05:01:03 [metrics.py:486] Avg prompt throughput: 226.5 tokens/s, Avg generation throughput: "
          "166.8 tokens/s, Running: 11 reqs, Swapped: 0 reqs, Pending: 0 reqs, GPU KV cache usage: 8.0%, "
          "CPU KV cache usage: 0.0%.")
    assert read_v1_line(v0) is None
    (sample,) = parse_server_log([v0], year=2026).stats
    assert sample == StatsSample(datetime.datetime(2026, 11, 29, 5, 1, 3), 226.5, 166.8, 11, 0, 0, 8.0, 0.0, None)
    assert parse_server_log([v0], year=2026).engine_name == "V0"


@pytest.mark.parametrize("text", ["", "# HELP only\n"])
def test_a_log_without_v1_lines_has_no_engine(text, tmp_path):
    path = tmp_path / "server.log"
    path.write_text(text)
    assert read_server_log(path).engine_name is None
