"""Write ``env.txt``: what an experiment ran on and with, as ``key: value`` lines.

The analysis reads it back (``read_env``) for the report's setup section, so a results folder
says by itself whether its GPU was real or simulated, which versions ran and with what settings.

    python -m vllm_cfs.experiment.environment --gpu "simulated GPU (a100-40gb x2)" \\
        --setting intervals="0 5 10 20 40" --setting runs=3 > results_3.2/env.txt
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES = ("vllm", "torch", "transformers", "vllm-cfs")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def environment(gpu: str, settings: dict[str, str]) -> dict[str, str]:
    repo = Path(__file__).resolve().parents[2]
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "gpu": gpu,
        "host": platform.node(),
        "os": platform.platform(),
        "cpu_cores": str(os.cpu_count()),
        "python": platform.python_version(),
    }
    env.update({package: _version(package) for package in PACKAGES})
    env["vllm_cfs_commit"] = _git_commit(repo)
    env.update(settings)
    return env


def format_env(env: dict[str, str]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in env.items())


def read_env(path: Path | str) -> dict[str, str]:
    """``env.txt`` back as a dict; lines without ``: `` are skipped."""
    env = {}
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            env[key.strip()] = value.strip()
    return env


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vllm_cfs.experiment.environment",
                                     description="Print env.txt: date, host, versions, GPU and the experiment's settings.")
    parser.add_argument("--gpu", required=True, help='what the server runs on, e.g. "simulated GPU (a100-40gb x2)"')
    parser.add_argument("--setting", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                        help="a setting to record (repeatable)")
    args = parser.parse_args(argv)
    sys.stdout.write(format_env(environment(args.gpu, dict(args.setting))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
