"""The seeded workload: prompts, lengths and arrival times."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from vllm_cfs.bench.datasets import (
    MAX_PROMPT_TOKENS,
    MAX_TOTAL_TOKENS,
    MIN_TOKENS,
    WorkloadError,
    count_tokens,
    length_range,
    packaged_sharegpt_path,
    ShareGPTFile,
    read_sharegpt,
)
from vllm_cfs.bench.workload import WorkloadConfig, arrival_offsets, build_workload


def conversation(human: str, gpt: str, first: str = "human") -> dict:
    turns = [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]
    return {"id": human[:8], "conversations": turns if first == "human" else turns[::-1]}


@pytest.fixture
def sharegpt_file(tmp_path):
    """A small ShareGPT file: 40 usable conversations and some the filter must drop."""
    usable = [conversation(f"Question {i}: please explain topic number {i} in some detail.",
                           f"Answer {i}: " + "here is a fairly long explanation. " * (i % 5 + 1))
              for i in range(40)]
    dropped = [
        conversation("Hi", "Hello there, how can I help you today?"),  # prompt under 4 tokens
        conversation("Tell me a story about a dragon.", "No"),  # reply under 4 tokens
        conversation("word " * 1100, "A reply that is long enough."),  # prompt over 1024 tokens
        conversation("Write a long essay about the sea.", "the sea " * 1100),  # pair over 2048 tokens
        {"id": "lonely", "conversations": [{"from": "human", "value": "Is anyone there at all?"}]},
        {"id": "no-turns"},
    ]
    records = usable + dropped
    random.Random(7).shuffle(records)
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(records, indent=2))
    return path, usable


def config(dataset, **kwargs):
    return WorkloadConfig(dataset, **kwargs)


# --- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["random", "humaneval", "sharegpt"])
def test_same_seed_same_workload_other_seed_other_workload(dataset, tiny_tokenizer, sharegpt_file):
    extra = {"random_input_len": 60, "random_output_len": 20, "random_range_ratio": 0.5} if dataset == "random" else {}
    if dataset == "sharegpt":
        extra = {"dataset_path": sharegpt_file[0]}
    first = build_workload(config(dataset, num_prompts=20, seed=3, **extra), tiny_tokenizer)
    again = build_workload(config(dataset, num_prompts=20, seed=3, **extra), tiny_tokenizer)
    other = build_workload(config(dataset, num_prompts=20, seed=4, **extra), tiny_tokenizer)
    assert first.requests == again.requests
    assert [r.prompt for r in first.requests] != [r.prompt for r in other.requests]
    assert [r.issue_offset_s for r in first.requests] != [r.issue_offset_s for r in other.requests]
    assert [r.index for r in first.requests] == list(range(20))


def test_the_rate_changes_arrivals_not_prompts(tiny_tokenizer):
    slow = build_workload(config("humaneval", num_prompts=10, request_rate=1), tiny_tokenizer)
    fast = build_workload(config("humaneval", num_prompts=10, request_rate=100), tiny_tokenizer)
    assert [(r.prompt, r.output_tokens) for r in slow.requests] == [(r.prompt, r.output_tokens) for r in fast.requests]
    assert slow.requests[-1].issue_offset_s > fast.requests[-1].issue_offset_s


# --- arrivals -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate, burstiness", [(3.0, 1.0), (3.0, 0.25), (10.0, 4.0)])
def test_arrival_gaps_have_mean_one_over_rate_and_gamma_spread(rate, burstiness):
    offsets = arrival_offsets(40_000, rate, burstiness, random.Random(11))
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    assert offsets[0] == 0.0 and min(gaps) >= 0
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=0.03)
    # A gamma gap of shape k has coefficient of variation 1/sqrt(k): burstiness shapes the spread.
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    assert cv == pytest.approx(burstiness ** -0.5, rel=0.05)


def test_infinite_rate_issues_everything_at_once():
    assert arrival_offsets(50, float("inf"), 1.0, random.Random(0)) == [0.0] * 50


# --- sharegpt -------------------------------------------------------------------------------


def test_packaged_sharegpt_is_cut_off_and_read_to_its_last_complete_record():
    dump = read_sharegpt(packaged_sharegpt_path())
    assert dump.truncated
    assert len(dump.conversations) > 10_000
    assert all(isinstance(c, dict) and "conversations" in c for c in dump.conversations)
    # The last complete record is the one before the cut: the raw text after it holds no "]".
    text = packaged_sharegpt_path().read_text(encoding="utf-8")
    assert not text.rstrip().endswith("]")
    last_id = dump.conversations[-1]["id"]
    assert text.rfind(f'"id": "{last_id}"') > len(text) - 1_000_000


def test_a_truncated_copy_keeps_exactly_the_complete_records(tmp_path):
    records = [conversation(f"Question {i}: where is the caf\u00e9?", f"Answer {i}: there.") for i in range(20)]
    pieces = [json.dumps(r, indent=1) for r in records]
    text = "[\n" + ",\n".join(pieces) + "\n]\n"
    start_10 = text.index(pieces[10])  # pieces differ by their number, so this is record 10
    end_9 = start_10 - len(",\n")
    cuts = {
        "inside a string": (text.index("Question", start_10) + 3, 10),
        "inside an escape": (text.index("caf\\u00", start_10) + len("caf\\u0"), 10),  # json.dumps escapes é
        "after a key": (text.index('"conversations"', start_10) + len('"conversations"'), 10),
        "after the comma between records": (end_9 + 1, 10),
        "right after a record": (end_9, 10),
        "before the closing bracket": (len(text) - 3, 20),
    }
    for where, (cut, complete) in cuts.items():
        path = tmp_path / "cut.json"
        path.write_text(text[:cut])
        dump = read_sharegpt(path)
        assert dump.truncated, where
        assert dump.conversations == records[:complete], where
    path.write_text(text)
    assert read_sharegpt(path) == ShareGPTFile(records, truncated=False)


def test_a_broken_record_in_the_middle_is_an_error(sharegpt_file, tmp_path):
    text = sharegpt_file[0].read_text()
    path = tmp_path / "broken.json"
    path.write_text(text.replace('"from": "gpt"', '"from": gpt', 1))
    with pytest.raises(WorkloadError, match="is not valid JSON"):
        read_sharegpt(path)


def test_sharegpt_takes_first_exchanges_that_pass_the_length_filter(sharegpt_file, tiny_tokenizer):
    path, usable = sharegpt_file
    workload = build_workload(config("sharegpt", num_prompts=40, dataset_path=path), tiny_tokenizer)
    answers = {c["conversations"][0]["value"]: c["conversations"][1]["value"] for c in usable}
    assert sorted(r.prompt for r in workload.requests) == sorted(answers)
    for r in workload.requests:
        assert r.prompt_tokens == count_tokens(tiny_tokenizer, r.prompt)
        assert r.output_tokens == len(tiny_tokenizer.encode(answers[r.prompt], add_special_tokens=False))
        assert MIN_TOKENS <= r.prompt_tokens <= MAX_PROMPT_TOKENS
        assert r.output_tokens >= MIN_TOKENS and r.prompt_tokens + r.output_tokens <= MAX_TOTAL_TOKENS
    with pytest.raises(WorkloadError, match="only 40 of 46 conversations pass the length filter"):
        build_workload(config("sharegpt", num_prompts=41, dataset_path=path), tiny_tokenizer)


def test_packaged_sharegpt_workload(tiny_tokenizer):
    workload = build_workload(config("sharegpt", num_prompts=30, seed=1), tiny_tokenizer)
    assert len(workload.requests) == 30
    assert "cut off mid-record" in workload.source
    assert len({r.prompt for r in workload.requests}) == 30


# --- humaneval and random -------------------------------------------------------------------


def test_humaneval_deals_every_problem_before_repeating(tiny_tokenizer):
    workload = build_workload(config("humaneval", num_prompts=200), tiny_tokenizer)
    prompts = [r.prompt for r in workload.requests]
    assert len(set(prompts[:164])) == 164 and len(set(prompts)) == 164
    assert all("def " in p for p in prompts)
    stated = build_workload(config("humaneval", num_prompts=5, humaneval_output_len=77), tiny_tokenizer)
    assert [r.output_tokens for r in stated.requests] == [77] * 5


def test_random_lengths_lie_in_the_stated_range(tiny_tokenizer):
    workload = build_workload(config("random", num_prompts=50, random_input_len=80, random_output_len=30,
                                     random_range_ratio=0.5), tiny_tokenizer)
    out_lo, out_hi = length_range(30, 0.5)
    assert (out_lo, out_hi) == (15, 45)
    assert all(out_lo <= r.output_tokens <= out_hi for r in workload.requests)
    assert len({r.output_tokens for r in workload.requests}) > 5
    for r in workload.requests:
        assert r.prompt_tokens == count_tokens(tiny_tokenizer, r.prompt)
        assert 40 - 5 <= r.prompt_tokens <= 120 + 5  # within a few tokens of the range


def test_a_capped_workload_asks_for_the_cap_and_keeps_each_true_length(sharegpt_file, tiny_tokenizer):
    path, _ = sharegpt_file
    exact = build_workload(config("sharegpt", num_prompts=20, dataset_path=path), tiny_tokenizer)
    capped = build_workload(config("sharegpt", num_prompts=20, dataset_path=path, reply_cap=2048), tiny_tokenizer)
    assert [r.prompt for r in capped.requests] == [r.prompt for r in exact.requests]
    assert [r.output_tokens for r in capped.requests] == [2048] * 20
    assert [r.reply_tokens for r in capped.requests] == [r.output_tokens + 1 for r in exact.requests]  # and EOS
    assert all(r.reply_tokens is None for r in exact.requests)
    assert "max_tokens 2048, replies end at EOS" in capped.source


def test_random_replies_under_a_cap_draw_heavy_tailed_lengths(tiny_tokenizer):
    plain = build_workload(config("random", num_prompts=400, random_input_len=20), tiny_tokenizer)
    workload = build_workload(config("random", num_prompts=400, random_input_len=20, reply_cap=1024), tiny_tokenizer)
    assert [r.prompt for r in workload.requests] == [r.prompt for r in plain.requests]
    lengths = sorted(r.reply_tokens for r in workload.requests)
    assert all(r.output_tokens == 1024 for r in workload.requests)
    median, p90 = lengths[200], lengths[360]
    assert 180 < median < 350 and p90 > 2.5 * median  # log-normal: a long right tail (median e^5.52 = 250)
    assert sum(n > 1024 for n in lengths) >= 10  # some replies run into the cap


@pytest.mark.parametrize("kwargs, message", [
    ({"request_rate": -1.0}, "request rate must be positive"),
    ({"request_rate": float("nan")}, "request rate must be positive"),
    ({"burstiness": 0.0}, "burstiness must be a positive number"),
    ({"num_prompts": 0}, "at least 1"),
    ({"random_range_ratio": 1.0}, "range ratio"),
    ({"dataset_path": "x.json"}, "only read for the sharegpt dataset"),
    ({"reply_cap": 0}, "cap must be at least 1"),
    ({"reply_cap": 100, "sharegpt_output_len": 50}, "not both"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(WorkloadError, match=message):
        WorkloadConfig("random", **kwargs)
