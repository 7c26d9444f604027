"""calibrate_gpu.py end to end on a CPU (--dry-run), refitting (--from-raw) and bad input."""

import json

import pytest

from vllm_cfs.calibration.cli import main
from vllm_cfs.calibration.copiers import LoopCopier
from vllm_cfs.calibration.formats import PROFILE_KEYS
from vllm_cfs.calibration.plans import DRY_PLAN
from vllm_cfs.calibration.shapes import TINY
from vllm_cfs.calibration.swap_rig import SwapRig
from vllm_cfs.sim.profile import load_profile


def test_dry_run_measures_every_family_and_writes_a_loadable_profile(dry_run):
    raw = json.loads((dry_run / "raw.json").read_text())
    assert raw["errors"] == {}
    plan = DRY_PLAN
    assert [p["seq_lens"] for p in raw["prefill"]] == [list(s) for s in plan.prefill]
    assert len(raw["decode"]) == len(plan.decode_batches) * len(plan.decode_contexts)
    assert all(p["seconds"] > 0 and len(p["samples"]) == plan.reps for p in raw["prefill"] + raw["decode"])
    swap = raw["swap"]
    assert swap["failed"] == {} and all(swap["verified"].values())
    paths = {(p["path"], p["direction"]) for p in swap["points"]}
    assert paths == {(q, d) for q in ("per_block", "staged") for d in ("out", "in")}
    assert {p["copy_bytes"] for p in swap["points"]} == {TINY.copy_bytes, *plan.swap_copy_sizes}

    profile = load_profile(str(dry_run / "profile.json"))   # the simulator's own loader accepts it
    assert profile.name == "cpu-dry-run"
    written = json.loads((dry_run / "profile.json").read_text())
    assert list(written)[: len(PROFILE_KEYS)] == list(PROFILE_KEYS)
    assert written["measured"]["decode"] == raw["decode"]
    table = (dry_run / "table.md").read_text()
    assert table.count("| B=") == len(raw["decode"])


def test_refit_from_raw_reproduces_the_profile(dry_run, tmp_path):
    assert main(["--from-raw", str(dry_run / "raw.json"), "--out", str(tmp_path)]) == 0
    first = json.loads((dry_run / "profile.json").read_text())
    again = json.loads((tmp_path / "profile.json").read_text())
    assert again == first


def test_swap_paths_move_the_right_bytes():
    import torch

    device = torch.device("cpu")
    rig = SwapRig(torch, device, layers=2, copy_bytes=256, gpu_blocks=12, cpu_blocks=9, max_blocks=5,
                  copier=LoopCopier("test"), stream=None, seed=3)
    for path in ("per_block", "staged"):
        rig.verify(path, 5)   # raises on any wrong byte
    # and a broken copier is caught: one that drops the last block of every mapping
    broken = SwapRig(torch, device, layers=2, copy_bytes=256, gpu_blocks=12, cpu_blocks=9, max_blocks=5,
                     copier=DroppingCopier(), stream=None, seed=3)
    with pytest.raises(RuntimeError, match="swap-out copied the wrong bytes"):
        broken.verify("per_block", 5)


class DroppingCopier:
    has_batched = False
    description = "drops a block"

    def copy_blocks(self, src, dst, mapping, to_host, stream):
        for s, d in mapping.tolist()[:-1]:
            dst[d].copy_(src[s])


@pytest.mark.parametrize("argv, message", [
    (["--layers", "0"], "--layers must be between 1 and 48"),
    (["--from-raw", "x.json", "--quick"], "--from-raw measures nothing"),
])
def test_bad_arguments_are_one_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_unreadable_or_foreign_raw_file_is_refused(tmp_path, capsys):
    assert main(["--from-raw", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"hello": 1}))
    assert main(["--from-raw", str(foreign), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cannot read" in err[0] and "not a raw.json" in err[1]
