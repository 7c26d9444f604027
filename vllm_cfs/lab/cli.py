"""The command line of ``benchmarks/policy_sweep.py``: which policies, workloads and seeds, and where to write."""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import textwrap
import time
from pathlib import Path
from typing import Optional, Sequence

from vllm_cfs.bench.datasets import WorkloadError
from vllm_cfs.lab.policies import ENGINE_POLICIES, POLICIES, QUICK, QUICK_EOS, STAGED_SUFFIX, SWAP_PATHS, V1_POLICIES, \
    VICTIM_PATHS, PolicyError, select, with_swap_paths, with_victim_paths
from vllm_cfs.lab.sweep import GPU_LABEL, SETUP, SETUP_V1, WORKLOADS, SweepError, check_workloads, ends_at_eos, \
    markdown_table, quick_line, quick_line_v1, run_sweep, text_table, write_runs, write_table

BAD_INPUT = 2
# The V1 lab compares policies on V0's KV budget: the 1028 blocks vLLM 0.9.0 plans on the simulated
# 2 x A100-40GB. V1 plans about twice that on the same GPUs (its activations are those of a
# 2048-token chunk, not of a whole 16k prompt), where the reference burst barely preempts.
V1_REFERENCE_GPU_BLOCKS = 1028
DESCRIPTION = f"""\
Replay workloads through vLLM's real engine on the simulated GPU (virtual time) under several
scheduling policies, and write one table (CSV and JSON: P99 and mean TTFT, P99 TPOT, P99
inter-token latency, output tokens/s, blocks swapped, preemptions, recompute tax per replay) and
plots. The engine is vLLM 0.9.0's V0 (run with .venv/bin/python) or vLLM V1 (--engine v1, run with
.venv-v1/bin/python). Every figure is a {GPU_LABEL} figure."""


def _listing(title: str, items: dict[str, str]) -> str:
    return f"{title}:\n" + "\n".join(textwrap.fill(text, 100, initial_indent=f"  {name:<16} ", subsequent_indent=" " * 19)
                                     for name, text in items.items())


EPILOG = _listing("policies (v0)", {p.key: p.description for p in POLICIES}) + "\n\n" + \
    _listing("policies (v1)", {p.key: p.description for p in V1_POLICIES}) + "\n\n" + \
    _listing("victim paths (v1)", {"recompute": "no prefix cache: the victim recomputes everything",
                                   "prefix-cache": "V1's default: the victim's freed blocks stay in the prefix cache "
                                   "until reused, and its resume may hit them",
                                   "offload": "vLLM's CPU offloading: --kv-offloading-backend native, 16 GiB; a "
                                   "resume loads its KV from host memory"}) + "\n\n" + \
    _listing("workloads", {w.name: w.description for w in WORKLOADS.values()}) + """

--quick replays the reference workload (or the one --workloads names; seed 0) under fcfs, cfs-10, ours
and ideal (and the oracle where replies end at EOS) and ends with one line: ours against FCFS, CFS-10
and the ideal bound, plus the oracle's P99 TTFT where it ran (v1: against vLLM V1's own scheduler).

examples:
  .venv/bin/python benchmarks/policy_sweep.py --quick
  .venv/bin/python benchmarks/policy_sweep.py --quick --workload sharegpt-eos
  .venv/bin/python benchmarks/policy_sweep.py --out results/policy-sweep            # everything, seeds 0 1 2
  .venv/bin/python benchmarks/policy_sweep.py --policies fcfs cfs ideal --workloads reference --seeds 0
  .venv-v1/bin/python benchmarks/policy_sweep.py --engine v1 --quick
  .venv-v1/bin/python benchmarks/policy_sweep.py --engine v1 --victim-path all --policies fcfs ours --seeds 0 1 2
"""


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr, not the usage block."""

    def error(self, message: str):
        self.exit(BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="policy_sweep.py", description=DESCRIPTION, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one workload (default: reference; or --workloads NAME), seed 0: fcfs, cfs-10, ours, ideal (and "
                             "oracle where replies end at EOS); ends with the one-line verdict")
    parser.add_argument("--policies", nargs="+", metavar="NAME",
                        help="policy keys or families (default: all; see below)")
    parser.add_argument("--workloads", nargs="+", metavar="NAME", help="default: all (see below)")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="N", help="workload seeds (default: 0 1 2)")
    parser.add_argument("--num-prompts", type=int, metavar="N",
                        help="requests per workload instead of each workload's own count (for quick checks)")
    parser.add_argument("--out", type=Path, default=Path("results/policy-sweep"),
                        help="folder for policies-sweep.csv/.json/.md, img/ and runs/ (default: %(default)s)")
    parser.add_argument("--swap", choices=SWAP_PATHS, default="per-block",
                        help="swap path: vLLM 0.9's per-block copies, the staged swap worker, or both side by side "
                             "(staged rows carry the key suffix +staged; default: %(default)s)")
    parser.add_argument("--engine", choices=tuple(ENGINE_POLICIES),
                        help="v0: vLLM 0.9.0's V0 engine; v1: vLLM V1 (default: the engine of the vLLM installed here)")
    parser.add_argument("--gpu-blocks", type=int, metavar="N",
                        help=f"GPU KV blocks (default v1: {V1_REFERENCE_GPU_BLOCKS}, the KV budget V0 plans on the "
                             "simulated 2 x A100-40GB; v0: what its memory plan gives)")
    parser.add_argument("--victim-path", choices=(*VICTIM_PATHS, "all"),
                        help="v1 only: where every policy's victims' KV goes, rows keyed KEY+PATH; all: every path "
                             "side by side (default: each policy's own: V1's prefix cache, ours CPU offloading)")
    parser.add_argument("--async-scheduling", action="store_true",
                        help="v1 only: replay with vLLM's async scheduling, as `vllm serve` runs on a GPU (the next "
                             "step planned while the GPU runs the last; default: the synchronous loop, as the "
                             "figures in docs/v1.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick and (args.policies or args.seeds):
        parser.error("--quick picks its own policies and seed: leave out --policies and --seeds")
    if args.quick and args.workloads and len(args.workloads) > 1:
        parser.error("--quick replays one workload: give --workloads one name")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder")
    workloads = args.workloads or (["reference"] if args.quick else list(WORKLOADS))
    seeds = [0] if args.quick else (args.seeds if args.seeds is not None else [0, 1, 2])
    engine = args.engine or installed_engine()
    if engine != installed_engine():
        venv = ".venv-v1" if engine == "v1" else ".venv"
        parser.error(f"--engine {engine}: the vLLM installed here runs {installed_engine()}; run {venv}/bin/python "
                     "benchmarks/policy_sweep.py")
    if engine == "v1" and args.swap != "per-block":
        parser.error("--swap: vLLM V1 does not swap (it preempts by recompute); see --victim-path")
    if engine == "v0" and args.victim_path is not None:
        parser.error("--victim-path is vLLM V1's (add --engine v1); V0's victims swap out (see --swap)")
    if engine == "v0" and args.async_scheduling:
        parser.error("--async-scheduling is vLLM V1's (add --engine v1); V0 schedules each step after the last")
    started = time.monotonic()
    try:
        check_workloads(workloads)
        quick = QUICK_EOS if engine == "v0" and ends_at_eos(workloads[0]) else QUICK
        names = quick if args.quick else (args.policies or [p.key for p in ENGINE_POLICIES[engine]])
        if engine == "v1":
            policies = select(names, engine)
            if args.victim_path is not None:
                policies = with_victim_paths(policies, victim_paths(args.victim_path))
            from vllm_cfs.sim.v1.replay import V1ReplayConfig

            base = V1ReplayConfig(num_gpu_blocks_override=args.gpu_blocks or V1_REFERENCE_GPU_BLOCKS,
                                  async_scheduling=args.async_scheduling)
        else:
            policies = with_swap_paths(select(names), args.swap)
            from vllm_cfs.sim.replay import ReplayConfig

            base = ReplayConfig(num_gpu_blocks_override=args.gpu_blocks)
        runs = run_sweep(policies, workloads, seeds, num_prompts=args.num_prompts, progress=not args.no_progress,
                         base=base)
    except (PolicyError, SweepError, WorkloadError) as exc:
        parser.error(str(exc))
    rows = [run.row for run in runs]
    about = {"command": "python benchmarks/policy_sweep.py " + shlex.join(sys.argv[1:] if argv is None else argv),
             "date": datetime.date.today().isoformat(),
             "workloads": {w: WORKLOADS[w].description for w in workloads},
             "engine": engine,
             "policies": {p.key: {"description": p.description, "settings": dict(p.settings)} for p in policies}}
    csv_path, json_path = write_table(rows, args.out, about=about, setup=SETUP_V1 if engine == "v1" else SETUP)
    (args.out / "policies-sweep.md").write_text(markdown_table(rows) + "\n")
    write_runs(runs, args.out / "runs")
    from vllm_cfs.lab.plots import sweep_plots  # matplotlib: only once there is something to draw

    plots = sweep_plots(runs, args.out / "img")
    print(text_table(rows))
    print(f"wrote {csv_path}, {json_path}, {args.out / 'policies-sweep.md'}, {len(plots)} plots in {args.out / 'img'}, "
          f"{len(runs)} results files in {args.out / 'runs'} ({GPU_LABEL}; {time.monotonic() - started:.0f} s)")
    if args.quick and engine == "v1":
        if args.victim_path is None:
            print(quick_line_v1(rows, workload=workloads[0], seed=0))
        for path in victim_paths(args.victim_path) if args.victim_path else ():
            print(quick_line_v1(rows, workload=workloads[0], seed=0, suffix=f"+{path}") + f" (victim path {path})")
    elif args.quick:
        for suffix in ({"per-block": [""], "staged": [STAGED_SUFFIX], "both": ["", STAGED_SUFFIX]}[args.swap]):
            print(quick_line(rows, workload=workloads[0], seed=0, suffix=suffix) + (" (staged swap)" if suffix else ""))
    return 0


def victim_paths(choice: str) -> list[str]:
    return list(VICTIM_PATHS) if choice == "all" else [choice]


def installed_engine() -> str:
    from vllm_cfs import engine

    return engine()
