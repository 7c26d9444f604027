# Shared by the hw2 scripts (sourced, not run): where things are, and how to speak to the user.

HW2_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$HW2_DIR")"

# The project's virtualenv when there is one (make creates it), else whatever python3 is on PATH.
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO_DIR/.venv/bin/python" ]]; then PYTHON="$REPO_DIR/.venv/bin/python"; else PYTHON=python3; fi
fi

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

say() { echo "[$(basename "$0")] $*" >&2; }
die() { echo "$(basename "$0"): error: $1" >&2; exit "${2:-1}"; }  # message, exit code (default 1)

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
