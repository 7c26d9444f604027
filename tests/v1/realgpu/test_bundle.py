"""The bundle's package set, from this venv's real metadata, and its parts, checked where they land."""

import hashlib
import random
import json
import tarfile
from pathlib import Path

import pytest

from vllm_cfs.realgpu import bundle, unpack
from vllm_cfs.realgpu.bundle import UNUSED, installed_distributions, needed_packages, read_freeze


@pytest.fixture(scope="module")
def installed():
    return installed_distributions()


def freeze_without(installed, *missing) -> dict[str, str]:
    have = {name: d.version for name, d in installed.items() if name not in missing and name != "vllm"}
    return {**have, "six": "1.17.0"}  # what Python 3.12 needs beyond this 3.11 venv


def test_only_what_the_target_lacks_goes_in_with_what_it_needs(installed):
    target = freeze_without(installed, "pydantic", "pydantic-core", "annotated-types", "fastapi")
    needed = needed_packages(installed, target, "3.12")
    # pydantic's own requirements come along; what the target has stays out, whatever its version
    assert set(needed) == {"pydantic", "pydantic-core", "annotated-types", "fastapi"}
    assert needed["pydantic"] == f"pydantic=={installed['pydantic'].version}"


def test_a_bare_target_gets_vllms_closure_but_nothing_unused(installed):
    needed = needed_packages(installed, {"torch": "2.11.0"}, "3.12")
    assert {"fastapi", "uvicorn", "openai", "xgrammar", "pyzmq", "msgspec"} <= set(needed)
    assert not set(UNUSED) & set(needed) and "vllm" not in needed and "torch" not in needed
    # what only an unused package needs is not followed (each is installed here, as their dependency)
    only_for_unused = {"tokenspeed-triton", "nvidia-cutlass-dsl-libs-base", "z3-solver"}
    assert only_for_unused <= set(installed) and not only_for_unused & set(needed)
    # vLLM needs six on Python > 3.11 only: this 3.11 venv lacks it, so it is asked for by range
    assert needed["six"] == "six>=1.16.0" and "six" not in needed_packages(installed, {"torch": "2.11.0"}, "3.11")


def test_a_freeze_without_pins_is_one_line(tmp_path, capsys):
    (tmp_path / "freeze.txt").write_text("torch\n# nothing pinned\n")
    assert bundle.main(["--target-freeze", str(tmp_path / "freeze.txt"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bundle.py: error: ") and err.count("\n") == 1
    with pytest.raises(bundle.BundleError, match="cannot read"):
        read_freeze(tmp_path / "absent.txt")


def test_parts_are_checked_joined_and_refused_when_damaged(tmp_path):
    source = tmp_path / "bundle"
    (source / "wheels").mkdir(parents=True)
    (source / "payload.bin").write_bytes(random.Random(0).randbytes(5000))  # xz cannot shrink it
    archive = tmp_path / "bundle.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(source, arcname="bundle")
    parts = bundle.split(archive, tmp_path / "out", 1000, {"vllm": "test"})
    assert len(parts) == -(-archive.stat().st_size // 1000) >= 2
    store = tmp_path / "store"
    for part in parts[:-1]:
        unpack.stash(part.parent, store)
    with pytest.raises(unpack.UnpackError, match=f"part {len(parts)} of {len(parts)}"):
        unpack.join(store, tmp_path)
    damaged = parts[-1].parent
    (damaged / parts[-1].name).write_bytes(b"x" + parts[-1].read_bytes()[1:])
    with pytest.raises(unpack.UnpackError, match="SHA-256"):
        unpack.stash(damaged, store)
    manifest = json.loads((damaged / "MANIFEST.json").read_text())
    manifest["part_sha256"] = hashlib.sha256((damaged / parts[-1].name).read_bytes()).hexdigest()
    (damaged / "MANIFEST.json").write_text(json.dumps(manifest))
    unpack.stash(damaged, store)  # its own hash now matches, but the whole archive's does not
    with pytest.raises(unpack.UnpackError, match="joined archive"):
        unpack.join(store, tmp_path)


def test_joined_parts_are_the_archive(tmp_path):
    archive = tmp_path / "bundle.tar.xz"
    archive.write_bytes(bytes(range(256)) * 13)
    parts = bundle.split(archive, tmp_path / "out", 500, {})
    for part in parts:
        unpack.stash(part.parent, tmp_path / "store")
    joined = unpack.join(tmp_path / "store", Path(tmp_path / "out"))
    assert joined.read_bytes() == archive.read_bytes()
