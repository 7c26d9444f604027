"""Start and stop ``vllm serve`` on the simulated GPU: for tests, experiments and benchmarks.

    with simulated_server(ServerOptions(log_path="vllm_server.log")) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="none")

It serves CodeLlama-34B by its hub id, as a user would; on the simulated GPU vLLM resolves the id
to the simulator's local folder (vllm_cfs.sim.model_redirect).

The server runs in its own process group, which is killed on exit whatever happened, so no
vLLM process (API server or engine) outlives the block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from vllm_cfs.sim.clock import CLOCK_ENV
from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME, local_model_dir
from vllm_cfs.sim.profile import PROFILE_ENV


class ServerStartError(RuntimeError):
    """vllm serve exited or did not become healthy in time; the message ends with its log's tail."""


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    profile: str = "a100-40gb"
    tensor_parallel_size: int = 2
    preemption_mode: str = "swap"
    swap_space_gib: float = 16
    gpu_memory_utilization: float = 0.9
    scheduler_cls: Optional[str] = None  # e.g. "vllm_cfs.CFSScheduler"
    cfs_interval: Optional[int] = None  # CFS_INTERVAL for the server's environment
    # A hub id the simulator ships (vLLM resolves it to the local folder) or a model folder.
    model: str = SERVED_MODEL_NAME
    served_model_name: str = SERVED_MODEL_NAME  # passed to vLLM when it differs from the model
    clock: str = "real"
    extra_args: Sequence[str] = ()
    log_path: Optional[Path] = None  # default: a temporary file
    # A hang guard, not a speed target: on a busy 2-core machine a start can take minutes.
    startup_timeout_s: float = 600.0


@dataclasses.dataclass(frozen=True)
class RunningServer:
    base_url: str  # http://127.0.0.1:PORT
    port: int
    pid: int
    log_path: Path
    startup_s: float  # from launch to the first healthy /health
    served_model_name: str

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(options: ServerOptions, port: int) -> list[str]:
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", options.model,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--tensor-parallel-size", str(options.tensor_parallel_size),
        "--preemption-mode", options.preemption_mode,
        "--swap-space", str(options.swap_space_gib),
        "--gpu-memory-utilization", str(options.gpu_memory_utilization),
    ]
    if options.served_model_name != options.model:
        cmd += ["--served-model-name", options.served_model_name]
    if options.scheduler_cls:
        cmd += ["--scheduler-cls", options.scheduler_cls]
    return cmd + list(options.extra_args)


def server_env(options: ServerOptions) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VLLM_USE_V1": "0",
        PROFILE_ENV: options.profile,
        CLOCK_ENV: options.clock,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    if options.cfs_interval is not None:
        env["CFS_INTERVAL"] = str(options.cfs_interval)
    return env


@contextlib.contextmanager
def simulated_server(options: ServerOptions = ServerOptions()) -> Iterator[RunningServer]:
    local_model_dir(options.model)  # a shipped folder's first build, before the start-up clock runs
    port = free_port()
    log_path = Path(options.log_path) if options.log_path else Path(tempfile.mkstemp(prefix="vllm-sim-", suffix=".log")[1])
    with running_server(serve_command(options, port), server_env(options), port, log_path,
                        options.served_model_name, options.startup_timeout_s) as server:
        yield server


@contextlib.contextmanager
def running_server(command: Sequence[str], env: Mapping[str, str], port: int, log_path: Path,
                   served_model_name: str, startup_timeout_s: float = 600.0) -> Iterator[RunningServer]:
    """Run a server command that listens on 127.0.0.1:port (``vllm serve ...``, ``vllm-cfs serve
    ...``), its output appended to log_path, until /health answers; stop it on exit."""
    with open(log_path, "ab") as log:
        start = time.monotonic()
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: we can kill the engine process too
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, base_url, log_path, startup_timeout_s)
        yield RunningServer(base_url, port, proc.pid, log_path, time.monotonic() - start, served_model_name)
    finally:
        _stop(proc)


def _wait_healthy(proc: subprocess.Popen, base_url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"vllm serve exited with code {proc.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise ServerStartError(f"vllm serve was not healthy after {timeout_s:.0f} s:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the API server (it stops its engine process), then SIGKILL whatever is left of its group."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    # The engine process may outlive the API server: kill the whole group regardless.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
