#!/usr/bin/env bash
# On a GPU host without network: install the stashed bundle (once), then serve and burst per policy.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: benchmarks/gpu/real_burst.sh RUNS_DIR [session options]

Run on the GPU host from the repository's root, after every part of the bundle was kept there
with `python3 -m vllm_cfs.realgpu.unpack stash .gpu-bundle/part-N` (docs/real-gpu.md). Installs
the bundle into $VLLM_CFS_HOME (default /root/vllm-cfs) unless it is already there, then runs
`python3 -m vllm_cfs.realgpu.session --model $VLLM_CFS_HOME/model --out RUNS_DIR ...`: one vLLM V1
server per policy (dummy weights), bursts from our client, RUNS_DIR/summary.json. Session options
(its --help): --policies, --gpu-blocks, -tp, --seeds, --rate, --all-at-once-seed, --vllm-bench-seed.
USAGE
}

[[ $# -ge 1 && "$1" != -h && "$1" != --help ]] || { usage; [[ $# -ge 1 ]] && exit 0 || exit 2; }
runs="$1"; shift
home="${VLLM_CFS_HOME:-/root/vllm-cfs}"
if [[ ! -f "$home/MANIFEST.json" ]]; then
    python3 -m vllm_cfs.realgpu.unpack install --target "$home"
fi
export PYTHONPATH="$home/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m vllm_cfs.realgpu.session --model "$home/model" --out "$runs" "$@"
