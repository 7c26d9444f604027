"""The calibration scripts live in benchmarks/ (not a package): load them by path."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module   # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def calib():
    return _load("calibrate_gpu")


@pytest.fixture(scope="session")
def report():
    return _load("calibration_report")


@pytest.fixture(scope="session")
def dry_run(calib, tmp_path_factory):
    """One real CPU dry run of calibrate_gpu.py: its folder holds raw.json, profile.json, table.md."""
    out = tmp_path_factory.mktemp("dry_run")
    assert calib.main(["--dry-run", "--out", str(out)]) == 0
    return out
