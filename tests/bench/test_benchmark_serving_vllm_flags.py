"""benchmarks/benchmark_serving.py in vLLM's dialect: its options, its summary block, its --save-result JSON.

Pure tests of the parsers, the block and the document; in-process runs against the fake
completions server (what reaches the server); and upstream-style command lines as subprocesses
against one simulated vLLM server, whose printed numbers and saved JSON must agree with our own
per-request records of the same run.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_cfs.bench import cli
from vllm_cfs.results import RequestRecord, RunResult, percentile, time_per_output_token
from vllm_cfs.bench.vllm_dialect import (
    DialectError,
    Report,
    RunIdentity,
    default_result_filename,
    format_summary,
    parse_goodput,
    parse_metadata,
    parse_metric_percentiles,
    parse_percentile_metrics,
    percentile_word,
    result_document,
)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "benchmark_serving.py"
MODEL_ID = "codellama/CodeLlama-34b-hf"


# --- option values --------------------------------------------------------------------------


def test_percentile_metrics_are_checked_and_kept_in_vllm_order():
    assert parse_percentile_metrics("ttft,tpot,itl") == ("ttft", "tpot", "itl")
    assert parse_percentile_metrics("e2el, ttft") == ("ttft", "e2el")
    for bad in ("", "ttft,latency", "TTFT"):
        with pytest.raises(DialectError, match="--percentile-metrics takes"):
            parse_percentile_metrics(bad)


def test_metric_percentiles_are_numbers_between_0_and_100():
    assert parse_metric_percentiles("99") == (99.0,)
    assert parse_metric_percentiles("25,50,99.9") == (25.0, 50.0, 99.9)
    for bad in ("", "101", "-1", "p99", "nan", "50,,90"):
        with pytest.raises(DialectError, match="--metric-percentiles takes"):
            parse_metric_percentiles(bad)
    assert [percentile_word(p) for p in (99.0, 99.9, 50.0, 0.0)] == ["99", "99.9", "50", "0"]


def test_metadata_pairs_split_at_the_first_equals_and_may_not_replace_result_keys():
    assert parse_metadata(["version=0.9.0", " tp = 2 ", "cmd=a=b"]) == {"version": "0.9.0", "tp": "2", "cmd": "a=b"}
    assert parse_metadata([]) == {}
    with pytest.raises(DialectError, match="KEY=VALUE pairs; got 'tp'"):
        parse_metadata(["tp"])
    with pytest.raises(DialectError, match="cannot set date, p99.9_ttft_ms"):
        parse_metadata(["date=today", "p99.9_ttft_ms=1", "ok=1"])


def test_goodput_objectives():
    assert parse_goodput(["ttft:500", "tpot:50", "e2el:0"]) == {"ttft": 500.0, "tpot": 50.0, "e2el": 0.0}
    for bad, message in ((["itl:5"], "'itl' is not one of ttft, tpot, e2el"), (["ttft"], "KEY:VALUE pairs"),
                         (["ttft:-1"], "ttft needs a number"), (["ttft:fast"], "ttft needs a number")):
        with pytest.raises(DialectError, match=message):
            parse_goodput(bad)


# --- the block and the document -------------------------------------------------------------


def record(index, ttft, tokens, gap, success=True, error=""):
    e2e = ttft + gap * (tokens - 1)
    return RequestRecord(index=index, issue_offset_s=index * 0.5, issued_at_s=index * 0.5, prompt_tokens=10 + index,
                         expected_output_tokens=tokens, output_tokens=tokens if success else 0,
                         ttft_s=ttft if success else None,
                         tpot_s=time_per_output_token(e2e, ttft, tokens) if success else None,
                         itl_s=[gap] * (tokens - 1) if success else [], e2e_s=e2e if success else None,
                         success=success, error=error, generated_text=f"text {index}" if success else "")


@pytest.fixture
def run():
    records = [record(0, 0.100, 5, 0.020), record(1, 0.300, 3, 0.040), record(2, 0.200, 1, 0.0),
               record(3, 0.0, 4, 0.0, success=False, error="HTTP 500: boom")]
    return RunResult.build({"label": "t"}, start_time=1_750_000_000.0, duration_s=2.0, records=records)


def test_the_summary_block_has_vllms_layout(run):
    block = format_summary(Report.of(run, ("ttft", "tpot", "itl"), (50.0, 99.0)))
    lines = block.splitlines()
    assert lines[0] == "============ Serving Benchmark Result ============"
    assert lines[1] == "Successful requests:                     3         "
    assert lines[2] == "Benchmark duration (s):                  2.00      "
    assert lines[3:8] == [
        "Total input tokens:                      33        ",
        "Total generated tokens:                  9         ",
        "Request throughput (req/s):              1.50      ",
        "Output token throughput (tok/s):         4.50      ",
        "Total Token throughput (tok/s):          21.00     ",
    ]
    assert lines[8] == "---------------Time to First Token----------------"
    # TTFT of the successful requests: 100, 300, 200 ms
    assert [line.rstrip() for line in lines[9:13]] == [
        "Mean TTFT (ms):                          200.00",
        "Median TTFT (ms):                        200.00",
        "P50 TTFT (ms):                           200.00",
        "P99 TTFT (ms):                           298.00",
    ]
    assert lines[13] == "-----Time per Output Token (excl. 1st token)------"
    assert lines[18] == "---------------Inter-token Latency----------------"
    assert lines[-1] == "=" * 50
    assert all(len(line) == 50 for line in lines if line.startswith(("=", "-")))
    assert "goodput" not in block and "E2EL" not in block


def test_goodput_and_e2el_when_asked_for(run):
    # Within 250 ms TTFT and 30 ms TPOT: request 0 (100 ms, 20 ms) and request 2 (200 ms, one token: TPOT 0).
    report = Report.of(run, ("e2el",), (90.0,), {"ttft": 250.0, "tpot": 30.0})
    assert report.goodput == 2 / 2.0
    lines = format_summary(report).splitlines()
    assert lines[6] == "Request goodput (req/s):                 1.00      "
    assert lines[9] == "----------------End-to-end Latency----------------"
    assert [line.split(":")[0] for line in lines[10:13]] == ["Mean E2EL (ms)", "Median E2EL (ms)", "P90 E2EL (ms)"]


def test_the_saved_document_has_vllms_keys_in_vllms_units(run):
    identity = RunIdentity("vllm", MODEL_ID, MODEL_ID, float("inf"), 1.0, None, {"tp": "2"})
    document = result_document(Report.of(run, ("ttft", "tpot", "itl", "e2el"), (50.0, 99.9)), identity)
    text = json.dumps(document, allow_nan=False)  # strict JSON
    document = json.loads(text)
    assert list(document)[:6] == ["date", "backend", "model_id", "tokenizer_id", "num_prompts", "tp"]
    assert re.fullmatch(r"\d{8}-\d{6}", document["date"])
    assert document["request_rate"] == "inf" and document["max_concurrency"] is None
    assert document["completed"] == 3 and document["num_prompts"] == 4 and document["duration"] == 2.0
    assert document["request_goodput"] is None
    # Per request, in issue order; seconds; a failed request has TTFT 0 and output length 0.
    assert document["ttfts"] == [0.1, 0.3, 0.2, 0.0]
    assert document["itls"] == [[0.02] * 4, [0.04] * 2, [], []]
    assert document["input_lens"] == [10, 11, 12, 13]
    assert document["output_lens"] == [5, 3, 1, 0]
    assert document["errors"] == ["", "", "", "HTTP 500: boom"]
    assert document["generated_texts"] == ["text 0", "text 1", "text 2", ""]
    # Statistics in milliseconds, over the successful requests.
    assert document["mean_ttft_ms"] == pytest.approx(200.0)
    assert document["std_ttft_ms"] == pytest.approx(statistics.pstdev([100.0, 300.0, 200.0]))
    assert document["p99.9_ttft_ms"] == pytest.approx(percentile([100.0, 300.0, 200.0], 99.9))
    assert document["median_tpot_ms"] == pytest.approx(30.0)  # 20 and 40 ms; one token has no TPOT
    assert document["p50_itl_ms"] == pytest.approx(20.0)  # 4 gaps of 20 ms, 2 of 40 ms
    assert document["mean_e2el_ms"] == pytest.approx((180.0 + 380.0 + 200.0) / 3)
    for metric in ("ttft", "tpot", "itl", "e2el"):
        assert {f"{s}_{metric}_ms" for s in ("mean", "median", "std", "p50", "p99.9")} <= set(document)
    # Our own records ride along, whole.
    assert RunResult.from_json(json.dumps(document["vllm_cfs"])) == run


def test_a_metric_without_samples_is_zero_as_in_vllm():
    failed = RunResult.build({}, 0.0, 1.0, [record(0, 0.0, 3, 0.0, success=False, error="x")])
    report = Report.of(failed, ("ttft",), (99.0,))
    assert (report.stats["ttft"].mean, report.stats["ttft"].median, report.stats["ttft"].percentiles) == (0, 0, ((99.0, 0),))
    assert "P99 TTFT (ms):                           0.00" in format_summary(report)


def test_default_result_file_name_follows_vllms_pattern():
    def name(rate, concurrency, model):
        return default_result_filename(RunIdentity("vllm", model, model, rate, 1.0, concurrency), "20250527-141503")

    assert name(3, None, MODEL_ID) == "vllm-3.0qps-CodeLlama-34b-hf-20250527-141503.json"
    assert name(float("inf"), 8, "/models/llama/") == "vllm-infqps-concurrency8-llama-20250527-141503.json"


# --- the command line, in process -----------------------------------------------------------


def planned(*args):
    parser, options = cli.build_parser()
    return cli.plan(parser.parse_args(list(args)), options)


def test_our_options_keep_our_dialect_and_our_setup(tiny_tokenizer_dir):
    p = planned("--tokenizer", str(tiny_tokenizer_dir), "--dataset-name", "random", "--no-progress")
    # ignore_eos per request: every random request asks for exactly its length
    assert p.dialect == "cfs" and p.client.ignore_eos is None and not p.client.progress
    assert p.workload.reply_cap is None
    assert p.client.base_url == "http://127.0.0.1:8000" and p.client.endpoint == "/v1/completions"
    assert list(p.setup) == ["base_url", "model", "tokenizer", "gpu", "dataset", "num_prompts", "request_rate",
                             "burstiness", "seed", "timeout_s", "label"]


@pytest.mark.parametrize("args, ignore_eos", [
    (["--backend", "vllm"], False),
    (["--save-result"], False),
    (["--ignore-eos"], True),
    (["--disable-tqdm"], False),
    (["--dialect", "vllm"], False),
])
def test_any_option_only_vllm_has_selects_its_dialect(args, ignore_eos, tiny_tokenizer_dir):
    p = planned("--tokenizer", str(tiny_tokenizer_dir), *args)
    assert p.dialect == "vllm" and p.client.ignore_eos is ignore_eos
    assert p.setup["backend"] == "vllm" and p.setup.get("ignore_eos", True) is ignore_eos


def test_sharegpt_and_humaneval_send_a_cap_and_end_at_eos_unless_a_length_is_fixed(tiny_tokenizer_dir):
    tokenizer = ("--tokenizer", str(tiny_tokenizer_dir))
    default = planned(*tokenizer)
    assert default.workload.dataset == "sharegpt" and default.workload.reply_cap == 2048
    assert default.setup["max_tokens"] == 2048
    assert planned(*tokenizer, "--dataset-name", "humaneval", "--max-tokens", "512").workload.reply_cap == 512
    assert planned(*tokenizer, "--sharegpt-output-len", "100").workload.reply_cap is None
    assert planned(*tokenizer, "--dataset-name", "humaneval", "--humaneval-output-len", "9").workload.reply_cap is None
    assert planned(*tokenizer, "--dataset-name", "random", "--max-tokens", "512").workload.reply_cap is None
    with pytest.raises(cli.DialectError, match="--max-tokens must be at least 1"):
        planned(*tokenizer, "--max-tokens", "0")


def test_vllms_server_options(tiny_tokenizer_dir):
    p = planned("--tokenizer", str(tiny_tokenizer_dir), "--host", "10.0.0.7", "--port", "9000",
                "--endpoint", "/proxy/v1/completions", "--served-model-name", "served", "--max-concurrency", "4",
                "--dialect", "cfs", "--temperature", "0.5", "--top-k", "20")
    assert p.dialect == "cfs" and p.client.ignore_eos is None  # --dialect cfs wins: ignore_eos where exact
    assert (p.client.base_url, p.client.endpoint, p.client.model) == ("http://10.0.0.7:9000", "/proxy/v1/completions", "served")
    assert p.client.max_concurrency == 4 and p.client.sampling == {"temperature": 0.5, "top_k": 20}
    assert p.identity.model_id == MODEL_ID and p.identity.tokenizer_id == str(tiny_tokenizer_dir)
    assert p.setup["max_concurrency"] == 4 and p.setup["endpoint"] == "/proxy/v1/completions"
    ignored = planned("--tokenizer", str(tiny_tokenizer_dir), "--base-url", "http://h:1", "--port", "2",
                      "--trust-remote-code", "--tokenizer-mode", "slow", "--sonnet-input-len", "5")
    assert ignored.client.base_url == "http://h:1"
    assert [note.split(":")[2].strip() for note in ignored.notes] == [
        "ignoring --trust-remote-code", "ignoring --tokenizer-mode", "ignoring --sonnet-input-len", "ignoring --host/--port"]


def one_line_refusal(capsys, *args) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main(list(args))
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("benchmark_serving.py: error: ")
    return captured.err


@pytest.mark.parametrize("args, message", [
    (["--dataset-name", "sonnet"], "vLLM's 'sonnet' dataset is not supported here (choose from sharegpt, humaneval, random)"),
    (["--dataset-name", "hf"], "vLLM's 'hf' dataset is not supported here"),
    (["--dataset-name", "burstgpt"], "vLLM's 'burstgpt' dataset is not supported here"),
    (["--backend", "tgi"], "vLLM's 'tgi' backend: this client streams the OpenAI completions API"),
    (["--backend", "openai-chat"], "vLLM's 'openai-chat' backend"),
    (["--backend", "nonsense"], "invalid choice: 'nonsense'"),
    (["--endpoint", "/v1/chat/completions"], "--endpoint must be a completions path"),
    (["--profile"], "--profile is not supported: this client does not drive vLLM's torch profiler"),
    (["--logprobs", "5"], "--logprobs is not supported"),
    (["--lora-modules", "a", "b"], "--lora-modules is not supported"),
    (["--percentile-metrics", "ttft,p99"], "--percentile-metrics takes a comma-separated list"),
    (["--metric-percentiles", "99,200"], "--metric-percentiles takes comma-separated percentiles"),
    (["--metadata", "version"], "--metadata takes KEY=VALUE pairs; got 'version'"),
    (["--goodput", "itl:10"], "--goodput: 'itl' is not one of ttft, tpot, e2el"),
    (["--max-concurrency", "0"], "--max-concurrency must be at least 1"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--random-prefix-len", "-1"], "the random prefix length must be at least 0"),
    (["--sharegpt-output-len", "0"], "the ShareGPT output length must be at least 1"),
    (["--request-id-prefix", "x"], "unrecognized arguments: --request-id-prefix x"),
])
def test_what_cannot_apply_is_refused_in_one_line(args, message, capsys, tiny_tokenizer_dir):
    assert message in one_line_refusal(capsys, "--tokenizer", str(tiny_tokenizer_dir), *args)


@pytest.mark.parametrize("args, message", [
    (["--model", "meta-llama/Llama-2-7b-hf"], "--tokenizer PATH is required: --model meta-llama/Llama-2-7b-hf is "
     "not a local folder, and the one hub id with a local folder here is codellama/CodeLlama-34b-hf"),
    (["--tokenizer", "meta-llama/Llama-2-7b-hf"], "--tokenizer meta-llama/Llama-2-7b-hf is not a local folder"),
    (["--tokenizer", "/nonexistent/tok"], "tokenizer folder /nonexistent/tok does not exist"),
])
def test_a_tokenizer_that_does_not_resolve_is_one_line(args, message, capsys):
    assert message in one_line_refusal(capsys, *args)


def run_main(capsys, base_url, tokenizer_dir, *args):
    code = cli.main(["--base-url", base_url, "--tokenizer", str(tokenizer_dir), "--dataset-name", "random",
                     "--random-input-len", "12", "--random-output-len", "4", "--num-prompts", "6",
                     "--request-rate", "inf", "--no-progress", *args])
    return code, capsys.readouterr()


def test_what_reaches_the_server_in_each_dialect(completion_server, tiny_tokenizer_dir, capsys):
    url = completion_server.url("ok")
    code, out = run_main(capsys, url, tiny_tokenizer_dir)
    assert code == 0 and "Burst benchmark" in out.out  # ours
    ours = completion_server.received[:]
    assert all(body["ignore_eos"] is True and body["temperature"] == 0 for body in ours)

    completion_server.received.clear()
    code, out = run_main(capsys, url, tiny_tokenizer_dir, "--backend", "openai", "--served-model-name", "served",
                         "--temperature", "0.7", "--top-p", "0.9", "--top-k", "5", "--min-p", "0.1")
    assert code == 0 and out.out.startswith("Traffic request rate: inf\n")
    assert "============ Serving Benchmark Result ============" in out.out
    for body in completion_server.received:
        assert "ignore_eos" not in body and body["model"] == "served"
        assert (body["temperature"], body["top_p"], body["top_k"], body["min_p"]) == (0.7, 0.9, 5, 0.1)
    # The same seed, the same prompts, whatever the dialect.
    assert [b["prompt"] for b in completion_server.received] == [b["prompt"] for b in ours]

    completion_server.received.clear()
    code, out = run_main(capsys, url, tiny_tokenizer_dir, "--ignore-eos")
    assert code == 0 and all(body["ignore_eos"] is True for body in completion_server.received)


def test_a_cache_salt_reaches_the_server_and_the_results_only_when_given(completion_server, tiny_tokenizer_dir,
                                                                          capsys, tmp_path):
    url = completion_server.url("ok")
    code, _ = run_main(capsys, url, tiny_tokenizer_dir, "--result-json", str(tmp_path / "plain.json"))
    assert code == 0 and not any("cache_salt" in body for body in completion_server.received)
    assert "cache_salt" not in RunResult.load(tmp_path / "plain.json").setup  # V0's records stay as they were

    completion_server.received.clear()
    code, _ = run_main(capsys, url, tiny_tokenizer_dir, "--cache-salt", "hw2-p10-r2",
                       "--result-json", str(tmp_path / "salted.json"))
    assert code == 0 and [body["cache_salt"] for body in completion_server.received] == ["hw2-p10-r2"] * 6
    assert RunResult.load(tmp_path / "salted.json").setup["cache_salt"] == "hw2-p10-r2"
    with pytest.raises(DialectError, match="--cache-salt must not be empty"):
        planned("--tokenizer", str(tiny_tokenizer_dir), "--cache-salt", "")


def test_max_concurrency_bounds_the_requests_in_flight(completion_server, tiny_tokenizer_dir, capsys, tmp_path):
    path = tmp_path / "burst.json"
    code, out = run_main(capsys, completion_server.url("ok"), tiny_tokenizer_dir, "--max-concurrency", "2",
                         "--random-output-len", "20", "--result-json", str(path))
    assert code == 0 and "Maximum request concurrency: 2" in out.out
    records = RunResult.load(path).records
    assert len(records) == 6 and all(r.success for r in records)
    assert most_in_flight(records) == 2


def most_in_flight(records) -> int:
    """The most requests running at once; a request runs from when it holds a slot to its end."""
    spans = [(r.issued_at_s, r.issued_at_s + r.e2e_s) for r in records]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def test_random_prefix_and_sharegpt_output_len(tiny_tokenizer, tmp_path):
    from vllm_cfs.bench.workload import WorkloadConfig, build_workload

    plain = build_workload(WorkloadConfig("random", 5, random_input_len=20, random_output_len=4), tiny_tokenizer)
    prefixed = build_workload(WorkloadConfig("random", 5, random_input_len=20, random_output_len=4,
                                             random_prefix_len=10), tiny_tokenizer)
    shared = os.path.commonprefix([r.prompt for r in prefixed.requests])
    assert len(tiny_tokenizer.encode(shared, add_special_tokens=False)) >= 9  # 10, give or take the seam
    assert all(p.prompt_tokens > q.prompt_tokens for p, q in zip(prefixed.requests, plain.requests))
    assert "a shared prefix of 10 tokens" in prefixed.source

    conversations = [{"conversations": [{"from": "human", "value": f"question {i} " * 5},
                                        {"from": "gpt", "value": "ok"}]} for i in range(6)]
    dump = tmp_path / "sharegpt.json"
    dump.write_text(json.dumps(conversations))
    # Replies of one token fail the length filter, unless the output length is given.
    with pytest.raises(ValueError, match="only 0 of 6 conversations pass"):
        build_workload(WorkloadConfig("sharegpt", 3, dataset_path=dump), tiny_tokenizer)
    workload = build_workload(WorkloadConfig("sharegpt", 3, dataset_path=dump, sharegpt_output_len=7), tiny_tokenizer)
    assert [r.output_tokens for r in workload.requests] == [7, 7, 7]
    assert "7 output tokens each" in workload.source


# --- upstream command lines against one simulated vLLM server -------------------------------


def upstream(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def printed(stdout: str) -> dict[str, str]:
    """The summary block's "label: value" lines."""
    block = stdout[stdout.index("============ Serving Benchmark Result"):]
    return dict(re.findall(r"^([A-Z][^:\n]*):\s+(\S+)\s*$", block, flags=re.M))


def ms_samples(records, metric):
    done = [r for r in records if r.success]
    seconds = {"ttft": [r.ttft_s for r in done], "tpot": [r.tpot_s for r in done if r.tpot_s is not None],
               "itl": [g for r in done for g in r.itl_s], "e2el": [r.e2e_s for r in done]}[metric]
    return [s * 1000 for s in seconds]


def assert_block_and_document_agree_with_records(shown, document, percentiles, metrics):
    records = RunResult.from_json(json.dumps(document["vllm_cfs"])).records
    n = document["num_prompts"]
    assert len(records) == n == len(document["ttfts"]) == len(document["itls"]) == len(document["output_lens"])
    assert all(r.success for r in records) and document["errors"] == [""] * n
    assert document["ttfts"] == [r.ttft_s for r in records]
    assert document["itls"] == [r.itl_s for r in records]
    assert document["input_lens"] == [r.prompt_tokens for r in records]
    assert document["output_lens"] == [r.output_tokens for r in records]
    assert document["generated_texts"] == [r.generated_text for r in records] and all(document["generated_texts"])
    assert int(shown["Successful requests"]) == document["completed"] == n
    assert int(shown["Total input tokens"]) == document["total_input_tokens"] == sum(document["input_lens"])
    assert int(shown["Total generated tokens"]) == document["total_output_tokens"] == sum(document["output_lens"])
    assert shown["Benchmark duration (s)"] == f"{document['duration']:.2f}"
    assert shown["Request throughput (req/s)"] == f"{document['request_throughput']:.2f}"
    assert document["request_throughput"] == pytest.approx(n / document["duration"])
    for metric in metrics:
        name = metric.upper()
        values = ms_samples(records, metric)
        assert shown[f"Mean {name} (ms)"] == f"{document[f'mean_{metric}_ms']:.2f}"
        assert document[f"mean_{metric}_ms"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert shown[f"Median {name} (ms)"] == f"{percentile(values, 50):.2f}"
        for p in percentiles:
            word = percentile_word(p)
            assert shown[f"P{word} {name} (ms)"] == f"{percentile(values, p):.2f}"
            assert document[f"p{word}_{metric}_ms"] == percentile(values, p)
    assert not any(f"{m.upper()} (ms)" in " ".join(shown) for m in set(("ttft", "tpot", "itl", "e2el")) - set(metrics))


def test_the_upstream_command_line(server, tmp_path):
    """The command vLLM's users type, with --port for our server and a small random burst."""
    done = upstream("--backend", "vllm", "--model", MODEL_ID, "--dataset-name", "random", "--num-prompts", "6",
                    "--request-rate", "20", "--ignore-eos", "--save-result", "--port", str(server.port),
                    "--random-input-len", "48", "--random-output-len", "12", "--percentile-metrics", "ttft,tpot,itl,e2el",
                    "--metric-percentiles", "50,90,99", "--metadata", "tp=2", "note=upstream style",
                    "--result-dir", "results", "--result-text", "ours.txt", "--disable-tqdm", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Traffic request rate: 20.0\nBurstiness factor: 1.0 (Poisson process)\n"
                                  "Maximum request concurrency: None\n============ Serving Benchmark Result")
    [saved] = (tmp_path / "results").iterdir()
    assert re.fullmatch(r"vllm-20\.0qps-CodeLlama-34b-hf-\d{8}-\d{6}\.json", saved.name)
    assert f"benchmark_serving.py: saved {Path('results') / saved.name}\n" in done.stderr
    document = json.loads(saved.read_text())
    assert (document["backend"], document["model_id"], document["tokenizer_id"]) == ("vllm", MODEL_ID, MODEL_ID)
    assert (document["tp"], document["note"], document["request_rate"], document["burstiness"]) == ("2", "upstream style", 20.0, 1.0)
    assert document["max_concurrency"] is None and document["date"] in saved.name
    assert document["output_lens"] == [12] * 6  # --ignore-eos: every token
    assert_block_and_document_agree_with_records(printed(done.stdout), document, (50.0, 90.0, 99.0),
                                                 ("ttft", "tpot", "itl", "e2el"))
    # Our report still goes to --result-text, with its one P99 TTFT line; stdout has vLLM's one.
    ours = (tmp_path / "ours.txt").read_text()
    assert ours.count("P99 TTFT (ms):") == 1 and done.stdout.count("P99 TTFT (ms):") == 1
    assert "Successful requests: 6" in ours and "backend: vllm" in ours


def test_an_openai_backend_command_line_with_concurrency_and_sharegpt(server, tmp_path):
    conversations = [{"conversations": [{"from": "human", "value": f"Tell me about the number {i}, please."},
                                        {"from": "gpt", "value": "It is a number."}]} for i in range(10)]
    (tmp_path / "sharegpt.json").write_text(json.dumps(conversations))
    done = upstream("--backend", "openai", "--base-url", server.base_url, "--endpoint", "/v1/completions",
                    "--model", MODEL_ID, "--tokenizer", MODEL_ID, "--dataset-name", "sharegpt",
                    "--dataset-path", "sharegpt.json", "--sharegpt-output-len", "8", "--num-prompts", "5",
                    "--max-concurrency", "2", "--save-result", "--result-filename", "named.json",
                    "--goodput", "ttft:600000", "--trust-remote-code", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "benchmark_serving.py: note: ignoring --trust-remote-code" in done.stderr
    assert "Maximum request concurrency: 2" in done.stdout
    shown = printed(done.stdout)
    document = json.loads((tmp_path / "named.json").read_text())
    assert document["backend"] == "openai" and document["max_concurrency"] == 2
    assert document["output_lens"] == [8] * 5  # the sim never ends a request early, with or without ignore_eos
    assert_block_and_document_agree_with_records(shown, document, (99.0,), ("ttft", "tpot", "itl"))
    # Ten minutes of TTFT allowed: every request is good.
    assert shown["Request goodput (req/s)"] == shown["Request throughput (req/s)"]
    assert document["request_goodput"] == document["request_throughput"]
    assert most_in_flight(RunResult.from_json(json.dumps(document["vllm_cfs"])).records) <= 2
