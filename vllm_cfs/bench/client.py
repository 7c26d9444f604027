"""The burst client: streams ``/v1/completions`` of any OpenAI-compatible server and times every token.

Requests go out at their issue offsets, in issue order, and run concurrently (at most
``max_concurrency`` at a time when it is set: the others wait in the client, and their times
start when they are sent). Each asks for its max_tokens (with ``ignore_eos``: exactly that many;
without, the model may stop sooner, at EOS), greedy unless other sampling parameters are given,
and for usage in the stream, so the server reports exact token counts. A request that fails (server unreachable, HTTP error, timeout, broken
stream) becomes a failed record that says why; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from typing import Any, Mapping, Optional, Sequence

import aiohttp
from tqdm import tqdm

from vllm_cfs.results import RequestRecord, RunResult, time_per_output_token
from vllm_cfs.bench.workload import RequestSpec
from vllm_cfs.sim.reply_length import reply_seed

ERROR_CHARS = 300  # server messages are cut to this length to keep reports readable


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    base_url: str = "http://127.0.0.1:8000"
    model: str = "codellama/CodeLlama-34b-hf"
    timeout_s: float = 600.0  # per request, from sending it to the end of its stream
    progress: bool = True  # a progress bar on stderr
    endpoint: str = "/v1/completions"  # appended to base_url
    # True: every request runs to its max_tokens; False: the server may stop any at its
    # end-of-sequence token; None: each as its workload says (ignore_eos where max_tokens is the
    # reply's exact length, EOS on where it is only a cap: RequestSpec.reply_tokens).
    ignore_eos: Optional[bool] = None
    max_concurrency: Optional[int] = None  # requests in flight at once; None: no limit
    # Sampling parameters sent with every request (temperature, top_p, top_k, min_p); greedy if none.
    sampling: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # vLLM V1's cache_salt, sent with every request when set: blocks are hashed with it, so requests
    # of different salts never share prefix-cache blocks (on the GPU, nor in a KV connector's CPU
    # store, which is keyed by the same hashes). One salt per run keeps a server's later runs of
    # the same prompts from hitting an earlier run's cache, while a run's own hits (a preempted
    # request's blocks) stay as vLLM's defaults make them. None: the server's prefix cache is shared.
    cache_salt: Optional[str] = None


def run_burst(requests: Sequence[RequestSpec], config: ClientConfig, setup: dict[str, Any]) -> RunResult:
    """Issue the burst against the server and collect the results (blocks until all are done)."""
    return asyncio.run(run_burst_async(requests, config, setup))


async def run_burst_async(requests: Sequence[RequestSpec], config: ClientConfig,
                          setup: dict[str, Any]) -> RunResult:
    url = config.base_url.rstrip("/") + "/" + config.endpoint.lstrip("/")
    # Created here, inside the running loop (one asyncio.run per burst).
    slots = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
    ordered = sorted(requests, key=lambda spec: spec.index)
    # No connection cap: a burst must reach the server as issued, not queue inside the client.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        with tqdm(total=len(ordered), desc="requests", unit="req", file=sys.stderr,
                  disable=not config.progress) as bar:
            start_time = time.time()
            origin = time.perf_counter()
            tasks = []
            for spec in ordered:
                delay = origin + spec.issue_offset_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(_limited(slots, session, url, spec, origin, config, bar)))
            records = await asyncio.gather(*tasks)
            duration_s = time.perf_counter() - origin
    return RunResult.build(setup, start_time, duration_s, records)


@dataclasses.dataclass
class _Stream:
    """What arrived so far on one request's stream."""

    sent: float
    first_token: Optional[float] = None
    last_token: Optional[float] = None
    itl_s: list[float] = dataclasses.field(default_factory=list)
    text: list[str] = dataclasses.field(default_factory=list)
    token_chunks: int = 0
    usage: Optional[dict[str, Any]] = None
    finished: bool = False  # [DONE] seen
    finish_reason: Optional[str] = None  # the last choice's, when the server gave one

    def on_text(self, now: float, text: str) -> None:
        self.text.append(text)
        if self.first_token is None:
            self.first_token = now
        else:
            self.itl_s.append(now - self.last_token)
        self.last_token = now
        self.token_chunks += 1


async def _limited(slots: Optional[asyncio.Semaphore], session: aiohttp.ClientSession, url: str,
                   spec: RequestSpec, origin: float, config: ClientConfig, bar: tqdm) -> RequestRecord:
    if slots is None:
        return await _timed_request(session, url, spec, origin, config, bar)
    async with slots:
        return await _timed_request(session, url, spec, origin, config, bar)


def request_body(spec: RequestSpec, config: ClientConfig) -> dict[str, Any]:
    """The /v1/completions request of one spec (streamed, with usage in the stream)."""
    body = {
        "model": config.model,
        "prompt": spec.prompt,
        "max_tokens": spec.output_tokens,
        "temperature": 0.0,
        **config.sampling,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    ignore_eos = spec.reply_tokens is None if config.ignore_eos is None else config.ignore_eos
    if ignore_eos:  # a vLLM extension: sent only when wanted, as vLLM's own client does
        body["ignore_eos"] = True
    elif spec.reply_tokens is not None and "seed" not in body:
        # The simulated GPU's cue for where the reply ends; a real model ignores it (temperature 0)
        # and a scheduler never reads it (vllm_cfs.sim.reply_length says why the seed).
        body["seed"] = reply_seed(spec.reply_tokens)
    if config.cache_salt is not None:  # a vLLM V1 extension, likewise
        body["cache_salt"] = config.cache_salt
    return body


async def _timed_request(session: aiohttp.ClientSession, url: str, spec: RequestSpec, origin: float,
                         config: ClientConfig, bar: tqdm) -> RequestRecord:
    payload = request_body(spec, config)
    stream = _Stream(sent=time.perf_counter())
    error = ""
    try:
        async with session.post(url, json=payload) as response:
            if response.status != 200:
                error = f"HTTP {response.status}: {await _error_message(response)}"
            else:
                error = await _read_events(response, stream)
    except TimeoutError:  # aiohttp's timeouts are TimeoutError subclasses, so this comes first
        error = f"timed out after {config.timeout_s:g} s ({stream.token_chunks} token chunks received)"
    except aiohttp.ClientConnectorError as exc:
        reason = os.strerror(exc.os_error.errno) if exc.os_error.errno else str(exc.os_error)
        error = f"cannot connect to {config.base_url}: {reason}"
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {_one_line(str(exc)) or 'connection failed'}"
    except Exception as exc:  # noqa: BLE001 - one odd request must become a record, not end the burst
        error = f"client error: {type(exc).__name__}: {_one_line(str(exc))}"
    end = time.perf_counter()
    bar.update(1)
    return _record(spec, stream, origin, end, error)


async def _read_events(response: aiohttp.ClientResponse, stream: _Stream) -> str:
    """Consume the server-sent events; returns an error message, or "" for a complete stream."""
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue  # blank separators, SSE comments and other fields carry no tokens
        data = line[len(b"data:"):].strip()
        if data == b"[DONE]":
            stream.finished = True
            break
        now = time.perf_counter()
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            event = None
        choices = (event.get("choices") or []) if isinstance(event, dict) else None
        if not (isinstance(choices, list) and all(isinstance(c, dict) for c in choices)):
            return f"malformed stream event: {_one_line(data.decode(errors='replace'))}"
        if "error" in event:
            return f"server error in stream: {_message_of(event)}"
        text = "".join(c["text"] for c in choices if isinstance(c.get("text"), str))
        if text:
            stream.on_text(now, text)
        reasons = [c["finish_reason"] for c in choices if isinstance(c.get("finish_reason"), str)]
        if reasons:
            stream.finish_reason = reasons[-1]
        if isinstance(event.get("usage"), dict):
            stream.usage = event["usage"]
    if not stream.finished:
        return "stream ended before [DONE]"
    if stream.first_token is None:
        return "the server sent no tokens"
    return ""


def _record(spec: RequestSpec, stream: _Stream, origin: float, end: float, error: str) -> RequestRecord:
    usage = stream.usage or {}
    reported_output, reported_prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
    output_tokens = reported_output if isinstance(reported_output, int) else stream.token_chunks
    success = not error
    ttft = stream.first_token - stream.sent if stream.first_token is not None else None
    e2e = end - stream.sent if success else None
    return RequestRecord(
        index=spec.index,
        issue_offset_s=spec.issue_offset_s,
        issued_at_s=stream.sent - origin,
        prompt_tokens=reported_prompt if isinstance(reported_prompt, int) else spec.prompt_tokens,
        expected_output_tokens=spec.output_tokens,
        output_tokens=output_tokens,
        ttft_s=ttft,
        tpot_s=time_per_output_token(e2e, ttft, output_tokens) if success else None,
        itl_s=stream.itl_s,
        e2e_s=e2e,
        success=success,
        error=error,
        generated_text="".join(stream.text),
        finish_reason=stream.finish_reason if success else None,
    )


async def _error_message(response: aiohttp.ClientResponse) -> str:
    body = await response.text(errors="replace")
    try:
        message = _message_of(json.loads(body))
    except (json.JSONDecodeError, TypeError, AttributeError):
        message = body
    return _one_line(message) or response.reason or "no message"


def _message_of(document: Any) -> str:
    # vLLM answers {"object": "error", "message": ...}; OpenAI {"error": {"message": ...}}.
    if isinstance(document.get("error"), dict):
        document = document["error"]
    return _one_line(str(document.get("message") or document))


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= ERROR_CHARS else flat[: ERROR_CHARS - 3] + "..."
