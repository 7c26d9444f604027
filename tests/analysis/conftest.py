"""One real server log for the analysis tests: vLLM on the simulated GPU with our CFS scheduler,
two bursts separated by the marker lines hw2/sweep.sh writes."""

from __future__ import annotations

import dataclasses
import datetime
import math
from pathlib import Path

import pytest

from vllm_cfs.analysis.server_log import MARKER
from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.results import RunResult
from vllm_cfs.bench.workload import WorkloadConfig, build_workload
from vllm_cfs.sim.model_dir import codellama_34b_dir
from vllm_cfs.sim.server import ServerOptions, simulated_server

# 12 prompts of 1500 tokens need more KV blocks than the simulated 2 x A100-40GB has left after
# the weights, so requests wait and CFS swaps some out. vLLM logs a stats line every 5 s at a phase
# the test cannot choose: 250 output tokens keep the first burst busy for well over 10 s of
# modelled time, so it logs at least two lines; the second burst (200 steps) at least one.
FIRST_BURST = WorkloadConfig("random", num_prompts=12, request_rate=math.inf, seed=3,
                             random_input_len=1500, random_output_len=250)
SECOND_BURST = WorkloadConfig("random", num_prompts=4, request_rate=math.inf, seed=4,
                              random_input_len=64, random_output_len=200)


@dataclasses.dataclass
class ServedLog:
    path: Path
    model_dir: Path  # the shipped folder that the served hub id resolves to
    bursts: list[RunResult]
    marked_at: list[datetime.datetime]  # local time of each marker (the log's clock)
    finished_at: datetime.datetime


@pytest.fixture(scope="session")
def served_log(tmp_path_factory) -> ServedLog:
    log_path = tmp_path_factory.mktemp("served") / "vllm_server.log"
    model_dir = codellama_34b_dir()
    tokenizer = load_tokenizer(model_dir)
    options = ServerOptions(scheduler_cls="vllm_cfs.CFSScheduler", cfs_interval=10, log_path=log_path)
    bursts, marked_at = [], []
    with simulated_server(options) as server:
        client = ClientConfig(base_url=server.base_url, model=server.served_model_name, timeout_s=300, progress=False)
        for run, config in enumerate((FIRST_BURST, SECOND_BURST), start=1):
            marked_at.append(datetime.datetime.now().replace(microsecond=0))
            with open(log_path, "a") as log:
                log.write(f"{MARKER} run {run} of 2, CFS_INTERVAL=10, test\n")
            workload = build_workload(config, tokenizer)
            bursts.append(run_burst(workload.requests, client, {"gpu": "simulated a100-40gb x2"}))
        finished_at = datetime.datetime.now()
    return ServedLog(log_path, model_dir, bursts, marked_at, finished_at)
