"""Where the bundle lands (standard library only): keep parts as they arrive, then join and install.

    python3 -m vllm_cfs.realgpu.unpack stash .gpu-bundle/part-1      # one call per part
    python3 -m vllm_cfs.realgpu.unpack install                       # once all are kept
    export PYTHONPATH=/root/vllm-cfs/site:$PWD

``stash`` checks a part against its manifest's SHA-256 and copies it into the store (outside the
working tree, which each call replaces). ``install`` checks that every part of one archive is
there and that the joined archive has the manifest's hash, unpacks it, installs its wheels with
pip (no index, no dependencies: the bundle already holds exactly the missing set) into
``TARGET/site`` beside the trimmed vLLM, and puts the model folder at ``TARGET/model``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MANIFEST = "MANIFEST.json"
DEFAULT_STORE = Path("/root/vllm-cfs-parts")
DEFAULT_TARGET = Path("/root/vllm-cfs")


class UnpackError(Exception):
    """A missing or damaged part; the message is one line."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise UnpackError(f"{folder / MANIFEST} is missing or unreadable: {error}") from None


def stash(part_folder: Path, store: Path) -> Path:
    manifest = read_manifest(part_folder)
    part = part_folder / manifest["part"]
    if not part.is_file() or sha256(part) != manifest["part_sha256"]:
        raise UnpackError(f"{part} is missing or does not match its SHA-256: send it again")
    store.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(part, store / part.name)
    (store / f"{part.name}.json").write_text(json.dumps(manifest))
    return store / part.name


def join(store: Path, into: Path) -> Path:
    manifests = [json.loads(p.read_text()) for p in sorted(store.glob("*.json"))]
    if not manifests:
        raise UnpackError(f"no part in {store}: stash the parts first")
    archives = {m["archive_sha256"] for m in manifests}
    if len(archives) > 1:
        raise UnpackError(f"{store} holds parts of {len(archives)} different bundles: empty it and stash again")
    first = manifests[0]
    archive = into / first["archive"]
    with archive.open("wb") as out:
        for index in range(1, first["parts"] + 1):
            part = store / f"{first['archive']}.{index}"
            if not part.is_file():
                raise UnpackError(f"part {index} of {first['parts']} is not in {store}: stash it first")
            with part.open("rb") as f:
                shutil.copyfileobj(f, out)
    if sha256(archive) != first["archive_sha256"]:
        raise UnpackError("the joined archive does not match its SHA-256: stash the parts again")
    return archive


def install(store: Path, target: Path) -> Path:
    """Unpack and install into ``target``; returns the site folder for PYTHONPATH."""
    with tempfile.TemporaryDirectory(prefix="vllm-cfs-unpack-") as tmp:
        archive = join(store, Path(tmp))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        bundle = Path(tmp) / "bundle"
        if target.exists():
            shutil.rmtree(target)
        site = target / "site"
        shutil.copytree(bundle / "vllm-site", site)
        wheels = sorted(str(w) for w in (bundle / "wheels").glob("*.whl"))
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                   "--no-cache-dir", "--target", str(site), *wheels]
        if subprocess.run(command).returncode != 0:
            raise UnpackError("pip could not install the bundle's wheels (see its message above)")
        shutil.copytree(bundle / "model", target / "model")
        shutil.copyfile(bundle / MANIFEST, target / MANIFEST)
    return site


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="unpack", description="Keep the bundle's parts as they arrive, "
                                     "then join, check and install them (vllm_cfs.realgpu.bundle makes them).")
    commands = parser.add_subparsers(dest="command", required=True)
    keep = commands.add_parser("stash", help="check one part and keep it in the store")
    keep.add_argument("part_folder", type=Path, help="a part-N folder of the bundle")
    keep.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"default: {DEFAULT_STORE}")
    put = commands.add_parser("install", help="join the kept parts, check, install")
    put.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"default: {DEFAULT_STORE}")
    put.add_argument("--target", type=Path, default=DEFAULT_TARGET,
                     help=f"site/ and model/ go here (default: {DEFAULT_TARGET})")
    args = parser.parse_args(argv)
    try:
        if args.command == "stash":
            print(f"kept {stash(args.part_folder, args.store)}")
        else:
            site = install(args.store, args.target)
            print(f"installed: export PYTHONPATH={site}:$PYTHONPATH; model folder {args.target / 'model'}")
    except UnpackError as error:
        print(f"unpack: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
