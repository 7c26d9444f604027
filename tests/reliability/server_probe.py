"""Probing a running vLLM OpenAI server from outside: its Prometheus gauges, its log, and
streaming requests that a test can cut off mid-stream like a client that goes away."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import aiohttp

from vllm_cfs.bench.server_metrics import KV_AND_QUEUE_GAUGES, read_gauges

CFS_STATS_LINE = re.compile(r"CFS stats: (.*)$", re.M)


def gauges(base_url: str) -> Dict[str, float]:
    """The engine's KV usage and queue lengths, as vLLM's /metrics reports them."""
    return read_gauges(base_url)


def preemptions_counted(base_url: str) -> float:
    """vLLM's counter of the preemptions its scheduler reported, summed over every step."""
    name = "vllm:num_preemptions_total"
    return read_gauges(base_url, (name,)).get(name, 0.0)


def wait_until_idle(base_url: str, timeout_s: float = 90.0) -> Dict[str, float]:
    """Poll /metrics until no request is left and no KV block is used; returns the last reading.

    The gauges are refreshed at every engine step and, when idle, every 10 s by the engine loop.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        reading = gauges(base_url)
        idle = len(reading) == len(KV_AND_QUEUE_GAUGES) and not any(reading.values())
        if idle or time.monotonic() > deadline:
            return reading
        time.sleep(0.5)


async def signal_swap_out(base_url: str, swapped_out: asyncio.Event, seen: Dict[str, float]) -> None:
    """Set ``swapped_out`` (and fill ``seen`` with the gauges) once a request sits in CPU memory."""
    while not swapped_out.is_set():
        reading = await asyncio.to_thread(gauges, base_url)
        if reading.get("vllm:num_requests_swapped", 0) > 0 and reading.get("vllm:cpu_cache_usage_perc", 0) > 0:
            seen.update(reading)
            swapped_out.set()
        await asyncio.sleep(0.05)


async def hang_up_once_swapped(base_url: str, model: str,
                               requests: List[tuple[int, List[int], int, Optional[int]]]):
    """Stream ``(index, prompt, max_tokens, hang_up_after_tokens)`` requests at once; those with
    no token count hang up as soon as the gauges show a request swapped out. Returns the results
    and the gauges read at that moment (empty if nothing was swapped out)."""
    swapped_out = asyncio.Event()
    seen: Dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        watcher = asyncio.create_task(signal_swap_out(base_url, swapped_out, seen))
        results = await asyncio.gather(*(
            stream_completion(session, base_url, model, index, prompt, max_tokens,
                              hang_up_after_tokens=after,
                              hang_up_when=swapped_out if after is None else None)
            for index, prompt, max_tokens, after in requests))
        if watcher.done():
            watcher.result()  # surfaces a failed watch
        watcher.cancel()
    return results, seen


def last_cfs_stats(log_text: str) -> Dict[str, int]:
    """The CFS scheduler's counters from the last "CFS stats:" line of the server log."""
    lines = CFS_STATS_LINE.findall(log_text)
    assert lines, "no CFS stats line in the server log"
    return {key: int(value) for key, value in (item.split("=") for item in lines[-1].split(", "))}


@dataclass
class StreamResult:
    index: int
    tokens: int = 0  # text chunks received: one per token here
    completion_tokens: Optional[int] = None  # from the final usage event
    finished: bool = False  # [DONE] received
    disconnected: bool = False  # the client hung up
    status: int = 0
    error: str = ""


async def stream_completion(session: aiohttp.ClientSession, base_url: str, model: str, index: int,
                            prompt: List[int], max_tokens: int, *,
                            hang_up_after_tokens: Optional[int] = None,
                            hang_up_when: Optional[asyncio.Event] = None) -> StreamResult:
    """Stream one completion; hang up after that many tokens, or when the event is set.

    Hanging up closes the TCP connection mid-stream, as a client that goes away does. The event
    works whether or not tokens are flowing, so a request that sits swapped out can be left too.
    """
    result = StreamResult(index)
    payload = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
               "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
    async with session.post(base_url + "/v1/completions", json=payload) as response:
        result.status = response.status
        if response.status != 200:
            result.error = await response.text()
            return result
        reader = asyncio.ensure_future(_read_stream(response, result, hang_up_after_tokens))
        waiters = {reader}
        if hang_up_when is not None:
            waiters.add(asyncio.ensure_future(hang_up_when.wait()))
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if reader in done:
            reader.result()  # re-raise what went wrong while reading
        if result.disconnected or reader not in done:
            result.disconnected = True
            response.close()
    return result


async def _read_stream(response: aiohttp.ClientResponse, result: StreamResult,
                       hang_up_after_tokens: Optional[int]) -> None:
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[len(b"data:"):].strip()
        if data == b"[DONE]":
            result.finished = True
            return
        event = json.loads(data)
        if event.get("usage"):
            result.completion_tokens = event["usage"]["completion_tokens"]
        if any(choice.get("text") for choice in event.get("choices") or []):
            result.tokens += 1
            if hang_up_after_tokens is not None and result.tokens >= hang_up_after_tokens:
                result.disconnected = True
                return


async def post_json(base_url: str, path: str, payload: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + path, json=payload) as response:
            return response.status, await response.json(content_type=None)


def token_prompt(length: int, seed: int) -> List[int]:
    """A prompt of exactly ``length`` token ids, different for each seed (no prefix is shared)."""
    return [3 + (7919 * seed + 104729 * i) % 31990 for i in range(length)]
