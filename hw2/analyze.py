#!/usr/bin/env python3
"""Plots, answers and report of the hw2 experiment, from the folders hw2/sweep.sh wrote.

    python3 hw2/analyze.py results_3.1 results_3.2 [--fair results_fair | --no-fair]
        [--staged results_3.2_staged | --no-staged] [--out DIR]

Writes results_3.1/{ttft,tpot,gpu_kv}.png, results_3.2/{ttft,tpot,gpu_kv,cpu_kv,waiting,pareto}.png,
and DIR/answers.txt and DIR/report.pdf (DIR: the folder holding results_3.2, unless --out).
The engine is read from env.txt (else the server logs): on vLLM V1 (hw2/sweep.sh --engine v1),
results_3.2/preemptions.png (preemptions per run) replaces cpu_kv.png, the table gains each run's
preemptions, and answers.txt and the report say that every figure comes from V1; the MCQs keep the
V0 run's answers, said as such (V1 has no swap).
With our FairScheduler's runs (hw2/sweep.sh --scheduler fair; by default the folder results_fair
beside results_3.2, when there is one), Fair is the third line beside FCFS and CFS in the 3.2
plots and the table, and results_fair/policies.png shows P99 TTFT, P99 TPOT, P99 ITL and output
tokens/s of FCFS, every CFS interval and Fair side by side. With the sweep on the staged swap
worker (hw2/sweep.sh --swap staged; by default the folder results_3.2_staged beside results_3.2,
when there is one), answers.txt and the report gain a table of both swap paths per interval (those
four figures and the throughput ratio to FCFS), and results_3.2_staged/swap_paths.png draws it.
"""

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The analysis imports no vLLM, so either engine's virtualenv runs it: V0's first, then V1's.
VENV_PYTHONS = (REPO / ".venv" / "bin" / "python", REPO / ".venv-v1" / "bin" / "python")

try:
    from vllm_cfs.analysis.inputs import InputError
    from vllm_cfs.analysis.pipeline import analyze
except ImportError:
    # Run with a python3 that lacks the project: use a project virtualenv when there is one.
    for venv_python in VENV_PYTHONS:
        if venv_python.is_file() and Path(sys.executable).resolve() != venv_python.resolve():
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.exit("analyze.py: error: the vllm_cfs package is not installed for this python; run `make venv` "
             "(or `make venv-v1`) and use its bin/python")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="analyze.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("task31", type=Path, help="task 3.1's folder (FCFS, one run), e.g. results_3.1")
    parser.add_argument("task32", type=Path, help="the sweep's folder, e.g. results_3.2")
    parser.add_argument("--out", type=Path, help="where answers.txt and report.pdf go (default: the folder holding TASK32)")
    fair = parser.add_mutually_exclusive_group()
    fair.add_argument("--fair", type=Path, metavar="DIR",
                      help="FairScheduler's results folder (default: results_fair beside TASK32, if it exists)")
    fair.add_argument("--no-fair", action="store_true", help="FCFS and CFS only, even if results_fair exists")
    staged = parser.add_mutually_exclusive_group()
    staged.add_argument("--staged", type=Path, metavar="DIR",
                        help="the sweep on the staged swap worker (default: TASK32's name + _staged beside it, "
                             "if it exists)")
    staged.add_argument("--no-staged", action="store_true",
                        help="vLLM's per-block swap only, even if that folder exists")
    parser.add_argument("--cfs-interval", type=int, default=10,
                        help="the CFS interval the plots compare with FCFS (default: %(default)s)")
    args = parser.parse_args(argv)
    fair_dir = args.fair
    if fair_dir is None and not args.no_fair and (args.task32.parent / "results_fair").is_dir():
        fair_dir = args.task32.parent / "results_fair"
    staged_dir = args.staged
    beside = args.task32.parent / f"{args.task32.name}_staged"
    if staged_dir is None and not args.no_staged and beside.is_dir():
        staged_dir = beside
    try:
        outputs = analyze(args.task31, args.task32, args.out, args.cfs_interval,
                          progress=lambda message: print(f"[analyze.py] {message}", file=sys.stderr),
                          fair_dir=fair_dir, staged_dir=staged_dir)
    except InputError as exc:
        print(f"analyze.py: error: {exc}", file=sys.stderr)
        return 2
    for plot in outputs.plots:
        print(plot.path)
    print(outputs.answers_path)
    print(outputs.report_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
