"""``vllm-cfs serve MODEL [vllm serve options]``: vLLM's own ``vllm serve``, set up for the CFS scheduler.

The engine is the one the installed vLLM runs (``--engine v0|v1`` says which is expected, and is
refused in one line where the other is installed). It adds what the CFS scheduler needs unless the
command line already says it (``--opt VALUE``, ``--opt=VALUE``, with dashes or underscores): on V0
VLLM_USE_V1=0, ``--scheduler-cls vllm_cfs.CFSScheduler``, ``--preemption-mode swap``,
``--swap-space 16``; on V1 ``--scheduler-cls vllm_cfs.CFSScheduler`` and vLLM's CPU offloading
(``--kv-offloading-backend native --kv-offloading-size 16``: V1 preempts by recompute only, and
offloading spares a victim its recompute); on both ``--host 127.0.0.1``; and, when no GPU is usable here, the simulated GPU
(VLLM_CFS_SIM_GPU=a100-40gb), said on stderr. Then it replaces itself (exec) with ``python -m vllm.entrypoints.cli.main serve
...`` in this interpreter: vLLM parses every argument itself, the server keeps this process's id
(signals, process groups and exit codes reach vLLM directly, nothing of ours stays around), and
the environment is set before vLLM is imported (some of its settings are read at import).

Usable GPU: ``nvidia-smi -L`` runs and lists a GPU, and CUDA_VISIBLE_DEVICES does not hide them
all ("" or "-1"). It needs no CUDA import (seconds on a small machine) and is what the hw2 scripts
check. Mistakes found before vLLM starts (no command, an unknown one, no MODEL, a model the
simulator does not ship, CFS with chunked prefill or multi-step scheduling, a bad CFS_INTERVAL)
end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from typing import Callable, Mapping, Optional, Sequence

from vllm_cfs.settings import CFSConfigError, read_cfs_interval, read_min_granularity
from vllm_cfs.sim.model_dir import UnknownModelError, check_servable
from vllm_cfs.sim.profile import PROFILE_ENV, ProfileError, load_profile, shipped_profile_names

PROG = "vllm-cfs"
SCHEDULER = "vllm_cfs.CFSScheduler"
DEFAULT_SIM_GPU = "a100-40gb"
ENGINES = ("v0", "v1")
# (option, value) added to `vllm serve` unless the command line gives the option, per engine.
DEFAULT_OPTIONS = {
    "v0": (
        ("--scheduler-cls", SCHEDULER),
        ("--preemption-mode", "swap"),
        ("--swap-space", "16"),  # GiB of CPU memory per GPU, as in the assignment
        ("--host", "127.0.0.1"),
    ),
    "v1": (
        ("--scheduler-cls", SCHEDULER),
        # A V1 victim's resume loads its KV from host memory instead of recomputing it (docs/v1.md:
        # a recompute tax of 36% without, 1% with, on the reference burst)
        ("--kv-offloading-backend", "native"),
        ("--kv-offloading-size", "16"),  # GiB, as V0's swap space
        ("--host", "127.0.0.1"),
    ),
}
VENV_OF_ENGINE = {"v0": ".venv (make venv)", "v1": ".venv-v1 (make venv-v1)"}

HELP = f"""usage: {PROG} serve MODEL [--engine v0|v1] [vllm serve options]

Serve a model with the CFS scheduler (vllm_cfs.CFSScheduler) on the vLLM installed here: vLLM
0.9.0's V0 engine (.venv) or the V1 pin's V1 engine (.venv-v1).

commands:
  serve MODEL [...]   vLLM's OpenAI-compatible server with the CFS setup ({PROG} serve --help)

options:
  -h, --help          this text
"""

SERVE_HELP = f"""usage: {PROG} serve MODEL [--engine v0|v1] [vllm serve options]

Runs vLLM's own `vllm serve MODEL ...` (it replaces this process) with these additions, each
only when the command line does not give that option itself (as --opt VALUE or --opt=VALUE).

On vLLM 0.9.0 (V0, the assignment's engine; .venv):
  VLLM_USE_V1=0                          vLLM's V0 engine, the one this scheduler extends
  --scheduler-cls {SCHEDULER}   the CFS scheduler
  --preemption-mode swap                 preempted requests keep their KV cache in CPU memory
  --swap-space 16                        GiB of CPU swap space per GPU
On the V1 pin (vLLM V1, .venv-v1; preemption is recompute only there):
  --scheduler-cls {SCHEDULER}   the CFS scheduler, vllm_cfs.v1's
  --kv-offloading-backend native         a preempted request's KV stays in CPU memory (vLLM's
  --kv-offloading-size 16                offloading, GiB): it resumes without recomputing
On both:
  --host 127.0.0.1                       local clients only (--host 0.0.0.0: every interface)

--engine v0|v1   the engine you expect; refused in one line if the vLLM installed here runs the
                 other (default: whichever is installed)

GPU: when no GPU is usable (`nvidia-smi -L` fails or lists none, or CUDA_VISIBLE_DEVICES is ""
or "-1"), it serves on a SIMULATED {DEFAULT_SIM_GPU} and says so on stderr: vLLM's real engine,
scheduler and server, with the GPU's time and memory modeled and no weights. There MODEL is a
local model folder or a hub id the simulator ships (codellama/CodeLlama-34b-hf); nothing is
downloaded.

MODEL: a hub id or a local folder, as for `vllm serve` (first, before any option).

Environment:
  CFS_INTERVAL         a CFS step every N scheduling steps; 0 = vLLM's default FCFS (default 10)
  CFS_MIN_GRANULARITY  tokens a running request must be ahead of a swapped one before it yields
                       its GPU blocks (default: the interval)
  VLLM_CFS_SIM_GPU     serve on a simulated GPU even where GPUs are usable: a profile name
                       ({", ".join(shipped_profile_names())}) or a profile JSON file

Every other argument is vLLM's and goes to it unchanged: see `vllm serve --help`.

Examples:
  {PROG} serve codellama/CodeLlama-34b-hf -tp 2
  CFS_INTERVAL=0 {PROG} serve /models/CodeLlama-34b-hf -tp 2 --port 8001

The same without {PROG}:
  VLLM_USE_V1=0 vllm serve MODEL --scheduler-cls {SCHEDULER} --preemption-mode swap --swap-space 16
"""


class UsageError(Exception):
    """A command line that cannot work; the message is one line meant for the user."""

    def __init__(self, message: str, help_command: str = f"{PROG} serve --help") -> None:
        super().__init__(message)
        self.help_command = help_command


@dataclasses.dataclass(frozen=True)
class ServePlan:
    argv: list[str]  # the command to exec
    env: dict[str, str]
    notes: list[str]  # lines for stderr before it runs


def gpu_usable(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a real NVIDIA GPU can be used here (see the module docstring)."""
    if environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and any(line.startswith("GPU ") for line in listed.stdout.splitlines())


def _option_name(arg: str) -> Optional[str]:
    """``--swap_space=8`` -> ``--swap-space``; None for anything that is not a long option."""
    if not arg.startswith("--") or arg == "--":
        return None
    return "--" + arg[2:].split("=", 1)[0].replace("_", "-")


def _option_value(args: Sequence[str], name: str) -> Optional[str]:
    """The value of the last ``name VALUE`` or ``name=VALUE`` in args, else None."""
    value = None
    for i, arg in enumerate(args):
        if _option_name(arg) == name:
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(args):
                value = args[i + 1]
    return value


def _check_cfs_setup(args: Sequence[str], environ: Mapping[str, str], engine: str) -> None:
    if _option_value(args, "--scheduler-cls") not in (None, SCHEDULER, "vllm_cfs.v0.scheduler.CFSScheduler",
                                                       "vllm_cfs.v1.CFSScheduler", "vllm_cfs.v1.scheduler.CFSScheduler"):
        return  # another scheduler: its business
    try:
        interval = read_cfs_interval(environ)
        read_min_granularity(interval, environ)
    except CFSConfigError as exc:
        raise UsageError(str(exc)) from None
    if interval == 0 or engine == "v1":
        return  # V1 chunks every prefill and runs one step at a time whatever the policy
    flags = [name for name in map(_option_name, args) if name in ("--enable-chunked-prefill", "--no-enable-chunked-prefill")]
    if flags and flags[-1] == "--enable-chunked-prefill":
        raise UsageError("CFS scheduling needs whole-prompt prefills: drop --enable-chunked-prefill (or set CFS_INTERVAL=0)")
    steps = _option_value(args, "--num-scheduler-steps")
    if steps is not None and steps.strip() not in ("1", ""):
        raise UsageError(f"CFS_INTERVAL counts single scheduling steps: --num-scheduler-steps {steps} "
                         "is not supported with CFS (or set CFS_INTERVAL=0)")


def _take_engine(args: list[str], installed: str) -> str:
    """Removes ``--engine X`` / ``--engine=X`` (ours, not vLLM's) from args; the engine to serve on."""
    wanted = _option_value(args, "--engine")
    for i in reversed(range(len(args))):
        if _option_name(args[i]) == "--engine":
            del args[i:i + (1 if "=" in args[i] else 2)]
    if wanted is None:
        return installed
    if wanted not in ENGINES:
        raise UsageError(f"--engine {wanted!r} is not an engine: use v0 (vLLM 0.9.0) or v1 (the V1 pin)")
    if wanted != installed:
        raise UsageError(f"--engine {wanted}: the vLLM installed here runs {installed}; "
                         f"use the {wanted} venv, {VENV_OF_ENGINE[wanted]}")
    return wanted


def plan_serve(args: Sequence[str], environ: Mapping[str, str] = os.environ,
               gpu_check: Callable[[Mapping[str, str]], bool] = gpu_usable,
               installed_engine: Optional[str] = None) -> ServePlan:
    """What ``vllm-cfs serve ARGS`` runs: the command, its environment, the lines to say first."""
    args = list(args)
    if installed_engine is None:
        from vllm_cfs import engine as installed_engine_of

        installed_engine = installed_engine_of()
    engine = _take_engine(args, installed_engine)
    if "--model" in map(_option_name, args):
        raise UsageError("give the model as MODEL (vllm-cfs serve MODEL ...), not with --model")
    has_config = "--config" in map(_option_name, args)
    if not args or (args[0].startswith("-") and not has_config):
        raise UsageError("MODEL is missing (it comes first): vllm-cfs serve MODEL [vllm serve options]")
    model = None if args[0].startswith("-") else args[0]
    if engine == "v0" and environ.get("VLLM_USE_V1", "0").strip() not in ("0", ""):
        raise UsageError(f"the CFS scheduler on vLLM 0.9.0 runs in vLLM's V0 engine, but VLLM_USE_V1={environ['VLLM_USE_V1']}: "
                         "unset it or set it to 0 (the V1 policies need the V1 pin: .venv-v1)")
    _check_cfs_setup(args, environ, engine)

    env = dict(environ)
    if engine == "v0":
        env["VLLM_USE_V1"] = "0"
    notes = []
    if environ.get(PROFILE_ENV):
        notes.append(f"{PROFILE_ENV} is set: serving on a SIMULATED {environ[PROFILE_ENV]}")
    elif gpu_check(environ):
        notes.append("serving on this machine's GPUs (nvidia-smi -L lists them)")
    else:
        env[PROFILE_ENV] = DEFAULT_SIM_GPU
        notes.append(f"no usable GPU here: serving on a SIMULATED {DEFAULT_SIM_GPU} ({PROFILE_ENV})")
    if env.get(PROFILE_ENV):
        try:
            load_profile(env[PROFILE_ENV])
            if model is not None:
                check_servable(model)
        except (ProfileError, UnknownModelError) as exc:
            raise UsageError(str(exc)) from None

    given = {_option_name(arg) for arg in args}
    added = [item for option, value in DEFAULT_OPTIONS[engine] if option not in given for item in (option, value)]
    argv = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", *args, *added]
    shown_env = " ".join(f"{name}={shlex.quote(env[name])}" for name in ("VLLM_USE_V1", PROFILE_ENV) if env.get(name))
    notes.append(f"running: {shown_env} vllm serve {shlex.join([*args, *added])}")
    return ServePlan(argv, env, notes)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args:
            raise UsageError(f"no command: {PROG} serve MODEL [vllm serve options]", f"{PROG} --help")
        if args[0] in ("-h", "--help"):
            print(HELP, end="")
            return 0
        if args[0] != "serve":
            raise UsageError(f"unknown command {args[0]!r}: the command is serve ({PROG} serve MODEL ...)",
                             f"{PROG} --help")
        if any(arg in ("-h", "--help") for arg in args[1:]):
            print(SERVE_HELP, end="")
            return 0
        plan = plan_serve(args[1:])
    except UsageError as exc:
        print(f"{PROG}: error: {exc} (see {exc.help_command})", file=sys.stderr)
        return 2
    for note in plan.notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os.execve(plan.argv[0], plan.argv, plan.env)
    return 1  # not reached: execve returns only by raising


if __name__ == "__main__":
    sys.exit(main())
