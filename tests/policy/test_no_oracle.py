"""No policy reads the reply's true length: the simulated GPU's channel for it stays the GPU's."""

import ast
from pathlib import Path

import pytest
from vllm import SamplingParams
from vllm.inputs import token_inputs
from vllm.sequence import Sequence, SequenceGroup

import vllm_cfs
from vllm_cfs.sim.reply_length import reply_seed
from vllm_cfs.v0.adapter import request_state

PACKAGE = Path(vllm_cfs.__file__).parent
# Every module that decides what to schedule: the shared core, and each engine's schedulers and adapters.
POLICY_MODULES = sorted([*PACKAGE.glob("policy/*.py"), *PACKAGE.glob("v0/*.py"), *PACKAGE.glob("v1/*.py")])


def oracle_reads(path: Path) -> list[str]:
    """Where a module reaches for the true length: the channel's module, a seed, the workload's field."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and "reply_length" in f"{node.module} {[a.name for a in node.names]}":
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import) and any("reply_length" in a.name for a in node.names):
            found.append(f"line {node.lineno}: import {node.names[0].name}")
        elif isinstance(node, ast.Attribute) and node.attr in ("seed", "reply_tokens"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in ("reply_seed", "reply_tokens_of", "says_eos"):
            found.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.Constant) and node.value in ("seed", "reply_tokens"):
            found.append(f"line {node.lineno}: {node.value!r}")  # getattr(params, "seed")
    return found


def test_the_policy_modules_are_the_ones_we_think():
    names = {p.relative_to(PACKAGE).as_posix() for p in POLICY_MODULES}
    assert {"policy/ranking.py", "policy/state.py", "v0/fair.py", "v0/scheduler.py", "v0/adapter.py",
            "v1/scheduler.py", "v1/adapter.py"} <= names


@pytest.mark.parametrize("path", POLICY_MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_policy_module_reads_the_true_reply_length(path):
    assert oracle_reads(path) == []


def test_the_scan_finds_each_way_of_reading_it(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from vllm_cfs.sim.reply_length import reply_tokens_of\n"
                      "import vllm_cfs.sim.reply_length\n"
                      "def left(g):\n    return reply_tokens_of(g.sampling_params.seed) - getattr(g, 'reply_tokens')\n")
    assert len(oracle_reads(sneaky)) == 5


def group(seed, max_tokens=2048, ignore_eos=False) -> SequenceGroup:
    seq = Sequence(0, token_inputs(list(range(1, 301))), block_size=16)
    return SequenceGroup("r", [seq], arrival_time=1.0,
                         sampling_params=SamplingParams(max_tokens=max_tokens, seed=seed, ignore_eos=ignore_eos))


def test_what_a_policy_knows_of_a_request_is_the_same_whatever_its_true_length():
    states = {request_state(group(seed)) for seed in (reply_seed(5), reply_seed(1500), None)}
    assert len(states) == 1
    (state,) = states
    assert (state.max_tokens, state.prompt_tokens, state.generated_tokens) == (2048, 300, 0)


def test_the_labs_oracle_is_the_one_scheduler_that_reads_it(monkeypatch):
    from vllm_cfs.lab.oracle import ShortestRemainingOracle
    from vllm_cfs.lab.trace import Pools, make_scheduler

    monkeypatch.setenv("FAIR_PATIENCE_TOKENS", "8")
    oracle = make_scheduler(ShortestRemainingOracle, Pools(num_gpu_blocks=64, num_cpu_blocks=64))
    told = oracle.request_state(group(reply_seed(40)))
    assert (told.max_tokens, told.ignore_eos, told.remaining_tokens) == (40, True, 40)
    assert oracle.request_state(group(None)) == request_state(group(None))  # nothing to know: a cap stays a cap
    assert oracle.request_state(group(reply_seed(40), max_tokens=100, ignore_eos=True)).max_tokens == 100
