"""The calibration report: predictions through vllm_cfs.sim.cost_model, tables, errors."""

import json
from pathlib import Path

import pytest

from vllm_cfs.calibration.cli import report_main
from vllm_cfs.calibration.comparison import compare, model_spec, swap_layout
from vllm_cfs.calibration.fit import fit_profile
from vllm_cfs.calibration.formats import CalibrationError, load_base_profile
from vllm_cfs.calibration.report import TARGETS_PCT, build_report
from vllm_cfs.calibration.table import comparison_rows
from vllm_cfs.sim.profile import load_profile

REPO = Path(__file__).resolve().parents[2]


def _cross_check(raw, datasheet, calibrated):
    """The report's cost-model predictions equal the fit's own formulas point by point:
    the fit and the simulator model the same thing."""
    cmp = compare(raw, datasheet, calibrated)
    rows = comparison_rows(raw, {"datasheet": vars(datasheet), "calibrated": vars(calibrated)})
    for family in ("prefill", "decode", "swap"):
        ours = [(r["measured"], r["datasheet"], r["calibrated"]) for r in rows[family]]
        theirs = [(r.measured, r.datasheet, r.calibrated) for r in cmp.family(family)]
        assert len(theirs) == len(ours) > 0
        for a, b in zip(ours, theirs):
            assert b == pytest.approx(a, rel=1e-9)
    return cmp


def test_report_on_a_dry_run_lists_every_point(dry_run, tmp_path):
    out = tmp_path / "calibration.md"
    cmp = build_report(dry_run / "raw.json", dry_run / "profile.json", "h200", out, ["a100-40gb"])
    text = out.read_text()
    raw = json.loads((dry_run / "raw.json").read_text())
    per_block = [p for p in raw["swap"]["points"] if p["path"] == "per_block"]
    assert len(cmp.family("prefill")) == len(raw["prefill"])
    assert len(cmp.family("decode")) == len(raw["decode"])
    assert len(cmp.family("swap")) == len(per_block)
    for row in cmp.rows:
        assert f"| {row.point} | {row.measured * 1e3:.3f} |" in text
    for family in cmp.families:
        assert f"| {family} | {len(cmp.family(family))} |" in text
    assert "**a100-40gb** — factors" in text
    _cross_check(raw, load_profile("h200"), load_profile(str(dry_run / "profile.json")))


def test_swap_layouts_map_copy_sizes_to_tp_and_block_size():
    raw = json.loads((REPO / "profiles" / "h200-raw.json").read_text())
    spec = model_spec(raw["model"])
    assert swap_layout(spec, 32768) == (1, 16)
    assert swap_layout(spec, 16384) == (2, 16)
    assert swap_layout(spec, 4096) == (8, 16)
    assert swap_layout(spec, 131072) == (1, 64)
    with pytest.raises(CalibrationError):
        swap_layout(spec, 1000)


def test_committed_h200_profile_meets_the_targets():
    """The committed measurements, through the simulator's cost model and loader."""
    raw = json.loads((REPO / "profiles" / "h200-raw.json").read_text())
    calibrated = load_profile(str(REPO / "profiles" / "h200-measured.json"))
    cmp = _cross_check(raw, load_profile("h200"), calibrated)
    for family, target in TARGETS_PCT.items():
        assert cmp.median_abs_error_pct(family, "calibrated") <= target
    # and the committed profile is what refitting the committed raw points gives
    fit = fit_profile(raw, load_base_profile(None))
    for key, value in fit.values.items():
        assert getattr(calibrated, key) == pytest.approx(value, rel=1e-12)


def test_architecture_mismatch_is_refused(tmp_path, capsys):
    raw = json.loads((REPO / "profiles" / "h200-raw.json").read_text())
    raw["model"]["params"] += 1
    bad = tmp_path / "raw.json"
    bad.write_text(json.dumps(raw))
    code = report_main(["--raw", str(bad), "--calibrated", str(REPO / "profiles" / "h200-measured.json"),
                        "--out", str(tmp_path / "x.md")])
    assert code == 2
    assert "disagree on the architecture" in capsys.readouterr().err
    assert not (tmp_path / "x.md").exists()
