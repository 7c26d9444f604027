# Shared by the hw2 scripts (sourced, not run): where things are, and how to speak to the user.

HW2_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$HW2_DIR")"

# The engine the scripts serve with (--engine, see set_engine): v0, vLLM 0.9.0's V0 engine in .venv
# (make venv), or v1, vLLM V1 in .venv-v1 (make venv-v1). PYTHON from the environment wins;
# otherwise the engine's virtualenv when there is one, else whatever python3 is on PATH.
ENGINE=v0
PYTHON_FROM_ENV="${PYTHON:-}"

engine_venv() { case "$1" in v0) echo "$REPO_DIR/.venv" ;; v1) echo "$REPO_DIR/.venv-v1" ;; esac; }

SERVED_MODEL_NAME="codellama/CodeLlama-34b-hf"

# The burst of hw2/client.sh (the environment may override each): vLLM's random dataset with its
# benchmark defaults, 1024-token prompts and 128 output tokens, 50 of them at 3 requests/s.
NUM_PROMPTS="${NUM_PROMPTS:-50}"
REQUEST_RATE="${REQUEST_RATE:-3}"
SEED="${SEED:-0}"
DATASET="${DATASET:-random}"
RANDOM_INPUT_LEN="${RANDOM_INPUT_LEN:-1024}"
RANDOM_OUTPUT_LEN="${RANDOM_OUTPUT_LEN:-128}"
SIM_GPU="${SIM_GPU:-a100-40gb}"

# V1's servers hold their KV cache to V0's budget (--num-gpu-blocks-override): the 1028 blocks per GPU
# vLLM 0.9.0 plans for CodeLlama-34B at TP 2 on 2 x A100-40GB. V1's own plan on the same GPUs gives 2562
# (it profiles the activations of a 2048-token chunk, not of a whole 16k prompt), where the burst never
# fills the cache and every scheduler gives the same figures. The V1 policy lab and the real-GPU runs
# use the same budget (vllm_cfs.lab.cli.V1_REFERENCE_GPU_BLOCKS, docs/v1.md).
V1_GPU_BLOCKS=1028

say() { echo "[$(basename "$0")] $*" >&2; }
die() { echo "$(basename "$0"): error: $1" >&2; exit "${2:-1}"; }  # message, exit code (default 1)

set_engine() {  # v0|v1, as the user gave it to --engine; dies (code 2) for anything else
    case "$1" in
        v0|v1) ENGINE="$1" ;;
        *) die "--engine must be v0 or v1, got '$1'" 2 ;;
    esac
    if [[ -n "$PYTHON_FROM_ENV" ]]; then
        PYTHON="$PYTHON_FROM_ENV"
    elif [[ -x "$(engine_venv "$ENGINE")/bin/python" ]]; then
        PYTHON="$(engine_venv "$ENGINE")/bin/python"
    else
        PYTHON=python3
    fi
    # The scripts this one starts find their python the same way, but client.sh takes no --engine:
    # on v1 it must not fall back to .venv (V0's), so it inherits this one. V0's scripts find .venv
    # themselves, as they always have.
    if [[ "$ENGINE" == v1 ]]; then export PYTHON; fi
}
set_engine v0

# V1's scripts need vLLM V1 in PYTHON: without this a V0 venv would start vLLM 0.9's own V1 engine
# under our V1 scheduler names, and fail far from the cause.
check_v1_python() {
    local found
    found="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("vllm"))' 2>/dev/null)" \
        || die "--engine v1: $PYTHON has no vLLM; run \`make venv-v1\` (vLLM V1 in .venv-v1)" 2
    [[ "$found" != 0.9.* ]] \
        || die "--engine v1: $PYTHON has vLLM $found (V0); run \`make venv-v1\` or set PYTHON to .venv-v1/bin/python" 2
}

# Real GPUs need both a working driver and real weights; anything less runs on the simulated GPU.
use_real_gpu() { [[ -n "${MODEL:-}" ]] && nvidia-smi -L >/dev/null 2>&1; }

gpu_description() {
    if use_real_gpu; then
        echo "real: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x2 (first two GPUs)"
    else
        echo "simulated GPU ($SIM_GPU x2)"
    fi
}

# The model as vLLM and the client name it: the user's folder on real GPUs, else the hub id, which
# the simulated GPU and benchmark_serving.py resolve offline to the shipped config and tokenizer.
model_ref() { if use_real_gpu; then echo "$MODEL"; else echo "$SERVED_MODEL_NAME"; fi; }

# The model folder on disk, for the sweep's copy of config.json: the user's weights on real GPUs,
# else the simulator's local config+tokenizer folder (built once, cached), the one vLLM serves for
# the hub id on the simulated GPU.
model_dir() {
    if use_real_gpu; then echo "$MODEL"; else "$PYTHON" -m vllm_cfs.sim.model_dir; fi
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The scheduler class of a name the hw2 scripts take (--scheduler); fails for any other name.
scheduler_class() {
    case "$1" in
        cfs) echo vllm_cfs.CFSScheduler ;;
        fair) echo vllm_cfs.FairScheduler ;;
        *) return 1 ;;
    esac
}

# The --worker-cls of a swap path the hw2 scripts take (--swap): none for vLLM's own per-block swap,
# our staged swap worker (vllm_cfs.swap.WORKER_CLS) for staged; fails for any other name.
swap_worker_class() {
    case "$1" in
        per-block) echo "" ;;
        staged) echo vllm_cfs.swap.StagedSwapWorker ;;
        *) return 1 ;;
    esac
}

is_whole_number() { [[ "$1" =~ ^[0-9]+$ ]]; }
