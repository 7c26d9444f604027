"""GPU profiles: the shipped ones, user files in the agreed format, and clear errors."""

import json
import os
import subprocess
import sys

import pytest

from vllm_cfs.sim.plugin import activate
from vllm_cfs.sim.profile import PROFILE_ENV, GPUProfile, ProfileError, load_profile, shipped_profile_names


def test_shipped_profiles_load_with_datasheet_numbers():
    assert shipped_profile_names() == ["a100-40gb", "a100-80gb", "h100-80gb", "h200", "h200-vllm-v1"]
    a100 = load_profile("a100-40gb")
    # Memory as CUDA reports an A100-SXM4-40GB (PyTorch: "39.59 GiB total capacity").
    assert (a100.memory_bytes, a100.hbm_bytes_per_s, a100.peak_flops) == (42_505_273_344, 1.555e12, 312e12)
    assert load_profile("h100-80gb").peak_flops == 989e12
    assert load_profile("h200").hbm_bytes_per_s == 4.8e12
    # the H200 fitted to vLLM V1 on a real H200 (docs/real-gpu.md): same chip, measured efficiencies
    fitted = load_profile("h200-vllm-v1")
    assert (fitted.hbm_bytes_per_s, fitted.peak_flops) == (4.8e12, 989e12)
    assert (fitted.decode_bandwidth_efficiency, fitted.prefill_flops_efficiency, fitted.step_overhead_s) == (
        0.85, 0.67, 0.001)


def test_profile_file_with_extra_keys(tmp_path):
    data = json.loads(json.dumps(load_profile("a100-40gb").__dict__))
    data.update(name="measured", source="measured on a test", measured={"points": [1, 2]}, step_overhead_s=0.001)
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    profile = load_profile(str(path))
    assert isinstance(profile, GPUProfile)
    assert (profile.name, profile.step_overhead_s) == ("measured", 0.001)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hbm_bytes_per_s": None}, "lacks the key 'hbm_bytes_per_s'"),
        ({"peak_flops": "fast"}, "peak_flops must be a finite number"),
        ({"decode_bandwidth_efficiency": 1.5}, "is a fraction"),
        ({"memory_bytes": 0}, "memory_bytes must be > 0"),
    ],
)
def test_bad_profile_files(tmp_path, change, message):
    data = dict(load_profile("a100-40gb").__dict__)
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=message):
        load_profile(str(path))


def test_unknown_profile_name_lists_the_choices():
    with pytest.raises(ProfileError, match="a100-40gb, a100-80gb, h100-80gb, h200"):
        load_profile("a100")


def test_plugin_inactive_without_the_variable(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv("VLLM_NO_USAGE_STATS", raising=False)
    assert activate() is None  # so vLLM calls none of the platform's hooks: no model redirect either
    assert "VLLM_NO_USAGE_STATS" not in os.environ
    monkeypatch.setenv(PROFILE_ENV, "h200")
    assert activate() == "vllm_cfs.sim.platform.SimulatedGPUPlatform"
    assert os.environ["VLLM_NO_USAGE_STATS"] == "1"  # a simulated run reports no usage to vLLM


def test_bad_profile_stops_vllm_with_one_line(tmp_path):
    # vLLM swallows plugin exceptions; ours must still stop the process with one clear line.
    run = subprocess.run(
        [sys.executable, "-c", "from vllm.platforms import current_platform; current_platform.device_type"],
        env={"PATH": "/usr/bin:/bin", PROFILE_ENV: "tpu-v9", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: VLLM_CFS_SIM_GPU='tpu-v9' is not a GPU profile")
    assert "Traceback" not in run.stderr
