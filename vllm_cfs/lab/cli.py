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
from vllm_cfs.lab.policies import BY_KEY, POLICIES, QUICK, STAGED_SUFFIX, SWAP_PATHS, PolicyError, select, \
    with_swap_paths
from vllm_cfs.lab.sweep import GPU_LABEL, WORKLOADS, SweepError, markdown_table, quick_line, run_sweep, text_table, \
    write_runs, write_table

BAD_INPUT = 2
DESCRIPTION = f"""\
Replay workloads through vLLM's real V0 engine on the simulated GPU (virtual time) under several
scheduling policies, and write one table (CSV and JSON: P99 and mean TTFT, P99 TPOT, P99
inter-token latency, output tokens/s, blocks swapped, preemptions per replay) and plots. Every
figure is a {GPU_LABEL} figure."""


def _listing(title: str, items: dict[str, str]) -> str:
    return f"{title}:\n" + "\n".join(textwrap.fill(text, 100, initial_indent=f"  {name:<16} ", subsequent_indent=" " * 19)
                                     for name, text in items.items())


EPILOG = _listing("policies", {p.key: p.description for p in POLICIES}) + "\n\n" + \
    _listing("workloads", {w.name: w.description for w in WORKLOADS.values()}) + """

--quick replays the reference workload (seed 0) under fcfs, cfs-10, ours and ideal and ends with
one line: ours against FCFS, CFS-10 and the ideal bound.

examples:
  python benchmarks/policy_sweep.py --quick
  python benchmarks/policy_sweep.py --out results/policy-sweep            # everything, seeds 0 1 2
  python benchmarks/policy_sweep.py --policies fcfs cfs ideal --workloads reference --seeds 0
"""


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr, not the usage block."""

    def error(self, message: str):
        self.exit(BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="policy_sweep.py", description=DESCRIPTION, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the reference workload, seed 0: fcfs, cfs-10, ours, ideal; ends with the one-line verdict")
    parser.add_argument("--policies", nargs="+", metavar="NAME",
                        help="policy keys or families (default: all; see below)")
    parser.add_argument("--workloads", nargs="+", metavar="NAME", help="default: all four (see below)")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="N", help="workload seeds (default: 0 1 2)")
    parser.add_argument("--num-prompts", type=int, metavar="N",
                        help="requests per workload instead of each workload's own count (for quick checks)")
    parser.add_argument("--out", type=Path, default=Path("results/policy-sweep"),
                        help="folder for policies-sweep.csv/.json/.md, img/ and runs/ (default: %(default)s)")
    parser.add_argument("--swap", choices=SWAP_PATHS, default="per-block",
                        help="swap path: vLLM 0.9's per-block copies, the staged swap worker, or both side by side "
                             "(staged rows carry the key suffix +staged; default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick and (args.policies or args.workloads or args.seeds):
        parser.error("--quick picks its own policies, workload and seed: leave out --policies, --workloads and --seeds")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder")
    workloads = ["reference"] if args.quick else (args.workloads or list(WORKLOADS))
    seeds = [0] if args.quick else (args.seeds if args.seeds is not None else [0, 1, 2])
    started = time.monotonic()
    try:
        policies = with_swap_paths(select(QUICK if args.quick else (args.policies or list(BY_KEY))), args.swap)
        runs = run_sweep(policies, workloads, seeds, num_prompts=args.num_prompts, progress=not args.no_progress)
    except (PolicyError, SweepError, WorkloadError) as exc:
        parser.error(str(exc))
    rows = [run.row for run in runs]
    about = {"command": "python benchmarks/policy_sweep.py " + shlex.join(sys.argv[1:] if argv is None else argv),
             "date": datetime.date.today().isoformat(),
             "workloads": {w: WORKLOADS[w].description for w in workloads},
             "policies": {p.key: {"description": p.description, "settings": dict(p.settings)} for p in policies}}
    csv_path, json_path = write_table(rows, args.out, about=about)
    (args.out / "policies-sweep.md").write_text(markdown_table(rows) + "\n")
    write_runs(runs, args.out / "runs")
    from vllm_cfs.lab.plots import sweep_plots  # matplotlib: only once there is something to draw

    plots = sweep_plots(runs, args.out / "img")
    print(text_table(rows))
    print(f"wrote {csv_path}, {json_path}, {args.out / 'policies-sweep.md'}, {len(plots)} plots in {args.out / 'img'}, "
          f"{len(runs)} results files in {args.out / 'runs'} ({GPU_LABEL}; {time.monotonic() - started:.0f} s)")
    if args.quick:
        for suffix in ({"per-block": [""], "staged": [STAGED_SUFFIX], "both": ["", STAGED_SUFFIX]}[args.swap]):
            print(quick_line(rows, seed=0, suffix=suffix) + (" (staged swap)" if suffix else ""))
    return 0
