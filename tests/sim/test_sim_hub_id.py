"""The hub id on the simulated GPU, as a new user types it: ``vllm-cfs serve codellama/CodeLlama-34b-hf
-tp 2`` on a machine without a GPU (one real server start), ``vllm serve`` with an id the simulator
does not ship (one line, exit code 2), and the pieces behind both (vllm_cfs.sim.model_redirect).

The servers run with an empty Hugging Face home, none of our offline switches (HF_HUB_OFFLINE,
VLLM_NO_USAGE_STATS...), and an audit hook in every Python process they start that logs each
attempt to reach a non-loopback address.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import signal
import subprocess
import sys

import psutil
import pytest

from vllm_cfs.analysis.kv_memory import GIB, kv_footprint
from vllm_cfs.analysis.server_log import read_server_log
from vllm_cfs.sim import model_redirect
from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME, codellama_34b_dir
from vllm_cfs.sim.server import free_port, running_server

UNKNOWN_ID = "meta-llama/Llama-2-7b-hf"
NETWORK_MARK = "network-probe:"
# Logs every attempt of a Python process to reach a non-loopback address (a DNS lookup or a connect).
NETWORK_PROBE = f'''
import os, sys
LOCAL = ("127.0.0.1", "::1", "localhost", "0.0.0.0", "", None)
def probe(event, args):
    if event == "socket.getaddrinfo" and args[0] not in LOCAL:
        sys.stderr.write(f"{NETWORK_MARK} pid {{os.getpid()}} looked up {{args[0]}}\\n")
    elif event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL:
        sys.stderr.write(f"{NETWORK_MARK} pid {{os.getpid()}} connected to {{args[1]}}\\n")
sys.addaudithook(probe)
'''
# Whatever in the caller's environment would help the id resolve or keep vLLM offline.
HELPERS = ("VLLM_CFS_SIM_GPU", "VLLM_USE_V1", "CFS_INTERVAL", "CFS_MIN_GRANULARITY", "VLLM_MODEL_REDIRECT_PATH",
           "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK", "VLLM_DO_NOT_TRACK",
           "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "PYTHONPATH")


@pytest.fixture(scope="module")
def user_env(tmp_path_factory):
    """A new user's environment: no GPU (nvidia-smi fails), an unused Hugging Face home."""
    root = tmp_path_factory.mktemp("user")
    (root / "bin").mkdir()
    (root / "bin" / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (root / "bin" / "nvidia-smi").chmod(0o755)
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(NETWORK_PROBE)
    env = {k: v for k, v in os.environ.items() if k not in HELPERS}
    env.update({
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(root / "site"),
        "HF_HOME": str(root / "hf-home"),
        "HF_HUB_CACHE": str(root / "hf-home" / "hub"),
        "PYTHONUNBUFFERED": "1",
    })
    return root, env


@pytest.fixture(scope="module")
def refused(user_env):
    """``vllm serve`` of an id the simulator does not ship, started first so that its ~20 s of
    imports overlap the server start below; the test collects it."""
    root, env = user_env
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", UNKNOWN_ID, "--tensor-parallel-size", "2"],
        env={**env, "VLLM_USE_V1": "0", "VLLM_CFS_SIM_GPU": "a100-40gb"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    yield proc
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


@pytest.fixture(scope="module")
def server(user_env, refused):
    root, env = user_env
    codellama_34b_dir()  # built before the start-up clock runs (first use only)
    port = free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "vllm-cfs"), "serve", SERVED_MODEL_NAME,
               "-tp", "2", "--port", str(port)]
    # A generous bound: on 2 shared cores the start takes 30 s to a few minutes.
    with running_server(command, env, port, root / "server.log", SERVED_MODEL_NAME, startup_timeout_s=400) as running:
        yield running


def test_models_lists_the_hub_id_and_it_completes(server):
    import openai

    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == [SERVED_MODEL_NAME]
    completion = client.completions.create(model=SERVED_MODEL_NAME, prompt="def quicksort(items):", max_tokens=8,
                                           extra_body={"ignore_eos": True})
    assert completion.usage.completion_tokens == 8
    assert completion.choices[0].finish_reason == "length"


def test_the_id_resolved_to_the_shipped_folder_without_the_hub(server, user_env):
    root, _ = user_env
    text = server.log_text()
    redirect = re.search(r"model redirect: \[ (\S+) \] -> \[ (\S+) \]", text)
    assert redirect and redirect.groups() == (SERVED_MODEL_NAME, str(codellama_34b_dir()))
    assert read_server_log(server.log_path).engine.model == str(codellama_34b_dir())
    assert NETWORK_MARK not in text  # no hub, no usage stats: no address but loopback
    assert not (root / "hf-home").exists()


def test_vllm_cfs_added_the_cfs_setup_and_the_simulated_gpu(server):
    text = server.log_text()
    assert "vllm-cfs: no usable GPU here: serving on a SIMULATED a100-40gb (VLLM_CFS_SIM_GPU)" in text
    args = ast.literal_eval(re.search(r"non-default args: (\{.*\})", text).group(1))
    assert {k: args.get(k) for k in ("host", "port", "tensor_parallel_size", "scheduler_cls", "preemption_mode",
                                     "swap_space")} == {
        "host": "127.0.0.1", "port": server.port, "tensor_parallel_size": 2, "scheduler_cls": "vllm_cfs.CFSScheduler",
        "preemption_mode": "swap", "swap_space": 16.0}
    assert "CFS scheduler: a CFS step every 10 scheduling steps" in text

    log = read_server_log(server.log_path)
    assert (log.simulated.profile, log.simulated.tensor_parallel_size) == ("a100-40gb", 2)
    config = json.loads((codellama_34b_dir() / "config.json").read_text())
    footprint = kv_footprint(config, 2, log.engine.dtype)
    assert log.blocks.cpu_blocks == 16 * GIB // footprint.block_bytes  # 16 GiB of swap space per GPU


def test_it_listens_on_loopback_only_in_the_process_it_started_as(server):
    # vllm-cfs replaced itself with vllm serve: the process we started is the API server.
    listening = {c.laddr for c in psutil.Process(server.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", server.port)}
    assert f"Starting vLLM API server on http://127.0.0.1:{server.port}" in server.log_text()


def test_vllm_serve_refuses_an_id_the_simulator_does_not_ship_in_one_line(refused, user_env):
    root, _ = user_env
    stdout, stderr = refused.communicate(timeout=300)
    assert refused.returncode == 2
    assert "Traceback" not in stdout + stderr
    assert NETWORK_MARK not in stderr
    assert stderr.splitlines()[-1] == (
        f"error: the simulated GPU cannot serve '{UNKNOWN_ID}': it is not a local model folder, and the hub ids "
        f"the simulator ships (offline, no weights) are: {SERVED_MODEL_NAME}")
    assert not (root / "hf-home").exists()


def serve_parser() -> argparse.ArgumentParser:
    """The model arguments of vLLM's serve parser, with their defaults."""
    parser = argparse.ArgumentParser()
    parser.add_argument("model_tag", nargs="?")
    parser.add_argument("--model", default="facebook/opt-125m")
    parser.add_argument("--tokenizer")
    parser.add_argument("--port", type=int)
    model_redirect.guard_model_arguments(parser)
    return parser


def test_the_guard_passes_shipped_ids_and_folders(tmp_path, monkeypatch):
    monkeypatch.delenv(model_redirect.REDIRECT_ENV, raising=False)
    args = serve_parser().parse_args([SERVED_MODEL_NAME, "--tokenizer", str(tmp_path), "--port", "8000"])
    assert (args.model_tag, args.model, args.tokenizer, args.port) == (
        SERVED_MODEL_NAME, "facebook/opt-125m", str(tmp_path), 8000)


@pytest.mark.parametrize("argv", [[UNKNOWN_ID], [SERVED_MODEL_NAME, "--tokenizer", UNKNOWN_ID], ["/no/such/folder"]])
def test_the_guard_refuses_the_rest(argv, monkeypatch, capsys):
    monkeypatch.delenv(model_redirect.REDIRECT_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        serve_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: the simulated GPU cannot serve ")


def test_install_merges_the_users_redirects_and_theirs_win(tmp_path, monkeypatch):
    import vllm.transformers_utils.utils as hf_utils

    shipped, users_folder, mine = tmp_path / "shipped", tmp_path / "users", tmp_path / "mine"
    user_file = tmp_path / "redirects.txt"  # vLLM's other format: "id folder" lines
    user_file.write_text(f"{SERVED_MODEL_NAME} {users_folder}\nmy-org/my-model {mine}\n")
    other = "test-org/only-in-this-test"
    monkeypatch.setattr(model_redirect, "SHIPPED_MODELS", {SERVED_MODEL_NAME: lambda: shipped, other: lambda: shipped})
    monkeypatch.setenv("VLLM_CFS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(model_redirect.REDIRECT_ENV, str(user_file))  # restored after the test, as is:
    monkeypatch.setattr(hf_utils, "VLLM_MODEL_REDIRECT_PATH", str(user_file))

    path = model_redirect.install()

    assert os.environ[model_redirect.REDIRECT_ENV] == hf_utils.VLLM_MODEL_REDIRECT_PATH == str(path)
    assert path.parent == tmp_path / "cache"
    assert json.loads(path.read_text()) == {SERVED_MODEL_NAME: str(users_folder), "my-org/my-model": str(mine),
                                            other: str(shipped)}
    assert hf_utils.maybe_model_redirect(other) == str(shipped)  # vLLM reads it (and caches the answer)
    assert model_redirect.install() == path  # again, as in the engine process: the same file
