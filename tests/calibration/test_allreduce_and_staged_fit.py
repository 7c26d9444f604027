"""The all-reduce and staged-swap fits recover the constants that made their points; the CLI
takes both runs into the profile and refuses files that are not them."""

import json
import math

import pytest

from vllm_cfs.calibration import allreduce
from vllm_cfs.calibration.cli import main
from vllm_cfs.calibration.fit import fit_staged_swap

LINK = 450e9


def ring_points(latency, efficiency):
    return [{"tokens": t, "bytes": t * 8192 * 2,
             "median_s": latency + t * 8192 * 2 / (LINK * efficiency)} for t in allreduce.TOKEN_COUNTS]


def test_allreduce_fit_recovers_a_ring():
    fitted = allreduce.fit(ring_points(30e-6, 0.6), LINK)
    assert fitted["allreduce_latency_s"] == pytest.approx(30e-6, rel=0.05)  # the decode sizes carry a little transfer
    assert fitted["allreduce_bandwidth_efficiency"] == pytest.approx(0.6, rel=0.01)


def test_allreduce_fit_needs_both_regimes():
    small_only = [p for p in ring_points(30e-6, 0.6) if p["tokens"] <= allreduce.DECODE_TOKENS]
    with pytest.raises(ValueError, match="the fit needs points"):
        allreduce.fit(small_only, LINK)


def speed_run(staging, overhead, efficiency, link=50e9, block_bytes=1_572_864):
    points = [{"path": "staged", "direction": d, "blocks": n,
               "median_s": math.ceil(n / staging) * overhead + n * block_bytes / (link * efficiency)}
              for n in (1, 8, 64, 512) for d in ("out", "in")]
    points += [{"path": "per_block", "direction": "out", "blocks": 64, "median_s": 1.0}]  # ignored
    return {"runs": {str(staging): {"link": {"device_to_host_bytes_per_s": link, "host_to_device_bytes_per_s": link},
                                    "shape": {"block_bytes": block_bytes}, "points": points}},
            "environment": {"gpu": "test GPU"}}


def test_staged_fit_recovers_its_constants():
    fitted = fit_staged_swap(speed_run(32, 60e-6, 0.8), 32)
    assert fitted["staged_swap_chunk_overhead_s"] == pytest.approx(60e-6, rel=1e-6)
    assert fitted["staged_swap_bandwidth_efficiency"] == pytest.approx(0.8, rel=1e-6)


def test_refit_takes_both_runs_into_the_profile(tmp_path, dry_run_raw):
    ar = tmp_path / "allreduce-raw.json"
    ar.write_text(json.dumps({"environment": {"gpus": ["G", "G"], "nccl": "x"}, "points": ring_points(40e-6, 0.7)}))
    speed = tmp_path / "swap-speed.json"
    speed.write_text(json.dumps(speed_run(32, 60e-6, 0.8)))
    out = tmp_path / "out"
    assert main(["--from-raw", str(dry_run_raw), "--allreduce-raw", str(ar), "--swap-speed-raw", str(speed),
                 "--out", str(out)]) == 0
    profile = json.loads((out / "profile.json").read_text())
    assert profile["allreduce_bandwidth_efficiency"] == pytest.approx(0.7, rel=0.01)
    assert profile["staged_swap_bandwidth_efficiency"] == pytest.approx(0.8, rel=1e-6)
    assert "measured on 2 x G" in profile["calibration"]["notes"]["allreduce_latency_s"]
    assert profile["measured"]["allreduce"]["points"] and profile["measured"]["staged_swap"]["runs"]


def test_refit_refuses_foreign_files(tmp_path, dry_run_raw, capsys):
    assert main(["--from-raw", str(dry_run_raw), "--allreduce-raw", str(dry_run_raw),
                 "--out", str(tmp_path)]) == 2
    assert "is not an allreduce-raw.json" in capsys.readouterr().err
    assert main(["--from-raw", str(dry_run_raw), "--swap-speed-raw", str(dry_run_raw),
                 "--out", str(tmp_path)]) == 2
    assert "is not a swap-speed.json" in capsys.readouterr().err


@pytest.fixture
def dry_run_raw(dry_run):
    return dry_run / "raw.json"
