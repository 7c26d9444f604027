"""``vllm-cfs``: what ``serve`` adds to vLLM's command line, its GPU check, help and one-line errors.

The server it starts is tested in tests/sim/test_sim_hub_id.py; these tests start nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_cfs.cli import DEFAULT_SIM_GPU, SCHEDULER, gpu_usable, plan_serve

MODEL = "codellama/CodeLlama-34b-hf"
SCRIPT = Path(sys.executable).parent / "vllm-cfs"  # the console script of pyproject.toml
# Settings of the caller that would change what vllm-cfs decides.
CALLER_SETTINGS = ("VLLM_CFS_SIM_GPU", "VLLM_USE_V1", "CFS_INTERVAL", "CFS_MIN_GRANULARITY")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CALLER_SETTINGS}
    return {**env, **extra}


def no_gpu(environ) -> bool:
    return False


def has_gpu(environ) -> bool:
    return True


def added_options(plan) -> list[str]:
    """What vllm-cfs put after the user's arguments."""
    serve = plan.argv.index("serve")
    return plan.argv[serve + 1:]


def test_serve_adds_the_cfs_setup_and_the_simulated_gpu_when_no_gpu_is_usable():
    plan = plan_serve([MODEL, "-tp", "2"], clean_env(), gpu_check=no_gpu)

    assert plan.argv[:4] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    assert added_options(plan) == [MODEL, "-tp", "2", "--scheduler-cls", SCHEDULER, "--preemption-mode", "swap",
                                   "--swap-space", "16", "--host", "127.0.0.1"]
    assert (plan.env["VLLM_USE_V1"], plan.env["VLLM_CFS_SIM_GPU"]) == ("0", DEFAULT_SIM_GPU)
    assert f"no usable GPU here: serving on a SIMULATED {DEFAULT_SIM_GPU} (VLLM_CFS_SIM_GPU)" in plan.notes


def test_serve_on_a_gpu_host_adds_no_simulator():
    plan = plan_serve(["/models/llama", "-tp", "2"], clean_env(), gpu_check=has_gpu)

    assert "VLLM_CFS_SIM_GPU" not in plan.env
    assert not any("SIMULATED" in note for note in plan.notes)


def test_a_set_profile_is_kept_and_no_gpu_check_runs():
    def fail(environ):
        raise AssertionError("no GPU check when VLLM_CFS_SIM_GPU is set")

    plan = plan_serve([MODEL], clean_env(VLLM_CFS_SIM_GPU="h200"), gpu_check=fail)
    assert plan.env["VLLM_CFS_SIM_GPU"] == "h200"
    assert "VLLM_CFS_SIM_GPU is set: serving on a SIMULATED h200" in plan.notes


@pytest.mark.parametrize("given", [
    ["--swap-space", "4", "--host", "0.0.0.0", "--preemption-mode", "recompute", "--scheduler-cls", "x.Y"],
    ["--swap-space=4", "--host=0.0.0.0", "--preemption-mode=recompute", "--scheduler-cls=x.Y"],
    ["--swap_space", "4", "--host", "0.0.0.0", "--preemption_mode=recompute", "--scheduler_cls=x.Y"],
])
def test_options_the_user_gives_are_not_added_again(given):
    plan = plan_serve([MODEL, *given], clean_env(), gpu_check=no_gpu)
    assert added_options(plan) == [MODEL, *given]


def test_gpu_check(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert not gpu_usable()  # no nvidia-smi at all

    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    assert gpu_usable()
    assert not gpu_usable({"CUDA_VISIBLE_DEVICES": ""})
    assert not gpu_usable({"CUDA_VISIBLE_DEVICES": "-1"})

    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver'\nexit 9\n")
    assert not gpu_usable()
    smi.write_text("#!/bin/sh\nexit 0\n")  # runs, lists nothing
    assert not gpu_usable()


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=clean_env(**env), capture_output=True, text=True, timeout=60)


def test_help():
    top = run_cli("--help")
    assert top.returncode == 0 and top.stderr == ""
    assert "vllm-cfs serve MODEL" in top.stdout

    serve = run_cli("serve", "--help")
    assert serve.returncode == 0 and serve.stderr == ""
    for text in ("VLLM_USE_V1=0", f"--scheduler-cls {SCHEDULER}", "--preemption-mode swap", "--swap-space 16",
                 "--host 127.0.0.1", "CFS_INTERVAL", "CFS_MIN_GRANULARITY", "VLLM_CFS_SIM_GPU", "vllm serve --help",
                 f"SIMULATED {DEFAULT_SIM_GPU}", "nvidia-smi -L"):
        assert text in serve.stdout, text


@pytest.mark.parametrize("args, env, message", [
    ((), {}, "no command"),
    (("start", MODEL), {}, "unknown command 'start'"),
    (("serve",), {}, "MODEL is missing"),
    (("serve", "-tp", "2", MODEL), {}, "MODEL is missing (it comes first)"),
    (("serve", MODEL, "--model", MODEL), {}, "not with --model"),
    (("serve", "meta-llama/Llama-2-7b-hf"), {"VLLM_CFS_SIM_GPU": "a100-40gb"},
     "the simulated GPU cannot serve 'meta-llama/Llama-2-7b-hf'"),
    (("serve", MODEL), {"VLLM_CFS_SIM_GPU": "b300"}, "VLLM_CFS_SIM_GPU='b300' is not a GPU profile"),
    (("serve", MODEL, "--enable-chunked-prefill"), {}, "drop --enable-chunked-prefill"),
    (("serve", MODEL, "--num-scheduler-steps=8"), {}, "--num-scheduler-steps 8 is not supported with CFS"),
    (("serve", MODEL), {"CFS_INTERVAL": "ten"}, "CFS_INTERVAL='ten' is invalid"),
    (("serve", MODEL), {"VLLM_USE_V1": "1"}, "runs in vLLM's V0 engine"),
])
def test_bad_command_lines_get_one_line_and_exit_code_2(args, env, message):
    result = run_cli(*args, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vllm-cfs: error: ") and message in lines[0], result.stderr


@pytest.mark.parametrize("args, env", [
    ((MODEL, "--enable-chunked-prefill"), {"CFS_INTERVAL": "0"}),  # FCFS only: vLLM's business
    ((MODEL, "--enable-chunked-prefill", "--no-enable-chunked-prefill"), {}),
    ((MODEL, "--num-scheduler-steps", "8", "--scheduler-cls", "vllm.core.scheduler.Scheduler"), {}),
])
def test_what_cfs_does_not_refuse(args, env):
    assert plan_serve(args, clean_env(**env), gpu_check=no_gpu).argv


def test_engine_v0_is_taken_off_the_command_and_v1_is_refused_here():
    plan = plan_serve([MODEL, "--engine", "v0", "-tp", "2"], clean_env(), gpu_check=no_gpu, installed_engine="v0")
    assert "--engine" not in plan.argv and plan.env["VLLM_USE_V1"] == "0"
    with pytest.raises(Exception, match=r"--engine v1: the vLLM installed here runs v0; use the v1 venv, \.venv-v1"):
        plan_serve([MODEL, "--engine=v1"], clean_env(), gpu_check=no_gpu, installed_engine="v0")
    with pytest.raises(Exception, match="is not an engine"):
        plan_serve([MODEL, "--engine", "v2"], clean_env(), gpu_check=no_gpu, installed_engine="v0")
