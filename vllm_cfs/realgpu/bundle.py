"""Pack the V1 pin for a GPU host without network, from what that host's own ``pip list`` lacks.

    .venv-v1/bin/python benchmarks/gpu/bundle.py --target-freeze profiles/h200-pip-freeze.txt

What goes in, decided from metadata rather than guessed:

- the packages the V1 pin needs (the closure of vLLM's requirements as installed in .venv-v1,
  markers read for the target's Python and platform) that the target's ``pip freeze`` does not
  name, as that Python's binary wheels at the versions .venv-v1 holds; a package the target
  already has stays the target's, whatever its version (vLLM 0.24.0 pins numba 0.65, the H200's
  0.68 served it);
- vLLM itself, copied from .venv-v1 (pure Python and abi3 extensions, so any CPython >= 3.8
  loads them) without the kernels a Hopper GPU does not load (``TRIMMED``);
- the CodeLlama-34B model folder (config, tokenizer; no weights).

Packages in ``UNUSED`` are left out with the reason each is not needed; their own requirements
are not followed. The archive is xz-packed and cut into parts of ``--part-mib``, each in its own
folder with the part's SHA-256, and the whole archive's hash in every part's manifest, so parts
can travel in separate calls and be checked where they land (vllm_cfs.realgpu.unpack).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

from packaging.markers import default_environment
from packaging.requirements import Requirement

from vllm_cfs.realgpu.unpack import MANIFEST, sha256
from vllm_cfs.sim.model_dir import codellama_34b_dir

V1_PIN = "0.24.0"
ROOT = "vllm"
# Left out: (package, why it is not needed for a Llama model served with dummy weights).
UNUSED = {
    "flashinfer-python": "FlashInfer kernels; unused with VLLM_USE_FLASHINFER_SAMPLER=0 and FLASH_ATTN (FA3) attention",
    "flashinfer-cubin": "FlashInfer's prebuilt kernels, as above",
    "tilelang": "kernel DSL for other models' kernels",
    "nvidia-cutlass-dsl": "CuTe DSL kernels for other models and GPUs",
    "quack-kernels": "CuTe DSL kernels for other models",
    "tokenspeed-mla": "MLA attention kernels (DeepSeek-style models)",
    "humming-kernels": "quantized-GEMM kernels",
    "fastsafetensors": "fast weight loading; dummy weights load no file",
}
# Files of vLLM's wheel that a dense model on a Hopper GPU never loads (each import is optional or
# lazy): FA2 (vLLM uses FA3 there), the MoE kernels, the Rust frontend binary (used only with
# VLLM_RUST_FRONTEND_PATH), Blackwell's (SM100) attention and DeepGEMM's FP8 JIT headers.
TRIMMED = ("vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so", "vllm/_moe_C_stable_libtorch.abi3.so", "vllm/vllm-rs",
           "vllm/third_party/fmha_sm100/", "vllm/third_party/deep_gemm/include/")
MANYLINUX = ("manylinux_2_39_x86_64", "manylinux_2_35_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64")


class BundleError(Exception):
    """A mistake in the bundle's inputs; the message is one line for the user."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_freeze(path: Path) -> dict[str, str]:
    """``pip freeze`` / ``pip list --format=freeze`` lines -> {canonical name: version}."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise BundleError(f"cannot read the target's pip freeze {path}: {error.strerror}") from None
    pins = {}
    for line in lines:
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[canonical(name)] = version
    if not pins:
        raise BundleError(f"{path} holds no 'name==version' line: give the output of `python3 -m pip freeze` there")
    return pins


def target_environment(python: str) -> dict[str, str]:
    env = default_environment()
    env.update(python_version=python, python_full_version=f"{python}.0", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", os_name="posix",
               implementation_name="cpython", platform_python_implementation="CPython")
    return env


def needed_packages(installed: Mapping[str, metadata.Distribution], target: Mapping[str, str],
                    python: str) -> dict[str, str]:
    """{name: pip requirement} the target lacks, walking requirements from vLLM (extras included).

    A package installed here is pinned to the version here. One that only the target's Python
    needs (vLLM wants ``six`` above 3.11) and this venv lacks is asked for by its requirement's
    own specifier, so pip picks the newest that fits.
    """
    env = target_environment(python)
    needed: dict[str, str] = {}
    queue: list[tuple[Requirement, frozenset[str]]] = [(Requirement(ROOT), frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        requirement, extras = queue.pop()
        name = canonical(requirement.name)
        if (name, extras) in seen or name in UNUSED or name in target:
            continue
        seen.add((name, extras))
        dist = installed.get(name)
        if dist is None:
            if name == ROOT:
                raise BundleError("vllm is not installed here: run this with .venv-v1/bin/python")
            needed[name] = f"{name}{requirement.specifier}"
            continue
        if name != ROOT:
            needed[name] = f"{name}=={dist.version}"
        for text in dist.requires or ():
            dependency = Requirement(text)
            if dependency.marker is not None and not any(
                    dependency.marker.evaluate({**env, "extra": extra}) for extra in (extras or {""})):
                continue
            queue.append((dependency, frozenset(dependency.extras)))
    return dict(sorted(needed.items()))


def installed_distributions() -> dict[str, metadata.Distribution]:
    return {canonical(d.metadata["Name"]): d for d in metadata.distributions()}


def download_wheels(packages: Mapping[str, str], python: str, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "-d", str(folder)]
    for platform in MANYLINUX:
        command += ["--platform", platform]
    command += list(packages.values())
    if subprocess.run(command).returncode != 0:
        raise BundleError("pip could not fetch every wheel (see its message above)")
    return sorted(folder.glob("*.whl"))


def copy_vllm(dist: metadata.Distribution, site: Path) -> int:
    """vLLM's installed files (package and dist-info) into ``site``, trimmed; returns bytes copied."""
    copied = 0
    for file in dist.files or ():
        relative = str(file)
        if relative.startswith("..") or "__pycache__" in relative or relative.startswith(TRIMMED):
            continue
        source = Path(dist.locate_file(file))
        if not source.is_file():
            continue
        target = site / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied += source.stat().st_size
    return copied


def split(archive: Path, out: Path, part_bytes: int, manifest: dict) -> list[Path]:
    """Cut the archive into ``out/part-N/bundle.tar.xz.N`` with a manifest beside each part."""
    parts = []
    whole = sha256(archive)
    with archive.open("rb") as f:
        for index in range(1, 10_000):
            chunk = f.read(part_bytes)
            if not chunk:
                break
            folder = out / f"part-{index}"
            folder.mkdir(parents=True)
            part = folder / f"{archive.name}.{index}"
            part.write_bytes(chunk)
            parts.append(part)
    for part in parts:
        info = dict(manifest, archive=archive.name, archive_sha256=whole, parts=len(parts),
                    part=part.name, part_sha256=sha256(part))
        (part.parent / MANIFEST).write_text(json.dumps(info, indent=1) + "\n")
    return parts


def build(target_freeze: Path, out: Path, python: str, part_mib: int) -> list[Path]:
    if metadata.version("vllm") != V1_PIN:
        raise BundleError(f"this interpreter has vllm {metadata.version('vllm')}, not the V1 pin {V1_PIN}: "
                          "run it with .venv-v1/bin/python")
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} is not empty: remove it or give another --out")
    target = read_freeze(target_freeze)
    installed = installed_distributions()
    packages = needed_packages(installed, target, python)
    with tempfile.TemporaryDirectory(prefix="vllm-cfs-bundle-") as tmp:
        staging = Path(tmp) / "bundle"
        wheels = download_wheels(packages, python, staging / "wheels")
        vllm_bytes = copy_vllm(installed[ROOT], staging / "vllm-site")
        shutil.copytree(codellama_34b_dir(), staging / "model", ignore=shutil.ignore_patterns("*.lock"))
        manifest = {"vllm": V1_PIN, "python": python, "target_freeze_sha256": sha256(target_freeze),
                    "packages": packages, "left_out": UNUSED, "trimmed": list(TRIMMED),
                    "wheels": [w.name for w in wheels], "vllm_bytes": vllm_bytes}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        archive = Path(tmp) / "bundle.tar.xz"
        print(f"packing {len(wheels)} wheels, vLLM ({vllm_bytes / 2**20:.0f} MiB unpacked) and the model folder",
              file=sys.stderr)
        with tarfile.open(archive, "w:xz", preset=6) as tar:
            tar.add(staging, arcname="bundle")
        out.mkdir(parents=True, exist_ok=True)
        return split(archive, out, part_mib << 20, {"vllm": V1_PIN, "python": python})


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bundle.py", description="Pack vLLM V1 (the pin), the packages a GPU host without network lacks, and "
        "the CodeLlama-34B model folder into checked parts (run with .venv-v1/bin/python).")
    parser.add_argument("--target-freeze", type=Path, required=True,
                        help="the output of `python3 -m pip freeze` on the GPU host (e.g. profiles/h200-pip-freeze.txt)")
    parser.add_argument("--out", type=Path, default=Path(".gpu-bundle"),
                        help="folder for part-1/, part-2/, ... (default: .gpu-bundle, git-ignored)")
    parser.add_argument("--python", default="3.12", help="the GPU host's Python, major.minor (default: 3.12)")
    parser.add_argument("--part-mib", type=int, default=50,
                        help="largest part in MiB (default: 50: a part and the working tree fit in one 64 MiB device call)")
    args = parser.parse_args(argv)
    if args.part_mib < 1 or not re.fullmatch(r"3\.\d+", args.python):
        parser.error("--part-mib must be >= 1 and --python like 3.12")
    try:
        parts = build(args.target_freeze, args.out, args.python, args.part_mib)
    except BundleError as error:
        print(f"bundle.py: error: {error}", file=sys.stderr)
        return 2
    for part in parts:
        print(f"{part} {part.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
