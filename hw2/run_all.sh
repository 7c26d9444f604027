#!/usr/bin/env bash
# The whole hw2 experiment in one command (what `make hw2` runs): task 3.1 (vLLM's default FCFS,
# one burst), the task 3.2 sweep over CFS intervals (3 bursts each), our FairScheduler (3 bursts),
# then plots, answers, report. With --staged-swap, the 3.2 sweep once more on our staged swap worker.
# With --engine v1, all of it on vLLM V1 (`make hw2 ENGINE=v1`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<EOF
Usage: hw2/run_all.sh [--engine v0|v1] [--out DIR] [--runs N] [--intervals "LIST"] [--no-fair] [--staged-swap] [--model PATH]

  1. DIR/results_3.1: one burst against vLLM's default FCFS (CFS_INTERVAL=0), log vllm_server.log
  2. DIR/results_3.2: hw2/sweep.sh over the CFS intervals, N bursts each, a server start each
  3. DIR/results_fair: N bursts against our FairScheduler (hw2/sweep.sh --scheduler fair; first
     token first, then first come first served: docs/policies.md), one more server start
  +  with --staged-swap only: DIR/results_3.2_staged: step 2 again on our staged swap worker
     (hw2/sweep.sh --swap staged: --worker-cls vllm_cfs.swap.StagedSwapWorker), one more
     server start per interval
  4. hw2/analyze.py: the assignment's nine plots, DIR/answers.txt and DIR/report.pdf. Fair is
     the third line beside FCFS and CFS in the 3.2 plots and in the table of P99 TTFT, P99 TPOT,
     P99 ITL and output tokens/s; results_fair/policies.png draws those four figures for FCFS,
     every CFS interval and Fair side by side. With --staged-swap, a second table sets those
     four figures and the throughput ratio to FCFS of vLLM's per-block swap and of the staged
     swap worker side by side per interval, and results_3.2_staged/swap_paths.png draws them.
     The MCQ answers use FCFS and CFS on the per-block swap only.

With --engine v1 (make hw2 ENGINE=v1): the same steps 1-4 on vLLM V1 (.venv-v1, make venv-v1):
interval 0 is V1's own scheduling (our CFSScheduler with CFS_INTERVAL=0), the other intervals
and Fair our V1 schedulers, every preemption by recompute (V1 has no swap, so no --staged-swap),
every server's KV cache held to V0's budget of 1028 GPU blocks (hw2/server.sh --help).
The plots are those that exist on V1: results_3.2/preemptions.png (preemptions over time, from
V1's stats lines) takes cpu_kv's place; the table gains each run's preemptions (from the server's
/metrics after each run); answers.txt and the report say that every figure comes from vLLM V1
on the GPU it ran on. The MCQ answers stay those of the V0 run (make hw2), said as such: their
evidence is V0's swap.

Options:
  --engine E          v0: vLLM 0.9.0's V0 engine, the assignment's (default); v1: vLLM V1
  --out DIR           where results go (default: results; an earlier DIR is moved to DIR.prev)
  --runs N            bursts per interval in the sweep, and for Fair (default: 3; the table
                      gives medians)
  --intervals "LIST"  CFS intervals of the sweep (default: "0 5 10 20 40")
  --no-fair           skip step 3: the assignment's FCFS and CFS only
  --staged-swap       also run the 3.2 sweep on the staged swap worker (off by default: it
                      doubles the sweep's time, about 15 more minutes on the simulated GPU)
  --model PATH        model folder with weights, for real GPUs (see hw2/server.sh --help)
  -h, --help          this text
Real GPUs when nvidia-smi works and a model folder is given; otherwise the simulated
2 x A100-40GB (about 21 minutes on 2 CPU cores, in real time; 18 with --no-fair; with
--engine v1, about 15 minutes).
EOF
}

engine=v0
out=results
runs=3
intervals="0 5 10 20 40"
fair=yes
staged=no
model_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --engine) engine="${2:?--engine needs a value}"; shift 2 ;;
        --out) out="${2:?--out needs a value}"; shift 2 ;;
        --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
        --intervals) intervals="${2:?--intervals needs a value}"; shift 2 ;;
        --no-fair) fair=no; shift ;;
        --staged-swap) staged=yes; shift ;;
        --model) model_args=(--model "${2:?--model needs a value}"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" 2 ;;
    esac
done
set_engine "$engine"
# Given to every sweep: V0's need nothing (their default), V1's say so.
engine_args=()
if [[ "$ENGINE" == v1 ]]; then
    [[ $staged == no ]] || die "--staged-swap needs --engine v0: vLLM V1 has no swap (it preempts by recompute)" 2
    check_v1_python  # before an earlier DIR is moved aside
    engine_args=(--engine v1)
fi

if [[ -e "$out" ]]; then
    say "moving the earlier $out to $out.prev"
    rm -rf "$out.prev"
    mv "$out" "$out.prev"
fi
mkdir -p "$out"
started=$SECONDS

steps=3
[[ $fair == no ]] || steps=$((steps + 1))
[[ $staged == no ]] || steps=$((steps + 1))
step=0
next_step() { step=$((step + 1)); say "step $step of $steps: $*"; }

next_step "task 3.1, vLLM's default FCFS, one burst"
"$HW2_DIR/sweep.sh" --intervals 0 --runs 1 --out "$out/results_3.1" --log vllm_server.log "${model_args[@]}" "${engine_args[@]}" \
    && code=0 || code=$?
[[ $code -eq 0 || $code -eq 3 ]] || exit "$code"
sweep_failed=$code

next_step "task 3.2, intervals $intervals, $runs runs each"
"$HW2_DIR/sweep.sh" --intervals "$intervals" --runs "$runs" --out "$out/results_3.2" "${model_args[@]}" "${engine_args[@]}" \
    && code=0 || code=$?
[[ $code -eq 0 || $code -eq 3 ]] || exit "$code"
[[ $code -eq 0 ]] || sweep_failed=$code

fair_args=(--no-fair)
if [[ $fair == yes ]]; then
    next_step "our FairScheduler, $runs runs"
    "$HW2_DIR/sweep.sh" --scheduler fair --runs "$runs" --out "$out/results_fair" "${model_args[@]}" "${engine_args[@]}" \
        && code=0 || code=$?
    [[ $code -eq 0 || $code -eq 3 ]] || exit "$code"
    [[ $code -eq 0 ]] || sweep_failed=$code
    fair_args=(--fair "$out/results_fair")
fi

staged_args=(--no-staged)
if [[ $staged == yes ]]; then
    next_step "task 3.2 again on the staged swap worker, intervals $intervals, $runs runs each"
    "$HW2_DIR/sweep.sh" --swap staged --intervals "$intervals" --runs "$runs" --out "$out/results_3.2_staged" \
        "${model_args[@]}" && code=0 || code=$?
    [[ $code -eq 0 || $code -eq 3 ]] || exit "$code"
    [[ $code -eq 0 ]] || sweep_failed=$code
    staged_args=(--staged "$out/results_3.2_staged")
fi

next_step "plots, answers, report"
"$PYTHON" "$HW2_DIR/analyze.py" "$out/results_3.1" "$out/results_3.2" "${fair_args[@]}" "${staged_args[@]}" \
    --out "$out"

elapsed=$((SECONDS - started))
say "done in $((elapsed / 60)) min $((elapsed % 60)) s"
echo "report: $out/report.pdf (answers: $out/answers.txt)"
if [[ $sweep_failed -ne 0 ]]; then
    say "some requests failed: see the client reports in $out/results_3.*"
    exit 3
fi
