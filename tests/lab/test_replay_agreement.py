"""The virtual-time replay against the real-time simulated server, on the same workload.

The workload is built so that its TTFTs are seconds of modeled GPU time, and so that no request
can join a different batch live than in the replay: one 8000-token prompt first (two of the
random prompts joined; a 1.55 s prefill), then eleven 4000-token prompts, one every 0.1 s from 0.3 s, all arriving during that
prefill and at least 0.25 s from the start or end of any long step. GPU memory holds the long
request and two short ones, or four short ones, so the TTFTs climb from 1.55 s to about 9 s of
prefills and a few decode steps (8 output tokens each; 33 engine steps in all).

What the replay leaves out is host time: the server tokenizes each prompt before the engine
sees it (about 12 us a token on this machine, so 0.1 s for the long prompt, 0.05 s for a short
one) and adds the host work of each step beyond the 4 ms its step sleeps absorb (HTTP,
detokenizing, streaming). Both stay below 0.25 s in all on a busy 2-core machine, which keeps
every arrival on the same side of every long step, and is a few % of the median TTFT (5.7 s).
"""

import dataclasses

from vllm_cfs.bench.datasets import count_tokens
from vllm_cfs.bench.workload import RequestSpec, Workload, WorkloadConfig, build_workload
from vllm_cfs.lab.agreement import arrival_margin_s, compare, live_and_replayed, runs_live
from vllm_cfs.lab.policies import BY_KEY


def prefill_queue(tokenizer) -> Workload:
    """Thirteen 4000-token random prompts (one vocabulary scan); the first two joined make the long one."""
    built = build_workload(WorkloadConfig("random", 13, seed=0, random_input_len=4000, random_output_len=8), tokenizer)
    first, second, *rest = built.requests
    text = first.prompt + second.prompt
    specs = [RequestSpec(0, text, count_tokens(tokenizer, text), 8, 0.0)]
    specs += [dataclasses.replace(s, index=i, issue_offset_s=0.2 + 0.1 * i) for i, s in enumerate(rest, start=1)]
    return Workload(built.config, specs, "one 8000-token prompt, then eleven 4000-token prompts every 0.1 s from 0.3 s")


def test_replay_agrees_with_the_real_time_server(tmp_path):
    pair = live_and_replayed(prefill_queue, log_path=tmp_path / "vllm_server.log")
    agreement = compare(pair.live, pair.replayed)
    print(agreement.describe())
    # The design holds: seconds of GPU time, and no arrival near a long step's boundary.
    assert pair.replayed.summary.median_ttft_ms > 5000
    assert arrival_margin_s(pair.replay) >= 0.24
    assert agreement.requests == 12
    assert agreement.median_ttft_rel_diff <= 0.10, agreement.describe()
    assert agreement.p99_ttft_rel_diff <= 0.10, agreement.describe()


def test_only_policies_a_plain_server_runs_are_compared_live():
    live = {key for key, policy in BY_KEY.items() if runs_live(policy)}
    assert {"fcfs", "cfs-1", "cfs-10", "cfs-40", "ours"} <= live
    assert not live & {"ideal", "priority", "chunked-prefill", "cfs-mg1000-10"}
