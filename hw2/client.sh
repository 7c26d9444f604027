#!/usr/bin/env bash
# Fire the hw2 burst at the server: 50 requests at 3 requests/s, TTFT/TPOT per request.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<EOF
Usage: hw2/client.sh [--port PORT] [--out PREFIX] [--label LABEL] [-- CLIENT_ARGS...]

Sends the burst through benchmarks/benchmark_serving.py: NUM_PROMPTS requests (default 50) at
REQUEST_RATE requests/s (default 3), seed SEED (default 0), and prints the report. The default
prompts are DATASET=random with vLLM's benchmark defaults (1024-token prompts, 128 output
tokens): a burst that fills the KV cache of the reference setup, as the assignment observed.
ShareGPT at 3 req/s does not fill it on the simulated 2 x A100-40GB (see docs/results.md);
DATASET=sharegpt or DATASET=humaneval choose the other sets, whose requests ask for max_tokens
2048 and end at EOS (-- --max-tokens N changes the cap).
With --out, the report goes to PREFIX.txt and every request to PREFIX.json.
Arguments after -- go to benchmark_serving.py as they are (see its --help).

Options:
  --port PORT     the server's port on 127.0.0.1 (default: 8000)
  --out PREFIX    write PREFIX.txt and PREFIX.json
  --label LABEL   a name for this run, kept in the results
  -h, --help      this text

Environment: NUM_PROMPTS, REQUEST_RATE, SEED, DATASET, RANDOM_INPUT_LEN, RANDOM_OUTPUT_LEN, MODEL (tokenizer folder on real GPUs), SIM_GPU, PYTHON.
EOF
}

port=8000
out=""
label=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --port) port="${2:?--port needs a value}"; shift 2 ;;
        --out) out="${2:?--out needs a value}"; shift 2 ;;
        --label) label="${2:?--label needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) die "unknown argument '$1' (see --help)" 2 ;;
    esac
done
is_whole_number "$port" || die "--port must be a number, got '$port'" 2

outputs=()
if [[ -n "$out" ]]; then outputs=(--result-text "$out.txt" --result-json "$out.json"); fi

exec "$PYTHON" "$REPO_DIR/benchmarks/benchmark_serving.py" \
    --base-url "http://127.0.0.1:$port" \
    --model "$SERVED_MODEL_NAME" \
    --tokenizer "$(model_ref)" \
    --gpu "$(gpu_description)" \
    --dataset-name "$DATASET" \
    --random-input-len "$RANDOM_INPUT_LEN" \
    --random-output-len "$RANDOM_OUTPUT_LEN" \
    --num-prompts "$NUM_PROMPTS" \
    --request-rate "$REQUEST_RATE" \
    --seed "$SEED" \
    --label "$label" \
    "${outputs[@]}" \
    "$@"
