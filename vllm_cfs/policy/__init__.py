"""The policy core both engines share: plain functions over a RequestState, no vLLM import.

``state`` is what a policy may know of a request, ``lengths`` how many tokens it has left (exact
only under ignore_eos), ``ranking`` how requests rank (CFS's vruntime, first token first),
``yielding`` who gives up GPU room to whom, ``growth`` the victims and headroom that running requests'
KV growth needs where freed blocks come back a step late. ``vllm_cfs.v0`` and ``vllm_cfs.v1``
adapt them to each engine's scheduler.
"""

from vllm_cfs.policy.ranking import (STALL_SLACK_TOKENS, RankKey, cfs_key, eviction_key, first_token_key,
                                     stall_cost_key, vruntime)
from vllm_cfs.policy.growth import Growth, admission_headroom, growth_victims
from vllm_cfs.policy.lengths import FinishedReplies, tokens_left
from vllm_cfs.policy.state import RequestState
from vllm_cfs.policy.yielding import ahead_by_a_time_slice, room_frees_within, yields_to_new_arrivals_only

__all__ = ["RequestState", "FinishedReplies", "tokens_left", "RankKey", "STALL_SLACK_TOKENS", "vruntime", "cfs_key", "first_token_key", "eviction_key",
           "stall_cost_key", "ahead_by_a_time_slice", "Growth", "growth_victims", "admission_headroom", "yields_to_new_arrivals_only", "room_frees_within"]
