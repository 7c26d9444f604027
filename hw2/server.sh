#!/usr/bin/env bash
# Serve CodeLlama-34B with vLLM 0.9.0's V0 engine and our CFS scheduler (hw2, tasks 3.1 and 3.2),
# or with our FairScheduler (the third line of the hw2 report); vLLM's per-block swap or our staged
# swap worker (--swap staged). With --engine v1, on vLLM V1 instead: no swap there, recompute only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<EOF
Usage: hw2/server.sh [--engine v0|v1] [--port PORT] [--log FILE] [--scheduler cfs|fair] [--swap per-block|staged] [--model PATH]

Starts vLLM's OpenAI-compatible server in the foreground: CodeLlama-34B, tensor parallel 2,
--preemption-mode swap (16 GiB swap space per GPU), --scheduler-cls vllm_cfs.CFSScheduler
(or vllm_cfs.FairScheduler with --scheduler fair), bound to 127.0.0.1. Its output is appended
to the log file.

Runs on real GPUs when nvidia-smi works and a model folder is given (--model or MODEL);
otherwise on the simulated GPU (2 x A100-40GB; SIM_GPU picks another profile), and says so:
there vLLM serves the hub id codellama/CodeLlama-34b-hf from the simulator's local config and
tokenizer (no weights, nothing downloaded).

With --engine v1: vLLM V1 (.venv-v1, make venv-v1) with the same --scheduler-cls (our V1
schedulers), no VLLM_USE_V1=0 and no swap flags: V1 has no swap, it preempts by recompute, and
its prefill is always chunked. Its KV cache is held to V0's budget, $V1_GPU_BLOCKS GPU blocks
(--num-gpu-blocks-override $V1_GPU_BLOCKS; V1's own plan would give 2562 on the simulated GPU).

Options:
  --engine E     v0: vLLM 0.9.0's V0 engine (default); v1: vLLM V1 (no --swap there)
  --port PORT    port to listen on (default: 8000)
  --log FILE     log file, appended to (default: vllm_server.log)
  --scheduler S  cfs: the assignment's CFS scheduler, CFS_INTERVAL applies (default);
                 fair: our FairScheduler (first token first, then first come first served;
                 docs/policies.md), which ignores CFS_INTERVAL
  --swap P       per-block: vLLM's own swap, one copy per KV block and layer (default);
                 staged: our staged swap worker (--worker-cls vllm_cfs.swap.StagedSwapWorker:
                 one gather/scatter and one copy per run of blocks, through a staging buffer
                 of VLLM_CFS_STAGING_BLOCKS KV blocks, default 32, taken from the GPU's KV
                 cache; docs/swap.md). On the simulated GPU the simulator models that path.
  --model PATH   local CodeLlama-34B model folder with weights (real GPUs only)
  -h, --help     this text

Environment: CFS_INTERVAL (a CFS step every N scheduling steps; 0 = vLLM's default FCFS;
default 10), CFS_MIN_GRANULARITY, FAIR_PATIENCE_TOKENS (fair only; default 8), SIM_GPU (default
a100-40gb), PYTHON (default .venv/bin/python; .venv-v1/bin/python with --engine v1),
VLLM_LOG_STATS_INTERVAL (v1 only: seconds between vLLM's stats lines; default 5, as on V0).
EOF
}

port=8000
log=vllm_server.log
scheduler=cfs
swap=""  # per-block on v0 unless given; refused on v1, which has no swap
engine=v0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --port) port="${2:?--port needs a value}"; shift 2 ;;
        --log) log="${2:?--log needs a value}"; shift 2 ;;
        --scheduler) scheduler="${2:?--scheduler needs a value}"; shift 2 ;;
        --swap) swap="${2:?--swap needs a value}"; shift 2 ;;
        --engine) engine="${2:?--engine needs a value}"; shift 2 ;;
        --model) MODEL="${2:?--model needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" 2 ;;
    esac
done
set_engine "$engine"
if [[ "$ENGINE" == v1 && -n "$swap" ]]; then
    die "--swap $swap needs --engine v0: vLLM V1 has no swap (it preempts by recompute)" 2
fi
swap="${swap:-per-block}"
is_whole_number "$port" || die "--port must be a number, got '$port'" 2
cfs_interval="${CFS_INTERVAL:-10}"
is_whole_number "$cfs_interval" || die "CFS_INTERVAL must be a whole number >= 0 (0 = FCFS), got '$cfs_interval'" 2
scheduler_cls="$(scheduler_class "$scheduler")" || die "--scheduler must be cfs or fair, got '$scheduler'" 2
worker_cls="$(swap_worker_class "$swap")" || die "--swap must be per-block or staged, got '$swap'" 2
# vLLM's own worker needs no flag: the per-block path is what plain `vllm serve` does.
worker_args=()
[[ -z "$worker_cls" ]] || worker_args=(--worker-cls "$worker_cls")
patience="${FAIR_PATIENCE_TOKENS:-8}"
is_whole_number "$patience" || die "FAIR_PATIENCE_TOKENS must be a whole number >= 0, got '$patience'" 2
if [[ -n "${MODEL:-}" && ! -f "$MODEL/config.json" ]]; then
    die "$MODEL is not a model folder (no config.json)" 2
fi
[[ "$ENGINE" == v0 ]] || check_v1_python

if use_real_gpu; then
    unset VLLM_CFS_SIM_GPU
    model="$MODEL"
    source_note=" from $MODEL"
else
    if [[ -n "${MODEL:-}" ]]; then say "nvidia-smi does not work here: not using $MODEL"; fi
    export VLLM_CFS_SIM_GPU="$SIM_GPU"
    model="$SERVED_MODEL_NAME"
    source_note=" by its hub id (the simulator's local config and tokenizer)"
fi
mkdir -p "$(dirname "$log")"

say "GPU: $(gpu_description)"
if [[ "$scheduler" == fair ]]; then policy="$scheduler_cls (FAIR_PATIENCE_TOKENS=$patience)"; else policy="CFS_INTERVAL=$cfs_interval"; fi
if [[ -n "$worker_cls" ]]; then swap_path="staged swap ($worker_cls)"; else swap_path="vLLM's per-block swap"; fi
[[ "$ENGINE" == v0 ]] || swap_path="on vLLM V1, preemption by recompute, $V1_GPU_BLOCKS GPU blocks (V0's budget)"
say "serving $SERVED_MODEL_NAME$source_note on http://127.0.0.1:$port with $policy, $swap_path; log appended to $log"

export CFS_INTERVAL="$cfs_interval" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1
if [[ "$ENGINE" == v1 ]]; then
    # V1 logs its stats line every 10 s by default; every 5 s, as V0 and our schedulers' stats
    # lines do, gives the plots over time the same resolution on both engines.
    export VLLM_LOG_STATS_INTERVAL="${VLLM_LOG_STATS_INTERVAL:-5}"
    # V0's KV budget (common.sh says why); vLLM V1's defaults otherwise (chunked prefill, prefix
    # caching), as a user's `vllm serve` has them.
    exec "$PYTHON" -m vllm.entrypoints.cli.main serve "$model" \
        --served-model-name "$SERVED_MODEL_NAME" \
        --host 127.0.0.1 --port "$port" \
        --tensor-parallel-size 2 \
        --scheduler-cls "$scheduler_cls" \
        --num-gpu-blocks-override "$V1_GPU_BLOCKS" \
        >>"$log" 2>&1
fi
export VLLM_USE_V1=0
exec "$PYTHON" -m vllm.entrypoints.cli.main serve "$model" \
    --served-model-name "$SERVED_MODEL_NAME" \
    --host 127.0.0.1 --port "$port" \
    --tensor-parallel-size 2 \
    --preemption-mode swap --swap-space 16 \
    --scheduler-cls "$scheduler_cls" \
    "${worker_args[@]}" \
    >>"$log" 2>&1
