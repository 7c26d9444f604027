"""Load: a burst of requests all at once on the simulated vLLM server, and what it left behind.

Starts the real vLLM 0.9.0 OpenAI server (V0 engine, CFS scheduler) on simulated GPUs (a fast
profile, so the burst takes minutes here), fires every request at once through our burst client,
samples the server's /metrics and the memory (RSS) of its whole process group while it runs,
then waits for it to go idle. Prints P99 TTFT, duration, peak swapped requests and KV usage,
peak RSS, and a verdict: every request completed with exactly its max_tokens, no error, no KV
block left in use once idle, RSS growth within the bound. Exit code 1 if any of these fails.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.datasets import WorkloadError, load_tokenizer
from vllm_cfs.bench.server_metrics import KV_AND_QUEUE_GAUGES, SHOW_SWAP_GAUGES, read_gauges
from vllm_cfs.bench.workload import DATASETS, WorkloadConfig, build_workload
from vllm_cfs.sim.model_dir import codellama_34b_dir
from vllm_cfs.sim.server import ServerOptions, ServerStartError, simulated_server

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def process_group_rss(pgid: int) -> int:
    """Resident memory, in bytes, of every process in the group (API server and engine)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                # Fields after the parenthesised command name: state ppid pgrp ...
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{entry.name}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return total


@dataclass
class Sampler:
    """Samples the server's gauges and RSS every ``period_s`` on a thread, keeping the peaks."""

    base_url: str
    pgid: int
    period_s: float = 0.5
    samples: int = 0
    peak: Dict[str, float] = field(default_factory=dict)
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Sampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.peak_rss = max(self.peak_rss, process_group_rss(self.pgid))
            try:
                reading = read_gauges(self.base_url)
            except (OSError, urllib.error.URLError):
                continue  # a slow /metrics under load; the next sample will do
            self.samples += 1
            for name, value in reading.items():
                self.peak[name] = max(self.peak.get(name, 0.0), value)


def wait_idle(base_url: str, timeout_s: float) -> Dict[str, float]:
    """Gauges once nothing is running, waiting or swapped and no KV is in use (or at timeout).

    When idle the engine refreshes the gauges every 10 s, so allow at least that long.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        reading = read_gauges(base_url)
        if len(reading) == len(KV_AND_QUEUE_GAUGES) and not any(reading.values()):
            return reading
        if time.monotonic() > deadline:
            return reading
        time.sleep(0.5)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="load_burst.py",
        description="Fire a burst of requests all at once at vLLM on simulated GPUs and check that "
                    "every request completes, no KV block leaks and server memory stays bounded.")
    parser.add_argument("--num-prompts", type=int, default=1000, help="requests in the burst (default: %(default)s)")
    parser.add_argument("--dataset", choices=DATASETS, default="sharegpt",
                        help="prompts and output lengths (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="workload seed (default: %(default)s)")
    parser.add_argument("--profile", default="h200",
                        help="simulated GPU profile: a100-40gb, a100-80gb, h100-80gb, h200, h200-vllm-v1 or a profile "
                             "JSON path (default: %(default)s, fast, so the burst runs in minutes)")
    parser.add_argument("--interval", type=int, default=10,
                        help="CFS_INTERVAL for the server; 0 = vLLM's FCFS (default: %(default)s)")
    parser.add_argument("--num-gpu-blocks", type=int, default=1282,
                        help="GPU KV blocks; the default (the reference A100-40GB pair's cache before the "
                             "recalibration, now 1028) makes the burst overflow the GPU so that CFS swaps; "
                             "0 = what the profile holds")
    parser.add_argument("--swap-space", type=float, default=16, help="CPU swap space per GPU, GiB (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=1800, help="per-request timeout, s (default: %(default)s)")
    parser.add_argument("--max-rss-growth-mib", type=float, default=2048,
                        help="fail if the server's RSS grows by more than this during the burst (default: %(default)s)")
    parser.add_argument("--server-log", type=Path, help="keep the server log here (default: a temporary file)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    if args.num_prompts < 1:
        parser.error(f"--num-prompts must be at least 1, got {args.num_prompts}")
    if args.interval < 0:
        parser.error(f"--interval must be 0 or more, got {args.interval}")
    if args.num_gpu_blocks < 0:
        parser.error(f"--num-gpu-blocks must be 0 or more, got {args.num_gpu_blocks}")
    if not (args.swap_space >= 0 and math.isfinite(args.swap_space)):
        parser.error(f"--swap-space must be a number of GiB >= 0, got {args.swap_space}")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    return args, parser


def main(argv=None) -> int:
    """benchmarks/load_burst.py: 0 when every check passes, 1 when one fails, 130 on Ctrl-C."""
    args, parser = parse_args(argv)
    model_dir = codellama_34b_dir()
    try:
        workload = build_workload(WorkloadConfig(args.dataset, num_prompts=args.num_prompts,
                                                 request_rate=math.inf, seed=args.seed),
                                  load_tokenizer(model_dir))
    except WorkloadError as exc:
        parser.error(str(exc))
    extra = list(SHOW_SWAP_GAUGES)
    if args.num_gpu_blocks:
        extra += ["--num-gpu-blocks-override", str(args.num_gpu_blocks)]
    log_path = args.server_log or Path(tempfile.mkstemp(prefix="load-burst-", suffix=".log")[1])
    options = ServerOptions(profile=args.profile, scheduler_cls="vllm_cfs.CFSScheduler",
                            cfs_interval=args.interval, swap_space_gib=args.swap_space,
                            model_dir=model_dir, log_path=log_path, extra_args=tuple(extra))
    print(f"vLLM 0.9.0 OpenAI server on SIMULATED GPUs ({args.profile}, tensor parallel 2), "
          f"CFS_INTERVAL={args.interval}; {args.num_prompts} {workload.source} requests at once; "
          f"server log: {log_path}", flush=True)
    try:
        with simulated_server(options) as server:
            blocks = re.findall(r"# \S+ \(simulated [^)]*\) blocks: (\d+), # CPU blocks: (\d+)", server.log_text())
            rss_start = process_group_rss(server.pid)
            client = ClientConfig(base_url=server.base_url, model=server.served_model_name,
                                  timeout_s=args.timeout, progress=not args.no_progress)
            setup = {"gpu": f"simulated {args.profile} x2", "num_prompts": args.num_prompts,
                     "request_rate": "inf", "cfs_interval": args.interval}
            with Sampler(server.base_url, server.pid) as sampler:
                result = run_burst(workload.requests, client, setup)
            idle = wait_idle(server.base_url, timeout_s=30)
            rss_end = process_group_rss(server.pid)
    except ServerStartError as exc:
        print(f"{parser.prog}: the server did not start: {str(exc).splitlines()[0]} (log: {log_path})",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130

    summary = result.summary
    exact = [r for r in result.records if r.success and r.output_tokens == r.expected_output_tokens]
    peak_rss = max(sampler.peak_rss, rss_start, rss_end)
    growth_mib = (peak_rss - rss_start) / MIB
    checks = {
        "every request completed with exactly its max_tokens": len(exact) == len(result.records),
        "no request failed": not result.failed,
        "no KV block in use once idle (GPU and CPU)": (
            idle.get("vllm:gpu_cache_usage_perc") == 0 and idle.get("vllm:cpu_cache_usage_perc") == 0),
        f"server RSS grew by at most {args.max_rss_growth_mib:g} MiB": growth_mib <= args.max_rss_growth_mib,
    }
    gpu_blocks, cpu_blocks = blocks[-1] if blocks else ("?", "?")
    lines = [
        f"KV blocks: {gpu_blocks} GPU, {cpu_blocks} CPU (simulated {args.profile})",
        f"requests: {len(result.records)} sent, {summary.completed} completed, {summary.failed} failed, "
        f"{len(exact)} with exactly max_tokens",
        f"tokens: {summary.total_input_tokens} prompt, {summary.total_output_tokens} output",
        f"duration: {summary.duration_s:.1f} s",
        f"P99 TTFT: {summary.p99_ttft_ms / 1000:.2f} s (median {summary.median_ttft_ms / 1000:.2f} s)"
        if summary.p99_ttft_ms is not None else "P99 TTFT: n/a",
        f"P99 TPOT: {summary.p99_tpot_ms:.1f} ms" if summary.p99_tpot_ms is not None else "P99 TPOT: n/a",
        f"peak swapped: {sampler.peak.get('vllm:num_requests_swapped', 0):.0f} requests, "
        f"peak running: {sampler.peak.get('vllm:num_requests_running', 0):.0f}, "
        f"peak waiting: {sampler.peak.get('vllm:num_requests_waiting', 0):.0f} "
        f"({sampler.samples} /metrics samples)",
        f"peak KV usage: GPU {100 * sampler.peak.get('vllm:gpu_cache_usage_perc', 0):.1f}%, "
        f"CPU {100 * sampler.peak.get('vllm:cpu_cache_usage_perc', 0):.1f}%",
        f"idle after: GPU KV {100 * idle.get('vllm:gpu_cache_usage_perc', float('nan')):.1f}%, "
        f"CPU KV {100 * idle.get('vllm:cpu_cache_usage_perc', float('nan')):.1f}%, "
        f"running {idle.get('vllm:num_requests_running', float('nan')):.0f}, "
        f"swapped {idle.get('vllm:num_requests_swapped', float('nan')):.0f}",
        f"server RSS (process group): {rss_start / MIB:.0f} MiB before, {peak_rss / MIB:.0f} MiB peak, "
        f"{rss_end / MIB:.0f} MiB after",
    ]
    lines += [f"[{'ok' if passed else 'FAIL'}] {name}" for name, passed in checks.items()]
    for record in result.failed[:5]:
        lines.append(f"  request {record.index}: {record.error}")
    print("\n".join(lines))
    return 0 if all(checks.values()) else 1

