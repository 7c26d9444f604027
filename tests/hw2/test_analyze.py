"""analyze.py on a short real sweep: nine PNGs that hold the measured data, answers that agree
with the numbers they cite, and a report."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
from hw2_scripts import HW2, REPO

from vllm_cfs.analysis.kv_memory import GIB, kv_footprint
from vllm_cfs.analysis.plots import DPI, SIZE_IN
from vllm_cfs.analysis.server_log import read_server_log
from vllm_cfs.bench.results import RunResult, percentile

TASK31_PLOTS = ("ttft", "tpot", "gpu_kv")
TASK32_PLOTS = ("ttft", "tpot", "gpu_kv", "cpu_kv", "waiting", "pareto")
MATPLOTLIB_COLOURS = {"C0": (0x1F, 0x77, 0xB4), "C1": (0xFF, 0x7F, 0x0E)}


def _plot(sweep, folder, name):
    path = folder / f"{name}.png"
    return next(p for p in sweep.outputs.plots if p.path == path)


def _has_colour(image: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    pixels = (image[:, :, :3] * 255).round().astype(int)
    return bool(np.any(np.all(np.abs(pixels - np.array(rgb)) <= 6, axis=-1)))


def test_nine_pngs_with_data_drawn(sweep):
    paths = [sweep.task31 / f"{n}.png" for n in TASK31_PLOTS] + [sweep.task32 / f"{n}.png" for n in TASK32_PLOTS]
    assert sorted(p.path for p in sweep.outputs.plots) == sorted(paths)
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(path)
        assert image.shape[:2] == (round(SIZE_IN[1] * DPI), round(SIZE_IN[0] * DPI))
        assert _has_colour(image, MATPLOTLIB_COLOURS["C0"]), path
    for name in TASK32_PLOTS:  # FCFS and CFS side by side (pareto: one colour per interval)
        assert _has_colour(mpimg.imread(sweep.task32 / f"{name}.png"), MATPLOTLIB_COLOURS["C1"]), name
    for plot in sweep.outputs.plots:
        assert plot.footnote.startswith("simulated GPU (a100-40gb x2)")
        assert plot.series and all(len(s.x) == len(s.y) > 0 for s in plot.series)


def test_per_request_plots_hold_the_client_records(sweep):
    fcfs = RunResult.load(sweep.task32 / "p0_r1.json")
    cfs = RunResult.load(sweep.task32 / "p10_r1.json")
    task31 = RunResult.load(sweep.task31 / "p0_r1.json")

    (only,) = _plot(sweep, sweep.task31, "ttft").series
    assert only.x == tuple(float(r.index) for r in task31.records)
    assert only.y == tuple(r.ttft_s for r in task31.records)
    ttft = {s.label: s for s in _plot(sweep, sweep.task32, "ttft").series}
    assert set(ttft) == {"FCFS (interval 0)", "CFS interval 10"}
    assert ttft["FCFS (interval 0)"].y == tuple(r.ttft_s for r in fcfs.records)
    assert ttft["CFS interval 10"].y == tuple(r.ttft_s for r in cfs.records)
    tpot = {s.label: s for s in _plot(sweep, sweep.task32, "tpot").series}
    assert tpot["CFS interval 10"].y == pytest.approx([r.tpot_s * 1000 for r in cfs.records])


@pytest.mark.parametrize("name, field", [("gpu_kv", "gpu_kv_pct"), ("cpu_kv", "cpu_kv_pct"), ("waiting", "pending")])
def test_time_series_hold_the_server_stats_lines(sweep, name, field):
    series = {s.label: s for s in _plot(sweep, sweep.task32, name).series}
    for label, interval in (("FCFS (interval 0)", 0), ("CFS interval 10", 10)):
        samples = read_server_log(sweep.task32 / f"server_p{interval}.log").for_run(1).stats
        assert series[label].y == tuple(float(getattr(s, field)) for s in samples)
        assert series[label].x == tuple((s.time - samples[0].time).total_seconds() for s in samples)


def test_pareto_points_are_the_p99_of_the_records(sweep):
    points = {s.label: (s.x[0], s.y[0]) for s in _plot(sweep, sweep.task32, "pareto").series}
    for label, interval in (("FCFS (interval 0)", 0), ("CFS interval 10", 10)):
        records = RunResult.load(sweep.task32 / f"p{interval}_r1.json").records
        p99_tpot_ms = percentile([r.tpot_s * 1000 for r in records], 99)
        p99_ttft_s = percentile([r.ttft_s for r in records], 99)
        assert points[label] == pytest.approx((p99_tpot_ms, p99_ttft_s))


def _answer(text: str, section: str, number: int) -> str:
    start = text.index(f"Section {section}, MCQ {number}, ")
    return text[start:text.index("\n\n", start)]


def _number(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return match.groups()


def test_answers_cite_numbers_that_the_inputs_give(sweep):
    text = sweep.outputs.answers_path.read_text()
    task31 = RunResult.load(sweep.task31 / "p0_r1.json")
    log = read_server_log(sweep.task31 / "vllm_server.log")

    policy = _answer(text, "3.1", 1)
    (ttft_10,) = _number(r"TTFT of request 10: ([\d.]+) ms", policy)
    assert float(ttft_10) == pytest.approx(task31.records[10].ttft_s * 1000, abs=0.05)

    memory = _answer(text, "3.1", 2)
    blocks, tokens = _number(r"GPU KV blocks: (\d+) per GPU .*?= ([\d,]+) tokens", memory)
    assert int(blocks) == log.blocks.gpu_blocks and int(tokens.replace(",", "")) == 16 * log.blocks.gpu_blocks
    footprint = kv_footprint(json.loads((sweep.task31 / "model_config.json").read_text()), 2)
    (gib,) = _number(r"KV cache per GPU: \d+ blocks x [\d.]+ MiB = ([\d.]+) GiB", memory)
    assert float(gib) == pytest.approx(log.blocks.gpu_blocks * footprint.block_bytes / GIB, abs=0.005)
    pct, running, swapped, pending = _number(
        r"peak GPU KV cache usage: ([\d.]+)% at [\d:]+ \(first line at the peak\): Running (\d+), Swapped (\d+), "
        r"Pending (\d+)", memory)
    stats = log.for_run(1).stats
    peak = max(s.gpu_kv_pct for s in stats)
    first_at_peak = next(s for s in stats if s.gpu_kv_pct == peak)
    assert (float(pct), int(running), int(swapped), int(pending)) == \
        (peak, first_at_peak.running, first_at_peak.swapped, first_at_peak.pending)
    # Stats lines are 5-second samples: check the waiting span in whichever form this log supports.
    first_waiting = next((s for s in stats if s.pending > 0), None)
    if first_waiting is None:
        assert "no stats line showed a pending request" in memory
        return
    cleared = next((s for s in stats if s.time > first_waiting.time and s.pending == 0), None)
    if cleared is None:
        start, waited_pending = _number(
            r"requests waited from ([\d:]+) \(Pending (\d+)\) and the log never showed Pending 0 again", memory)
        assert (start, int(waited_pending)) == (first_waiting.time.strftime("%H:%M:%S"), first_waiting.pending)
        return
    start, waited_pending, end, seconds = _number(
        r"requests waited from ([\d:]+) \(Pending (\d+)\) to ([\d:]+) \(Pending 0\): (\d+) s", memory)
    assert (start, int(waited_pending), end) == (first_waiting.time.strftime("%H:%M:%S"), first_waiting.pending,
                                                  cleared.time.strftime("%H:%M:%S"))
    assert int(seconds) == (cleared.time - first_waiting.time).total_seconds()


def test_interval_table_gives_the_median_p99_of_the_runs(sweep):
    text = sweep.outputs.answers_path.read_text()
    table = text[text.index("P99 TTFT, P99 TPOT and output throughput per CFS interval"):]
    for interval, name in ((0, "0 (FCFS)"), (10, "10")):
        runs = [RunResult.load(p) for p in sorted(sweep.task32.glob(f"p{interval}_r*.json"))]
        ttft = statistics.median(percentile([r.ttft_s * 1000 for r in run.records], 99) for run in runs)
        tpot = statistics.median(percentile([r.tpot_s * 1000 for r in run.records], 99) for run in runs)
        row = re.search(rf"^\s+{re.escape(name)}\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", table, re.M)
        assert row, table
        assert int(row.group(1)) == len(runs)
        assert float(row.group(2)) == pytest.approx(ttft, abs=0.05)
        assert float(row.group(3)) == pytest.approx(tpot, abs=0.05)


def test_answers_follow_from_this_runs_evidence(sweep):
    text = sweep.outputs.answers_path.read_text()
    by_number = {(a.section, a.number): a for a in sweep.outputs.answers}
    assert len(sweep.outputs.answers) == 6
    # Requests of this burst waited while the GPU's KV cache was full: memory capacity, derived.
    memory = by_number[("3.1", 2)]
    assert (memory.choice, memory.derived) == ("d", True)
    stats = read_server_log(sweep.task31 / "vllm_server.log").for_run(1).stats
    full_and_waiting = [s for s in stats if s.pending > 0 and s.gpu_kv_pct >= 90]
    assert f"requests pending while GPU KV >= 90%: {len(full_and_waiting)}" in _answer(text, "3.1", 2)
    # Every request came in at once and was served as it was issued: FCFS, derived.
    policy = by_number[("3.1", 1)]
    assert (policy.choice, policy.derived) == ("c", True)
    assert "Section 3.1, MCQ 1, answer (c) FCFS (First Come First Serve)" in text
    # CFS swapped running requests out so that the last arrivals got their first token sooner, at
    # the cost of TPOT: the three 3.2 answers follow from that.
    for number, choice in ((1, "b"), (2, "a"), (3, "b")):
        answer = by_number[("3.2", number)]
        assert (answer.choice, answer.derived) == (choice, True), answer.reason
    cfs = RunResult.load(sweep.task32 / "p10_r1.json")
    fcfs = RunResult.load(sweep.task32 / "p0_r1.json")
    # The scheduler's counters, not a sampled stats line, show that CFS swapped requests out.
    counters = read_server_log(sweep.task32 / "server_p10.log").for_run(1).cfs[-1]
    assert counters.get("preempted_by_swap") > 0 and counters.get("blocks_swapped_out") > 0
    assert max(r.ttft_s for r in cfs.records) < max(r.ttft_s for r in fcfs.records)
    # The sweep has no intervals 5 and 40, so the trend question says this run cannot decide it.
    assert not by_number[("3.2 (sweep)", 4)].derived
    assert "interval 5 -> 10: not in this sweep" in text


def test_report_pdf_has_setup_plots_and_answers(sweep):
    data = sweep.outputs.report_path.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page\b", data))
    assert pages == sweep.outputs.report_pages
    assert pages >= 1 + 5 + 1  # setup, nine plots two per page, answers


def test_analyze_cli_writes_everything(sweep, tmp_path):
    process = subprocess.run([sys.executable, str(HW2 / "analyze.py"), str(sweep.task31), str(sweep.task32),
                              "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    written = process.stdout.split()
    assert len(written) == 11
    assert written[-2:] == [str(tmp_path / "answers.txt"), str(tmp_path / "report.pdf")]
    assert "wrote 9 plots" in process.stderr


def test_analyze_cli_says_what_is_missing_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in (([str(tmp_path / "nowhere"), str(tmp_path)], "is not a folder"),
                          ([str(tmp_path / "empty"), str(tmp_path)], "holds no client results")):
        process = subprocess.run([sys.executable, str(HW2 / "analyze.py"), *args], capture_output=True, text=True,
                                 timeout=120)
        assert process.returncode == 2
        assert len(process.stderr.strip().splitlines()) == 1
        assert process.stderr.startswith("analyze.py: error: ") and message in process.stderr
