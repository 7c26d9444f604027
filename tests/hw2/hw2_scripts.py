"""Running the hw2 scripts from tests, and checking that no server they started lives on."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HW2 = REPO / "hw2"
# 20 prompts of 1500 tokens overfill the simulated GPUs' KV cache (10 fit): requests wait under
# FCFS and CFS has something to preempt. Two waves of 10 keep each burst busy for over 10 s of
# modelled time, so vLLM's stats line (every 5 s, at a phase no test chooses) samples each burst at
# least twice; what those samples catch is timing, and the tests check the answers either way.
BURST_ENV = {"NUM_PROMPTS": "20", "REQUEST_RATE": "inf", "SEED": "3"}
BURST_ARGS = ["--dataset-name", "random", "--random-input-len", "1500", "--random-output-len", "100"]


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    # In a session of its own: a script that signals the wrong process group stops itself, not pytest.
    return subprocess.run(["bash", *args], cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True)


def run_scripts_together(*commands: list[str], env: dict[str, str] | None = None,
                         timeout: float = 1200) -> list[subprocess.CompletedProcess]:
    """run_script for several scripts at once (each a list of arguments); results in their order.
    Their servers mostly wait on modelled GPU time, so overlapping them saves wall time."""
    running = [(args, subprocess.Popen(["bash", *args], cwd=REPO, env={**os.environ, **(env or {})},
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       start_new_session=True))
               for args in commands]
    done = []
    for args, process in running:
        stdout, stderr = process.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(["bash", *args], process.returncode, stdout, stderr))
    return done


def distinct_free_ports(n: int) -> list[int]:
    """n ports free now and different from each other (all held open while they are picked)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def server_groups(stderr: str) -> list[int]:
    """The process groups sweep.sh says it started servers in."""
    return [int(g) for g in re.findall(r"process group (\d+)\)", stderr)]


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False
