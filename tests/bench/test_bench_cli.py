"""benchmarks/benchmark_serving.py as users run it: a subprocess, real sockets, its exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vllm_cfs.results import RunResult

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "benchmark_serving.py"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def test_help():
    done = cli("--help")
    assert done.returncode == 0
    for option in ("--base-url", "--tokenizer", "--dataset-name", "--request-rate", "--burstiness", "--seed",
                   "--timeout", "--result-json", "--result-text", "--random-range-ratio"):
        assert option in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--request-rate", "-1"], "request rate must be positive"),
    (["--request-rate", "fast"], "invalid float value: 'fast'"),
    (["--burstiness", "0"], "burstiness must be a positive number"),
    (["--num-prompts", "0"], "number of prompts must be at least 1"),
    (["--dataset-name", "imagenet"], "invalid choice: 'imagenet'"),
    (["--timeout", "0"], "--timeout must be a positive number"),
    (["--base-url", "127.0.0.1:8000"], "--base-url must start with http://"),
    (["--dataset-path", "/nonexistent/sharegpt.json"], "dataset file /nonexistent/sharegpt.json does not exist"),
    (["--tokenizer", "/nonexistent/tokenizer"], "tokenizer folder /nonexistent/tokenizer does not exist"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, tiny_tokenizer_dir):
    if "--tokenizer" not in args:
        args = ["--tokenizer", str(tiny_tokenizer_dir), *args]
    done = cli(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("benchmark_serving.py: error: ")
    assert message in done.stderr
    assert done.stdout == ""


def test_an_unusable_tokenizer_folder_is_one_line(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{ this is not a tokenizer")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "PreTrainedTokenizerFast"}')
    done = cli("--tokenizer", str(tmp_path), "--dataset-name", "random")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"benchmark_serving.py: error: cannot load a tokenizer from {tmp_path}: ")


def test_a_tokenizer_is_required_unless_the_model_is_a_folder():
    # (codellama/CodeLlama-34b-hf, the one hub id with a local folder here, needs no --tokenizer)
    done = cli("--model", "meta-llama/Llama-2-7b-hf")
    assert done.returncode == 2
    assert "--tokenizer PATH is required" in done.stderr


def test_a_burst_against_a_live_server_writes_the_report_and_every_record(completion_server, tiny_tokenizer_dir,
                                                                        tmp_path):
    json_path, text_path = tmp_path / "out" / "burst.json", tmp_path / "out" / "burst.txt"
    done = cli("--base-url", completion_server.url("ok"), "--tokenizer", str(tiny_tokenizer_dir),
               "--dataset-name", "random", "--random-input-len", "30", "--random-output-len", "6",
               "--num-prompts", "6", "--request-rate", "inf", "--seed", "5", "--label", "smoke",
               "--gpu", "none (a test server)", "--result-json", str(json_path), "--result-text", str(text_path))
    assert done.returncode == 0, done.stderr
    assert text_path.read_text() == done.stdout
    assert "Successful requests: 6" in done.stdout
    assert "requests: 100%" in done.stderr  # the progress bar
    result = RunResult.load(json_path)
    assert [r.index for r in result.records] == list(range(6))
    assert all(r.success and r.output_tokens == 6 for r in result.records)
    assert result.setup["label"] == "smoke" and result.setup["request_rate"] == "inf"
    assert result.setup["gpu"] == "none (a test server)" and result.setup["seed"] == 5
    assert len(completion_server.received) == 6


def test_failed_requests_are_reported_and_make_the_exit_code_non_zero(closed_port, tiny_tokenizer_dir, tmp_path):
    json_path = tmp_path / "burst.json"
    done = cli("--base-url", f"http://127.0.0.1:{closed_port}", "--tokenizer", str(tiny_tokenizer_dir),
               "--dataset-name", "humaneval", "--num-prompts", "4", "--request-rate", "50",
               "--no-progress", "--result-json", str(json_path))
    assert done.returncode == 1
    assert "Failed requests: 4" in done.stdout
    assert done.stdout.count("FAILED: cannot connect to") == 4
    assert done.stderr.strip().endswith("4 of 4 requests failed; first: request 0: cannot connect to "
                                        f"http://127.0.0.1:{closed_port}: Connection refused")
    result = RunResult.load(json_path)
    assert len(result.records) == 4 and not any(r.success for r in result.records)
