#!/usr/bin/env bash
# The hw2 interval sweep: for each CFS interval its own server start, N bursts, then the server
# stopped with nothing of it left running. With --scheduler fair: the same for our FairScheduler.
# With --swap staged: every server on our staged swap worker instead of vLLM's per-block swap.
# With --engine v1: every server on vLLM V1 (no swap there), and its /metrics kept after each run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<EOF
Usage: hw2/sweep.sh [options] [-- CLIENT_ARGS...]

For each CFS interval: start hw2/server.sh with CFS_INTERVAL set, wait for /health, run
hw2/client.sh RUNS times, stop the server. Writes into DIR:
  p<interval>_r<run>.txt, .json   client report and records
  server_p<interval>.log           the server's log, with a marker line before each run
  env.txt, model_config.json       versions, GPU (real or simulated), settings; the model's config
With --scheduler fair, one server with our FairScheduler instead (it has no interval), RUNS
bursts: fair_r<run>.txt, .json and server_fair.log, beside env.txt and model_config.json.
With --engine v1, every server is vLLM V1's (hw2/server.sh --engine v1), and after each run its
Prometheus /metrics (vllm:num_preemptions_total, ...) is kept as p<interval>_r<run>.metrics.

Options:
  --engine E           v0: vLLM 0.9.0's V0 engine (default); v1: vLLM V1 (.venv-v1; recompute
                       preemption only, so no --swap)
  --intervals "LIST"   CFS intervals (default: "0 5 10 20 40"; 0 = vLLM's default FCFS)
  --scheduler S        cfs (default) or fair: vllm_cfs.FairScheduler, FAIR_PATIENCE_TOKENS
                       applies, --intervals does not
  --swap P             per-block (default: vLLM's own swap) or staged: every server on our staged
                       swap worker (hw2/server.sh --swap staged, vllm_cfs.swap.StagedSwapWorker)
  --runs N             bursts per interval (default: 3)
  --out DIR            results folder (default: results_3.2)
  --log NAME           server log name in DIR instead of server_p<interval>.log (one interval only)
  --port PORT          server port (default: a free one)
  --startup-timeout S  seconds to wait for the server's /health (default: 300)
  --model PATH         model folder with weights, for real GPUs (see hw2/server.sh --help)
  -h, --help           this text
Arguments after -- go to the client (benchmark_serving.py). The environment sets the burst (see
hw2/client.sh --help): NUM_PROMPTS, REQUEST_RATE, SEED, DATASET, RANDOM_INPUT_LEN, RANDOM_OUTPUT_LEN.

Exit status: 0 done; 1 a server did not start or stop; 2 bad arguments; 3 done, but some
requests failed (see the reports).
EOF
}

intervals=""
scheduler=cfs
swap=""  # per-block on v0 unless given; refused on v1, which has no swap
engine=v0
runs=3
out=results_3.2
log_name=""
port=""
startup_timeout=300
while [[ $# -gt 0 ]]; do
    case "$1" in
        --intervals) intervals="${2:?--intervals needs a value}"; shift 2 ;;
        --scheduler) scheduler="${2:?--scheduler needs a value}"; shift 2 ;;
        --swap) swap="${2:?--swap needs a value}"; shift 2 ;;
        --engine) engine="${2:?--engine needs a value}"; shift 2 ;;
        --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
        --out) out="${2:?--out needs a value}"; shift 2 ;;
        --log) log_name="${2:?--log needs a value}"; shift 2 ;;
        --port) port="${2:?--port needs a value}"; shift 2 ;;
        --startup-timeout) startup_timeout="${2:?--startup-timeout needs a value}"; shift 2 ;;
        --model) export MODEL="${2:?--model needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) die "unknown argument '$1' (see --help)" 2 ;;
    esac
done
client_args=("$@")
set_engine "$engine"
if [[ "$ENGINE" == v1 && -n "$swap" ]]; then
    die "--swap $swap needs --engine v0: vLLM V1 has no swap (it preempts by recompute)" 2
fi
swap="${swap:-per-block}"
scheduler_cls="$(scheduler_class "$scheduler")" || die "--scheduler must be cfs or fair, got '$scheduler'" 2
worker_cls="$(swap_worker_class "$swap")" || die "--swap must be per-block or staged, got '$swap'" 2
# A point of the sweep is one server start: "p<interval>" for CFS, "fair" for FairScheduler. Its
# name prefixes the client files and names the server log.
if [[ "$scheduler" == fair ]]; then
    [[ -z "$intervals" ]] || die "--intervals applies to --scheduler cfs only (FairScheduler has no interval)" 2
    interval_list=()
    points=(fair)
else
    read -r -a interval_list <<<"${intervals:-0 5 10 20 40}"
    [[ ${#interval_list[@]} -gt 0 ]] || die "--intervals is empty" 2
    points=()
    for interval in "${interval_list[@]}"; do
        is_whole_number "$interval" || die "intervals must be whole numbers >= 0, got '$interval'" 2
        points+=("p$interval")
    done
fi
is_whole_number "$runs" && [[ "$runs" -ge 1 ]] || die "--runs must be a number >= 1, got '$runs'" 2
is_whole_number "$startup_timeout" && [[ "$startup_timeout" -ge 1 ]] || die "--startup-timeout must be a number of seconds >= 1, got '$startup_timeout'" 2
[[ -z "$log_name" || ${#points[@]} -eq 1 ]] || die "--log works with one interval only" 2
[[ -z "$port" ]] || is_whole_number "$port" || die "--port must be a number, got '$port'" 2
port="${port:-$(free_port)}"
command -v curl >/dev/null || die "curl is needed to check the server's /health"
[[ "$ENGINE" == v0 ]] || check_v1_python

mkdir -p "$out" || die "cannot create $out"
model="$(model_dir)" || die "cannot find or build the model folder"
cp "$model/config.json" "$out/model_config.json"
if [[ "$scheduler" == fair ]]; then
    policy_settings=(--setting "fair_patience_tokens=${FAIR_PATIENCE_TOKENS:-8 (default)}")
else
    policy_settings=(--setting "intervals=${interval_list[*]}"
                     --setting "cfs_min_granularity=${CFS_MIN_GRANULARITY:-the interval (default)}")
fi
default_worker="vLLM's default"  # what env.txt records when no --worker-cls is given
if [[ "$ENGINE" == v0 ]]; then
    engine_settings=(--setting "preemption_mode=swap" --setting "swap_space_gib=16"
                     --setting "swap=$swap" --setting "worker_cls=${worker_cls:-$default_worker}")
else
    engine_settings=(--setting "engine=v1" --setting "preemption_mode=recompute (vLLM V1 has no swap)"
                     --setting "gpu_blocks=$V1_GPU_BLOCKS GPU blocks per GPU, V0's budget (--num-gpu-blocks-override $V1_GPU_BLOCKS)")
fi
"$PYTHON" -m vllm_cfs.experiment.environment --gpu "$(gpu_description)" \
    --setting "scheduler=$scheduler_cls" "${policy_settings[@]}" --setting "runs_per_interval=$runs" \
    --setting "num_prompts=$NUM_PROMPTS" --setting "request_rate=$REQUEST_RATE" --setting "seed=$SEED" \
    --setting "dataset=$DATASET" --setting "random_input_len=$RANDOM_INPUT_LEN" \
    --setting "random_output_len=$RANDOM_OUTPUT_LEN" --setting "client_args=${client_args[*]}" \
    --setting "model=$SERVED_MODEL_NAME ($model)" --setting "tensor_parallel_size=2" \
    "${engine_settings[@]}" --setting "startup_timeout_s=$startup_timeout" >"$out/env.txt"

# V0's servers get the swap path; V1's the engine (and no swap: it has none).
server_engine_args=(--swap "$swap")
[[ "$ENGINE" == v0 ]] || server_engine_args=(--engine v1)
server_pid=""
server_pgid=""
client_pid=""

group_alive() { kill -0 -- "-$server_pgid" 2>/dev/null; }

start_server() {  # interval (fair ignores it), log file
    if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/health"; then
        die "something already serves on port $port; pick another with --port"
    fi
    # setsid: the server (API process and engine process) gets its own process group, so that
    # stopping it reaches every process it started.
    CFS_INTERVAL="$1" setsid "$HW2_DIR/server.sh" --port "$port" --log "$2" --scheduler "$scheduler" "${server_engine_args[@]}" \
        </dev/null >>"$2" 2>&1 &
    server_pid=$!
    # Its group id is its pid once setsid() has run in the child; until then ps reports this
    # script's own group, and stopping that would stop this script and whoever started it.
    for _ in $(seq 100); do
        [[ "$(ps -o pgid= -p "$server_pid" | tr -d ' ')" == "$server_pid" ]] && { server_pgid=$server_pid; break; }
        kill -0 "$server_pid" 2>/dev/null || return 0  # it exited at once: wait_healthy says why
        sleep 0.1
    done
    if [[ -z "$server_pgid" ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        die "the server (pid $server_pid) did not get a process group of its own within 10 s"
    fi
    say "server started (pid $server_pid, process group $server_pgid), port $port, log $2"
}

wait_healthy() {  # log file
    local started=$SECONDS
    local next_note=$((SECONDS + 15))
    while (( SECONDS - started < startup_timeout )); do
        if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/health"; then
            say "server healthy after $((SECONDS - started)) s"
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            wait "$server_pid" 2>/dev/null && code=0 || code=$?
            say "server exited during start (code $code); last lines of $1:"
            tail -n 5 "$1" >&2
            return 1
        fi
        if (( SECONDS >= next_note )); then
            say "waiting for the server's /health ($((SECONDS - started)) s of $startup_timeout s)"
            next_note=$((SECONDS + 15))
        fi
        sleep 1
    done
    say "server not healthy after $startup_timeout s; last lines of $1:"
    tail -n 5 "$1" >&2
    return 1
}

stop_server() {
    [[ -n "$server_pgid" ]] || return 0
    kill -TERM -- "-$server_pgid" 2>/dev/null || true
    for _ in $(seq 20); do group_alive || break; sleep 1; done
    if group_alive; then
        say "server group $server_pgid still running 20 s after SIGTERM: SIGKILL"
        kill -KILL -- "-$server_pgid" 2>/dev/null || true
        sleep 1
    fi
    wait "$server_pid" 2>/dev/null || true
    if group_alive; then
        echo "$(basename "$0"): error: processes of server group $server_pgid survived SIGKILL" >&2
        return 1
    fi
    say "server stopped (process group $server_pgid is gone)"
    server_pgid=""
}

stop_client() {
    if [[ -n "$client_pid" ]]; then kill -TERM "$client_pid" 2>/dev/null || true; wait "$client_pid" 2>/dev/null || true; fi
}

trap 'stop_client; stop_server' EXIT
trap 'say "interrupted"; exit 130' INT TERM

failed_runs=0
count=0
if [[ "$scheduler" == fair ]]; then what="$scheduler_cls"; else what="intervals ${interval_list[*]}"; fi
how="$swap swap"
[[ "$ENGINE" == v0 ]] || how="vLLM V1 (recompute preemption)"
say "GPU: $(gpu_description); $what, $how, $runs run(s) each, into $out"
# Said in the marker lines and progress too when it is not vLLM's own path.
swap_note=""
[[ "$swap" == per-block ]] || swap_note=", $swap swap"
for point in "${points[@]}"; do
    count=$((count + 1))
    if [[ "$point" == fair ]]; then
        interval=""
        setting="$scheduler_cls, FAIR_PATIENCE_TOKENS=${FAIR_PATIENCE_TOKENS:-8}$swap_note"
    else
        interval="${point#p}"
        setting="CFS_INTERVAL=$interval$swap_note"
    fi
    log="$out/${log_name:-server_$point.log}"
    say "$setting ($count of ${#points[@]}): starting the server"
    start_server "$interval" "$log"
    if ! wait_healthy "$log"; then
        stop_server
        die "the server for $setting did not start; its log is kept in $log"
    fi
    for run in $(seq "$runs"); do
        say "$setting, run $run of $runs"
        # The analysis cuts the log into runs at these lines.
        echo "vllm-cfs hw2 marker: run $run of $runs, $setting, $(date '+%Y-%m-%dT%H:%M:%S%z')" >>"$log"
        # On V1, prefix caching is on (vLLM's default) and one server serves every run of a point, so
        # run 2 of the same prompts would find run 1's blocks cached and look faster for that alone.
        # Each run's requests carry a salt of their own (vLLM's cache_salt, client --cache-salt):
        # no run can hit an earlier one's blocks, and within a run the cache works as vLLM's
        # defaults make it. (vLLM 0.24 resets the cache only through its dev-mode endpoints, and
        # turning prefix caching off would change V1's defaults and leave CPU offloading's store,
        # keyed by the same block hashes, serving run 1's KV to run 2.)
        run_args=()
        [[ "$ENGINE" == v0 ]] || run_args=(--cache-salt "hw2-${point}-r${run}")
        # In the background, so that a signal reaches this script's trap while the burst runs.
        "$HW2_DIR/client.sh" --port "$port" --out "$out/${point}_r${run}" --label "${point}_r${run}" \
            -- "${run_args[@]}" "${client_args[@]}" >/dev/null &
        client_pid=$!
        code=0
        wait "$client_pid" || code=$?
        client_pid=""
        case "$code" in
            0) say "run $run: $(grep -h '^P99 TTFT' "$out/${point}_r${run}.txt"), $(grep -h '^P99 TPOT' "$out/${point}_r${run}.txt")" ;;
            1) failed_runs=$((failed_runs + 1)); say "run $run of $setting had failed requests (see $out/${point}_r${run}.txt)" ;;
            *) die "the client stopped with code $code (bad arguments?)" ;;
        esac
        if [[ "$ENGINE" == v1 ]]; then
            # V1's counters since the server started, after this run: the analysis takes a run's
            # preemptions as the difference to the run before on this server (hw2/analyze.py).
            metrics="$out/${point}_r${run}.metrics"
            curl -sf --max-time 10 -o "$metrics.part" "http://127.0.0.1:$port/metrics" && mv "$metrics.part" "$metrics" \
                || { rm -f "$metrics.part"; say "could not read the server's /metrics after run $run (preemptions: from the log)"; }
        fi
    done
    stop_server || die "could not stop the server for $setting"
done
trap - EXIT

if [[ $failed_runs -gt 0 ]]; then
    say "done, but $failed_runs run(s) had failed requests; results in $out"
    exit 3
fi
say "done: results in $out"
