"""``vllm-cfs serve`` where the V1 pin is installed: what it adds to vLLM's command line (starts nothing)."""

import os

import pytest

from vllm_cfs.cli import SCHEDULER, UsageError, plan_serve

MODEL = "codellama/CodeLlama-34b-hf"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_CFS_SIM_GPU", "VLLM_USE_V1", "CFS_INTERVAL")}
    return {**env, **extra}


def test_the_installed_engine_is_v1_and_serve_adds_the_v1_setup():
    plan = plan_serve([MODEL, "-tp", "2", "--engine", "v1"], clean_env(), gpu_check=lambda env: False)
    serve = plan.argv.index("serve")
    assert plan.argv[serve + 1:] == [MODEL, "-tp", "2", "--scheduler-cls", SCHEDULER, "--kv-offloading-backend",
                                     "native", "--kv-offloading-size", "16", "--host", "127.0.0.1"]
    assert "VLLM_USE_V1" not in plan.env  # V1 has no V0 to select
    assert plan.env["VLLM_CFS_SIM_GPU"] == "a100-40gb"
    assert any("SIMULATED" in note for note in plan.notes)


def test_chunked_prefill_is_fine_on_v1_and_v0_is_refused():
    plan = plan_serve([MODEL, "--enable-chunked-prefill"], clean_env(), gpu_check=lambda env: False)
    assert "--enable-chunked-prefill" in plan.argv
    with pytest.raises(UsageError, match=r"runs v1; use the v0 venv, \.venv"):
        plan_serve([MODEL, "--engine", "v0"], clean_env(), gpu_check=lambda env: False)


def test_the_users_own_offloading_size_wins():
    plan = plan_serve([MODEL, "--kv-offloading-size=4"], clean_env(), gpu_check=lambda env: False)
    assert plan.argv.count("--kv-offloading-size") == 0 and "--kv-offloading-size=4" in plan.argv
