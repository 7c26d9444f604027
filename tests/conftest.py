"""How `make test` spreads the suite over the machine's cores (pytest-xdist, `-n auto`).

Most of the suite's time is vLLM servers starting and simulated bursts running in real time, so
two workers overlap one module's server start with another's burst. A worker runs whole work
units, so that no fixture runs twice: each module is one (its module-scoped servers start once),
and a folder whose conftest has a session fixture that several modules use is one (hw2's sweep,
bench's server). xdist's own `--dist loadgroup` would do this with marks, but its group names
do not reach the scheduler under pytest 9.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

# Two engines, two venvs: `.venv` holds vLLM 0.9.0 (V0) and runs every folder but tests/v1,
# `.venv-v1` holds the V1 pin and runs tests/v1 alone. Each collects what its vLLM can import.
try:
    _VLLM = version("vllm")
except PackageNotFoundError:
    _VLLM = ""
V0_VLLM = "0.9.0"
if _VLLM == V0_VLLM:
    collect_ignore = ["v1"]
else:
    collect_ignore = [p.name for p in Path(__file__).parent.iterdir() if p.is_dir() and p.name != "v1"]

# Folders whose conftest holds a session fixture that more than one module uses.
SHARED_SESSION_FIXTURES = {"hw2", "bench"}


def work_unit(nodeid: str) -> str:
    """tests/hw2/test_sweep.py::test_x -> tests/hw2; tests/sim/test_sim_server.py::test_y -> the module."""
    module = nodeid.split("::", 1)[0]
    folder = module.rsplit("/", 1)[0]
    return folder if folder.rsplit("/", 1)[-1] in SHARED_SESSION_FIXTURES else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class FixtureScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return FixtureScopeScheduling(config, log)
