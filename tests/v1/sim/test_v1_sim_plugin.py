"""The platform entry point picks the engine's platform from the installed vLLM, without importing vLLM."""

import os
import subprocess
import sys

from vllm_cfs.sim.plugin import V0_PLATFORM, V1_PLATFORM, activate, platform_for
from vllm_cfs.sim.profile import PROFILE_ENV


def test_the_v0_series_gets_the_v0_platform():
    assert platform_for("0.9.0") == platform_for("0.9.2") == V0_PLATFORM == "vllm_cfs.sim.platform.SimulatedGPUPlatform"
    assert platform_for("0.24.0") == V1_PLATFORM == "vllm_cfs.sim.v1.platform.SimulatedGPUPlatform"


def test_inactive_without_the_variable_and_v1_here(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert activate() is None
    monkeypatch.setenv(PROFILE_ENV, "a100-40gb")
    assert activate() == V1_PLATFORM  # this venv holds the V1 pin


def test_choosing_imports_no_vllm():
    code = "import sys; from vllm_cfs.sim.plugin import activate; activate(); print('vllm' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, PROFILE_ENV: "h200"},
                         capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False"


def test_bad_profile_stops_vllm_with_one_line(tmp_path):
    # vLLM swallows plugin exceptions; ours must still stop the process with one clear line.
    run = subprocess.run(
        [sys.executable, "-c", "from vllm.platforms import current_platform; current_platform.device_type"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), PROFILE_ENV: "tpu-v9", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: VLLM_CFS_SIM_GPU='tpu-v9' is not a GPU profile")
    assert "Traceback" not in run.stderr
