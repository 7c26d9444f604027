"""analyze.py on a short real sweep: nine PNGs that hold the measured data, answers that agree
with the numbers they cite, and a report; with FairScheduler's run, Fair as the third line of the
3.2 plots and the table, and a tenth PNG that sets the four figures side by side; with the sweep on
the staged swap worker, the table of both swap paths per interval and an eleventh PNG that draws it."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
from hw2_scripts import HW2, REPO

from vllm_cfs.analysis.answers import answer_all, format_answers, interval_table
from vllm_cfs.analysis.inputs import InputError
from vllm_cfs.analysis.kv_memory import GIB, kv_footprint
from vllm_cfs.analysis.plots import DPI, SIZE_IN
from vllm_cfs.analysis.report import setup_lines
from vllm_cfs.analysis.study import load_study
from vllm_cfs.analysis.server_log import read_server_log
from vllm_cfs.analysis.swap_paths import swap_paths_table
from vllm_cfs.results import RunResult, percentile

TASK31_PLOTS = ("ttft", "tpot", "gpu_kv")
TASK32_PLOTS = ("ttft", "tpot", "gpu_kv", "cpu_kv", "waiting", "pareto")
MATPLOTLIB_COLOURS = {"C0": (0x1F, 0x77, 0xB4), "C1": (0xFF, 0x7F, 0x0E), "C2": (0x2C, 0xA0, 0x2C)}
FAIR = "Fair (FairScheduler)"
COMPARED = (("FCFS (interval 0)", "p0_r1"), ("CFS interval 10", "p10_r1"), (FAIR, "fair_r1"))


def _plot(sweep, folder, name):
    path = folder / f"{name}.png"
    return next(p for p in sweep.outputs.plots if p.path == path)


def _has_colour(image: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    pixels = (image[:, :, :3] * 255).round().astype(int)
    return bool(np.any(np.all(np.abs(pixels - np.array(rgb)) <= 6, axis=-1)))


def _records_file(sweep, name):
    return (sweep.fair if name.startswith("fair") else sweep.task32) / f"{name}.json"


def _results(folder, pattern):
    return [RunResult.load(p) for p in sorted(folder.glob(pattern))]


def _log_file(sweep, name):
    folder = sweep.fair if name.startswith("fair") else sweep.task32
    return folder / f"server_{name.split('_')[0]}.log"


def test_nine_pngs_and_the_fair_and_swap_comparisons_with_data_drawn(sweep):
    paths = [sweep.task31 / f"{n}.png" for n in TASK31_PLOTS] + [sweep.task32 / f"{n}.png" for n in TASK32_PLOTS]
    paths += [sweep.fair / "policies.png", sweep.staged / "swap_paths.png"]
    assert sorted(p.path for p in sweep.outputs.plots) == sorted(paths)
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(path)
        assert image.shape[:2] == (round(SIZE_IN[1] * DPI), round(SIZE_IN[0] * DPI))
        assert _has_colour(image, MATPLOTLIB_COLOURS["C0"]), path
    for name in TASK32_PLOTS:  # FCFS, CFS and Fair side by side (pareto: one colour per point)
        image = mpimg.imread(sweep.task32 / f"{name}.png")
        assert _has_colour(image, MATPLOTLIB_COLOURS["C1"]) and _has_colour(image, MATPLOTLIB_COLOURS["C2"]), name
    # Both swap paths' lines (per-block C0, staged C1).
    assert _has_colour(mpimg.imread(sweep.staged / "swap_paths.png"), MATPLOTLIB_COLOURS["C1"])
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
    fair = RunResult.load(sweep.fair / "fair_r1.json")
    ttft = {s.label: s for s in _plot(sweep, sweep.task32, "ttft").series}
    assert set(ttft) == {"FCFS (interval 0)", "CFS interval 10", FAIR}
    assert ttft["FCFS (interval 0)"].y == tuple(r.ttft_s for r in fcfs.records)
    assert ttft["CFS interval 10"].y == tuple(r.ttft_s for r in cfs.records)
    assert ttft[FAIR].y == tuple(r.ttft_s for r in fair.records)
    tpot = {s.label: s for s in _plot(sweep, sweep.task32, "tpot").series}
    assert tpot["CFS interval 10"].y == pytest.approx([r.tpot_s * 1000 for r in cfs.records])
    assert tpot[FAIR].y == pytest.approx([r.tpot_s * 1000 for r in fair.records])


@pytest.mark.parametrize("name, field", [("gpu_kv", "gpu_kv_pct"), ("cpu_kv", "cpu_kv_pct"), ("waiting", "pending")])
def test_time_series_hold_the_server_stats_lines(sweep, name, field):
    series = {s.label: s for s in _plot(sweep, sweep.task32, name).series}
    assert set(series) == {label for label, _ in COMPARED}
    for label, run in COMPARED:
        samples = read_server_log(_log_file(sweep, run)).for_run(1).stats
        assert series[label].y == tuple(float(getattr(s, field)) for s in samples)
        assert series[label].x == tuple((s.time - samples[0].time).total_seconds() for s in samples)


def test_pareto_points_are_the_p99_of_the_records(sweep):
    series = _plot(sweep, sweep.task32, "pareto").series
    points = {s.label: (s.x[0], s.y[0]) for s in series}
    assert set(points) == {label for label, _ in COMPARED}
    for label, run in COMPARED:
        records = RunResult.load(_records_file(sweep, run)).records
        p99_tpot_ms = percentile([r.tpot_s * 1000 for r in records], 99)
        p99_ttft_s = percentile([r.ttft_s for r in records], 99)
        assert points[label] == pytest.approx((p99_tpot_ms, p99_ttft_s))
    # The grey line runs through the sweep's intervals; Fair is no interval between them.
    assert {s.label: s.joined for s in series} == {"FCFS (interval 0)": True, "CFS interval 10": True, FAIR: False}


def _median_p99(runs, value):
    return statistics.median(percentile([value(r) for r in run.records], 99) for run in runs)


def _median_itl(runs):
    return statistics.median(percentile([gap * 1000 for r in run.records for gap in r.itl_s], 99) for run in runs)


def test_policies_plot_sets_the_four_figures_side_by_side(sweep):
    plot = _plot(sweep, sweep.fair, "policies")
    assert plot.categories == ("FCFS", "CFS-10", "Fair")
    panels = {s.label: s.y for s in plot.series}
    assert list(panels) == ["P99 TTFT (ms)", "P99 TPOT (ms)", "P99 ITL (ms)", "output (tokens/s)"]
    for position, run in enumerate(("p0_r1", "p10_r1", "fair_r1")):
        result = RunResult.load(_records_file(sweep, run))
        assert panels["P99 TTFT (ms)"][position] == pytest.approx(_median_p99([result], lambda r: r.ttft_s * 1000))
        assert panels["P99 TPOT (ms)"][position] == pytest.approx(_median_p99([result], lambda r: r.tpot_s * 1000))
        assert panels["P99 ITL (ms)"][position] == pytest.approx(_median_itl([result]))
        assert panels["output (tokens/s)"][position] == pytest.approx(
            sum(r.output_tokens for r in result.records) / result.duration_s)


def test_swap_paths_plot_draws_both_paths_per_interval(sweep):
    plot = _plot(sweep, sweep.staged, "swap_paths")
    assert plot.style == "line-panels" and plot.categories == ("FCFS", "CFS-10")
    assert plot.footnote.startswith("simulated GPU (a100-40gb x2)")
    lines = {(s.panel, s.label): s for s in plot.series}
    panels = ["P99 TTFT (ms)", "P99 TPOT (ms)", "P99 ITL (ms)", "output (tokens/s)"]
    assert list(lines) == [(panel, path) for panel in panels
                           for path in ("vLLM's per-block swap", "staged swap worker")]
    per_block = {0: _results(sweep.task32, "p0_r*.json"), 10: _results(sweep.task32, "p10_r*.json")}
    staged = {10: _results(sweep.staged, "p10_r*.json")}  # the fixture ran the staged path at interval 10 only
    for path, runs in (("vLLM's per-block swap", per_block), ("staged swap worker", staged)):
        assert lines["P99 TTFT (ms)", path].x == tuple(float(i) for i in runs)
        assert lines["P99 TTFT (ms)", path].y == pytest.approx(
            [_median_p99(r, lambda q: q.ttft_s * 1000) for r in runs.values()])
        assert lines["P99 TPOT (ms)", path].y == pytest.approx(
            [_median_p99(r, lambda q: q.tpot_s * 1000) for r in runs.values()])
        assert lines["P99 ITL (ms)", path].y == pytest.approx([_median_itl(r) for r in runs.values()])
        assert lines["output (tokens/s)", path].y == pytest.approx(
            [statistics.median(sum(q.output_tokens for q in x.records) / x.duration_s for x in r)
             for r in runs.values()])


SWAP_ROW = re.compile(r"^\s+(FCFS|CFS-\d+)\s+(per-block|staged)\s+(\d+|-)\s+([\d.]+|n/a)\s+([\d.]+|n/a)\s+"
                      r"([\d.]+|n/a)\s+([\d.]+|n/a)\s+([\d.]+x|n/a)$", re.M)


def test_swap_table_sets_both_paths_side_by_side_from_the_results(sweep):
    text = sweep.outputs.answers_path.read_text()
    start = text.index("vLLM's per-block swap vs the staged swap worker (vllm_cfs.swap.StagedSwapWorker) per CFS "
                       "interval, simulated GPU (a100-40gb x2)")
    table = text[start:]
    assert "the GPU is SIMULATED" in table
    per_block_log = read_server_log(sweep.task32 / "server_p10.log")
    staged_log = read_server_log(sweep.staged / "server_p10.log")
    assert (f"GPU KV blocks per GPU: {per_block_log.blocks.gpu_blocks} with the per-block swap, "
            f"{staged_log.blocks.gpu_blocks} with the staged worker (a 32-block staging buffer taken from the KV "
            "cache)") in table
    rows = SWAP_ROW.findall(table)
    assert [(name, path) for name, path, *_ in rows] == \
        [("FCFS", "per-block"), ("FCFS", "staged"), ("CFS-10", "per-block"), ("CFS-10", "staged")], table
    # The staged sweep did not run interval 0: its row says so rather than borrow a figure.
    assert rows[1][2:] == ("-", "n/a", "n/a", "n/a", "n/a", "n/a")
    fcfs_throughput = statistics.median(r.summary.output_throughput for r in _results(sweep.task32, "p0_r*.json"))
    for row, (folder, pattern) in zip([rows[0], rows[2], rows[3]], [(sweep.task32, "p0_r*.json"),
                                                                     (sweep.task32, "p10_r*.json"),
                                                                     (sweep.staged, "p10_r*.json")]):
        _, _, runs, ttft, tpot, itl, throughput, ratio = row
        results = _results(folder, pattern)
        assert int(runs) == len(results)
        assert float(ttft) == pytest.approx(_median_p99(results, lambda r: r.ttft_s * 1000), abs=0.05)
        assert float(tpot) == pytest.approx(_median_p99(results, lambda r: r.tpot_s * 1000), abs=0.05)
        assert float(itl) == pytest.approx(_median_itl(results), abs=0.05)
        output = statistics.median(r.summary.output_throughput for r in results)
        assert float(throughput) == pytest.approx(output, abs=0.05)
        assert float(ratio.rstrip("x")) == pytest.approx(output / fcfs_throughput, abs=0.005)
    assert rows[0][-1] == "1.00x"
    # The report's setup page carries the same table and the staged sweep's settings.
    study = sweep.outputs.study
    lines = setup_lines(study)
    assert all(line in lines for line in swap_paths_table(study.swap_paths, study.gpu, study.simulated))
    assert "  worker_cls: vllm_cfs.swap.StagedSwapWorker" in lines and "  swap: staged" in lines


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


def test_comparison_table_gives_fcfs_cfs_and_fair_medians_of_the_runs(sweep):
    text = sweep.outputs.answers_path.read_text()
    table = text[text.index("P99 TTFT, P99 TPOT, P99 ITL and output throughput per scheduler"):]
    rows = re.findall(r"^\s+(FCFS|CFS|Fair)\s+(\d+|-)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$",
                      table, re.M)
    assert [(name, interval) for name, interval, *_ in rows] == [("FCFS", "0"), ("CFS", "10"), ("Fair", "-")], table
    for (_, _, runs, ttft, tpot, itl, throughput), files in zip(rows, ("p0_r*.json", "p10_r*.json", "fair_r*.json")):
        folder = sweep.fair if files.startswith("fair") else sweep.task32
        results = [RunResult.load(p) for p in sorted(folder.glob(files))]
        assert int(runs) == len(results)
        assert float(ttft) == pytest.approx(_median_p99(results, lambda r: r.ttft_s * 1000), abs=0.05)
        assert float(tpot) == pytest.approx(_median_p99(results, lambda r: r.tpot_s * 1000), abs=0.05)
        assert float(itl) == pytest.approx(_median_itl(results), abs=0.05)
        assert float(throughput) == pytest.approx(
            statistics.median(r.summary.output_throughput for r in results), abs=0.05)
    # The report's setup page carries the same table and says what Fair is.
    study = sweep.outputs.study
    lines = setup_lines(study)
    assert all(line in lines for line in ["  " + row for row in interval_table(study)])
    assert any("FairScheduler (vllm_cfs/v0/fair.py" in line for line in lines)
    assert "  scheduler: vllm_cfs.FairScheduler" in lines


def test_answers_are_the_assignments_with_or_without_fair_and_staged(sweep):
    # Fair joins the table and the plots, the staged swap its own table; every MCQ still rests on
    # FCFS and CFS on the per-block swap alone.
    without = load_study(sweep.task31, sweep.task32)
    assert without.fair is None and without.table_rows == list(without.rows.values())
    assert without.swap_paths is None
    assert answer_all(without) == sweep.outputs.answers
    assert answer_all(load_study(sweep.task31, sweep.task32, staged_dir=sweep.staged)) == sweep.outputs.answers
    # answers.txt words them exactly as without the staged sweep (its table comes after them).
    def sections(text):
        return [chunk for chunk in text.split("\n\n") if chunk.startswith("Section ")]
    plain = sections(format_answers(without, sweep.outputs.answers))
    assert len(plain) == 6 and sections(sweep.outputs.answers_path.read_text()) == plain


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
    # No --fair: the results_fair folder beside results_3.2 is found, as run_all.sh lays it out.
    process = subprocess.run([sys.executable, str(HW2 / "analyze.py"), str(sweep.task31), str(sweep.task32),
                              "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    written = process.stdout.split()
    # Nor --staged: results_3.2_staged beside results_3.2 likewise.
    assert len(written) == 13
    assert str(sweep.fair / "policies.png") in written and str(sweep.staged / "swap_paths.png") in written
    assert written[-2:] == [str(tmp_path / "answers.txt"), str(tmp_path / "report.pdf")]
    assert "wrote 11 plots" in process.stderr and "FairScheduler's 1 run, 1 staged swap run over intervals [10]" \
        in process.stderr
    assert "vLLM's per-block swap vs the staged swap worker" in (tmp_path / "answers.txt").read_text()
    process = subprocess.run([sys.executable, str(HW2 / "analyze.py"), str(sweep.task31), str(sweep.task32),
                              "--no-staged", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 0 and len(process.stdout.split()) == 12, process.stderr
    assert "staged swap worker" not in (tmp_path / "answers.txt").read_text()


def test_analyze_cli_says_what_is_missing_in_one_line(sweep, tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in (([str(tmp_path / "nowhere"), str(tmp_path)], "is not a folder"),
                          ([str(tmp_path / "empty"), str(tmp_path)], "holds no client results"),
                          ([str(sweep.task31), str(sweep.task32), "--fair", str(sweep.task32)],
                           "holds no FairScheduler results"),
                          # the per-block sweep again is no staged one: its logs show no staging buffer
                          ([str(sweep.task31), str(sweep.task32), "--staged", str(sweep.task32)],
                           "server_p0.log shows no staging buffer")):
        process = subprocess.run([sys.executable, str(HW2 / "analyze.py"), *args], capture_output=True, text=True,
                                 timeout=120)
        assert process.returncode == 2
        assert len(process.stderr.strip().splitlines()) == 1
        assert process.stderr.startswith("analyze.py: error: ") and message in process.stderr


def test_fair_runs_of_another_burst_are_refused(sweep, tmp_path):
    other = RunResult.load(sweep.fair / "fair_r1.json")
    other.setup["seed"] = int(other.setup["seed"]) + 1
    other.save(tmp_path / "fair_r1.json")
    with pytest.raises(InputError, match=r"FairScheduler's run 1 is not the sweep's burst \(seed 4 vs 3\)"):
        load_study(sweep.task31, sweep.task32, fair_dir=tmp_path)


def test_staged_runs_of_another_burst_are_refused(sweep, tmp_path):
    other = RunResult.load(sweep.staged / "p10_r1.json")
    other.setup["seed"] = int(other.setup["seed"]) + 1
    other.save(tmp_path / "p10_r1.json")
    shutil.copy(sweep.staged / "server_p10.log", tmp_path / "server_p10.log")
    with pytest.raises(InputError, match=r"the staged swap's interval 10, run 1 is not the sweep's burst \(seed 4 vs 3\)"):
        load_study(sweep.task31, sweep.task32, staged_dir=tmp_path)
