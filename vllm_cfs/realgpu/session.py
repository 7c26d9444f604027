"""Serve and burst on a GPU host: one ``vllm serve`` per policy, bursts from our client, results kept.

    python3 -m vllm_cfs.realgpu.session --model /root/vllm-cfs/model --out runs/ \\
        --policies fcfs ours cfs-10 --gpu-blocks 1028 --seeds 0 1 2 --all-at-once-seed 3

Each policy gets a fresh server (no prefix cache or host KV cache left from another policy's
runs), vLLM's real OpenAI server on the GPU with ``--load-format dummy`` (random weights: real
kernels, memory and timing, no download). The policies are the V1 lab's (vllm_cfs.lab.policies):

- ``fcfs``: vLLM V1's own scheduling. It runs as our CFSScheduler with CFS_INTERVAL=0, which
  decides step for step as vLLM's scheduler (tests/v1/core) and also counts the recomputed tokens
  (vLLM's metrics count a prompt once, so they cannot give the recompute tax);
- ``ours``: FairScheduler with vLLM's CPU offloading (native, 16 GiB), as ``vllm-cfs serve`` starts it;
- ``cfs-N``: the assignment's CFS, a CFS step every N steps.

Runs within one server use distinct seeds, so no run's prompts hit another's cache. For every
run: ``<policy>-<burst>.json`` (vllm_cfs.results, the schema of every other run of ours),
``.txt`` (our report), ``.metrics`` (/metrics after it), and a row of ``summary.json``: the four
figures, vLLM's preemptions and the scheduler's recompute tax, each the run's own (counter after
minus before). ``server-<policy>.log`` holds each server's output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

from vllm_cfs.analysis.prometheus import PREEMPTIONS, PREFIX_CACHE_HITS, parse_metrics
from vllm_cfs.analysis.server_log_v1 import V1PolicyCounters, read_v1_line
from vllm_cfs.results import RunResult

SERVED_MODEL_NAME = "codellama/CodeLlama-34b-hf"
REPO = Path(__file__).resolve().parents[2]
POLICY_ARGS = {
    "fcfs": ("vllm_cfs.CFSScheduler", {"CFS_INTERVAL": "0"}, ()),
    "ours": ("vllm_cfs.FairScheduler", {}, ("--kv-offloading-backend", "native", "--kv-offloading-size", "16")),
}
POLICY_NAMES = "fcfs, ours, cfs-N"
HEALTH_TIMEOUT_S = 600


class SessionError(Exception):
    """Something that stops the session; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Burst:
    name: str  # "rate3-s0", "all-s3"
    rate: float
    seed: int


def policy_args(policy: str) -> tuple[str, dict[str, str], tuple[str, ...]]:
    if policy in POLICY_ARGS:
        return POLICY_ARGS[policy]
    if policy.startswith("cfs-") and policy[4:].isdigit() and int(policy[4:]) > 0:
        return "vllm_cfs.CFSScheduler", {"CFS_INTERVAL": policy[4:]}, ()
    raise SessionError(f"unknown policy {policy!r}: use {POLICY_NAMES}")


def serve_command(model: Path, policy: str, gpu_blocks: Optional[int], tensor_parallel: int, port: int,
                  max_model_len: int, load_format: str = "dummy",
                  log_steps: bool = False) -> tuple[list[str], dict[str, str]]:
    scheduler, env, extra = policy_args(policy)
    command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(model),
               "--served-model-name", SERVED_MODEL_NAME, "--load-format", load_format,
               "--tensor-parallel-size", str(tensor_parallel), "--max-model-len", str(max_model_len),
               "--host", "127.0.0.1", "--port", str(port), "--scheduler-cls", scheduler, *extra]
    if gpu_blocks is not None:
        command += ["--num-gpu-blocks-override", str(gpu_blocks)]
    if log_steps:
        command.append("--enable-logging-iteration-details")
    # FlashInfer is not in the bundle; its sampler is the only part a Llama model would load.
    env = {"VLLM_USE_FLASHINFER_SAMPLER": "0", "VLLM_LOG_STATS_INTERVAL": "5", "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", **env}
    return command, env


def fetch(url: str, timeout: float = 10) -> Optional[str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError):
        return None


class Server:
    """One ``vllm serve`` process, its output appended to a log, stopped on exit."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, port: int):
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = log
        if fetch(self.base_url + "/health", timeout=2) is not None:
            raise SessionError(f"a server already answers on port {port}: stop it first (its bursts would be "
                               "measured instead)")
        with log.open("ab") as out:
            out.write(f"$ {' '.join(command)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                            start_new_session=True)
        self.started = time.monotonic()

    def wait_healthy(self) -> float:
        while time.monotonic() - self.started < HEALTH_TIMEOUT_S:
            if self.process.poll() is not None:
                raise SessionError(f"the server exited with code {self.process.returncode} before it was healthy: "
                                   f"see {self.log}")
            if fetch(self.base_url + "/health", timeout=2) is not None:
                return time.monotonic() - self.started
            time.sleep(1)
        raise SessionError(f"the server was not healthy within {HEALTH_TIMEOUT_S} s: see {self.log}")

    def metrics(self) -> dict[str, float]:
        text = fetch(self.base_url + "/metrics")
        if text is None:
            raise SessionError(f"/metrics did not answer: see {self.log}")
        return parse_metrics(text)

    def wait_drained(self, timeout_s: float = 60) -> None:
        """Until nothing runs or waits, so the scheduler's stats line at drain is in the log."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = self.metrics()
            if m.get("vllm:num_requests_running", 0) == 0 and m.get("vllm:num_requests_waiting", 0) == 0:
                time.sleep(1)  # the engine core logs right after its last step
                return
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def policy_counters(log: Path) -> dict[str, int]:
    """The scheduler's last cumulative counters in the server log (zeros before any line)."""
    last: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        parsed = read_v1_line(line)
        if isinstance(parsed, V1PolicyCounters):
            last = parsed.counters
    return last


def run_client(base_url: str, model: Path, burst: Burst, num_prompts: int, input_len: int, output_len: int,
               gpu: str, prefix: Path) -> RunResult:
    command = [sys.executable, str(REPO / "benchmarks" / "benchmark_serving.py"), "--base-url", base_url,
               "--model", SERVED_MODEL_NAME, "--tokenizer", str(model), "--gpu", gpu,
               "--dataset-name", "random", "--random-input-len", str(input_len),
               "--random-output-len", str(output_len), "--num-prompts", str(num_prompts),
               "--request-rate", "inf" if math.isinf(burst.rate) else str(burst.rate), "--seed", str(burst.seed),
               "--label", prefix.name, "--result-json", f"{prefix}.json", "--result-text", f"{prefix}.txt",
               "--no-progress"]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SessionError(f"the client failed on {prefix.name}: {completed.stderr.strip().splitlines()[-1:]}")
    return RunResult.load(f"{prefix}.json")


def run_vllm_bench(base_url: str, model: Path, burst: Burst, num_prompts: int, input_len: int, output_len: int,
                   out: Path, name: str) -> None:
    """vLLM's own client on the same kind of burst, for its figures beside ours."""
    command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "vllm",
               "--base-url", base_url, "--model", SERVED_MODEL_NAME, "--tokenizer", str(model),
               "--dataset-name", "random", "--random-input-len", str(input_len), "--random-output-len",
               str(output_len), "--num-prompts", str(num_prompts), "--request-rate",
               "inf" if math.isinf(burst.rate) else str(burst.rate), "--seed", str(burst.seed), "--ignore-eos",
               "--save-result", "--result-dir", str(out), "--result-filename", f"{name}.json"]
    with (out / f"{name}.txt").open("w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def summary_row(policy: str, burst: Burst, result: RunResult, before: dict, after: dict,
                counters_before: dict, counters_after: dict) -> dict:
    s = result.summary
    computed = counters_after.get("tokens_computed", 0) - counters_before.get("tokens_computed", 0)
    recomputed = counters_after.get("tokens_recomputed", 0) - counters_before.get("tokens_recomputed", 0)
    return {
        "policy": policy, "burst": burst.name, "rate": burst.rate, "seed": burst.seed,
        "completed": s.completed, "failed": s.failed,
        "p99_ttft_ms": s.p99_ttft_ms, "p99_tpot_ms": s.p99_tpot_ms, "p99_itl_ms": s.p99_itl_ms,
        "output_tok_s": s.output_throughput, "median_ttft_ms": s.median_ttft_ms,
        "preemptions": after.get(PREEMPTIONS, 0) - before.get(PREEMPTIONS, 0),
        "prefix_cache_hit_tokens": after.get(PREFIX_CACHE_HITS, 0) - before.get(PREFIX_CACHE_HITS, 0),
        "victims": counters_after.get("victims", 0) - counters_before.get("victims", 0),
        "tokens_computed": computed, "tokens_recomputed": recomputed,
        "recompute_tax": recomputed / computed if computed else 0.0,
    }


def run_policy(args, policy: str, bursts: Sequence[Burst]) -> list[dict]:
    command, env = serve_command(args.model, policy, args.gpu_blocks, args.tensor_parallel_size, args.port,
                                 args.max_model_len, args.load_format, args.log_steps)
    log = args.out / f"server-{policy}.log"
    server = Server(command, env, log, args.port)
    rows = []
    try:
        healthy_s = server.wait_healthy()
        print(f"{policy}: healthy after {healthy_s:.0f} s", flush=True)
        for burst in bursts:
            before, counters_before = server.metrics(), policy_counters(log)
            result = run_client(server.base_url, args.model, burst, args.num_prompts, args.input_len,
                                args.output_len, args.gpu, args.out / f"{policy}-{burst.name}")
            server.wait_drained()
            after = server.metrics()
            (args.out / f"{policy}-{burst.name}.metrics").write_text(json.dumps(after, indent=0))
            row = summary_row(policy, burst, result, before, after, counters_before, policy_counters(log))
            rows.append(row)
            print(f"{policy} {burst.name}: P99 TTFT {row['p99_ttft_ms']:.0f} ms, P99 TPOT {row['p99_tpot_ms']:.1f} "
                  f"ms, P99 ITL {row['p99_itl_ms']:.1f} ms, {row['output_tok_s']:.1f} tok/s, "
                  f"{row['preemptions']:.0f} preemptions, recompute tax {100 * row['recompute_tax']:.1f}%",
                  flush=True)
        if args.vllm_bench_seed is not None:
            run_vllm_bench(server.base_url, args.model, Burst("vllm-bench", args.rate, args.vllm_bench_seed),
                           args.num_prompts, args.input_len, args.output_len, args.out, f"{policy}-vllm-bench")
    finally:
        server.stop()
    return rows


def bursts_of(args) -> list[Burst]:
    bursts = [Burst(f"rate{args.rate:g}-s{seed}", args.rate, seed) for seed in args.seeds]
    if args.all_at_once_seed is not None:
        bursts.append(Burst(f"all-s{args.all_at_once_seed}", math.inf, args.all_at_once_seed))
    seeds = [b.seed for b in bursts] + ([args.vllm_bench_seed] if args.vllm_bench_seed is not None else [])
    if len(set(seeds)) != len(seeds):
        raise SessionError("every burst on one server needs its own seed (a repeated one hits the prefix cache)")
    return bursts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="session", description="On a GPU host: one vLLM V1 server per policy "
                                     "(dummy weights), bursts from our client, results and a summary.")
    parser.add_argument("--model", type=Path, required=True, help="the CodeLlama-34B model folder (config, tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="folder for results, logs and summary.json")
    parser.add_argument("--policies", nargs="+", default=["fcfs", "ours", "cfs-10"], help=POLICY_NAMES)
    parser.add_argument("--gpu-blocks", type=int, default=1028,
                        help="--num-gpu-blocks-override (default 1028, the reference 2 x A100-40GB's; 0: the GPU's own)")
    parser.add_argument("-tp", "--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--load-format", default="dummy",
                        help="vLLM's --load-format (default dummy: random weights; auto: the folder's weights)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="one burst at --rate per seed")
    parser.add_argument("--rate", type=float, default=3.0, help="requests per second (default 3)")
    parser.add_argument("--all-at-once-seed", type=int, default=None, help="also one burst of all requests at once")
    parser.add_argument("--vllm-bench-seed", type=int, default=None,
                        help="also one burst at --rate from vLLM's own `vllm bench serve`")
    parser.add_argument("--num-prompts", type=int, default=50)
    parser.add_argument("--input-len", type=int, default=1024)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--gpu", default="real GPU", help="what the results say the server ran on")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-steps", action="store_true",
                        help="vLLM logs every step's prefill and decode tokens and its time "
                             "(--enable-logging-iteration-details): what the simulator's step cost is checked on")
    args = parser.parse_args(argv)
    args.gpu_blocks = args.gpu_blocks or None
    # `timeout` and the like stop us with SIGTERM: exit through the finally blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if not (args.model / "config.json").is_file():
            raise SessionError(f"{args.model} holds no config.json: give the bundle's model folder")
        for policy in args.policies:
            policy_args(policy)
        bursts = bursts_of(args)
        args.out.mkdir(parents=True, exist_ok=True)
        rows: list[dict] = []
        for policy in args.policies:
            rows += run_policy(args, policy, bursts)
            (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    except SessionError as error:
        print(f"session: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
