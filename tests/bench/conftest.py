"""Fixtures for the burst benchmark: a tokenizer trained here, and a real local completions server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import pytest
from aiohttp import web

from vllm_cfs.bench.datasets import load_tokenizer
from vllm_cfs.sim.reply_length import reply_tokens_of
from vllm_cfs.sim.server import ServerOptions, simulated_server

TRAINING_TEXT = """\
The scheduler admits a request only while there is memory for its key-value cache. Under a burst,
late arrivals wait behind early ones until those finish all their tokens, so their time to first
token grows with their place in the queue. A fair scheduler lets everyone make progress: requests
that have generated the most tokens give their memory to requests that have generated the fewest.
def add(a: int, b: int) -> int:
    \"\"\"Return the sum of a and b.\"\"\"
    return a + b

for i in range(10):
    print(i, add(i, i * 2))
Summarize the main ideas of this article in three bullet points. What is the capital of France?
Write a poem about the sea, the wind and the long grey evening. Explain recursion to a child.
"""


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer (vocabulary 400) trained on a few KB, saved as a HF folder.

    Byte-level, so any text encodes; it adds BOS like Llama's tokenizer, so prompt counts include it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TRAINING_TEXT] * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    return load_tokenizer(tiny_tokenizer_dir)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CompletionServer:
    """A real aiohttp server on 127.0.0.1 speaking the streaming /v1/completions protocol.

    What it does depends on the path prefix of the base URL, ``server.url(behaviour)``:
      ok          streams max_tokens chunks (after an empty first chunk), a usage chunk, [DONE]
      no-usage    the same without the usage chunk
      http500     answers HTTP 500 with a vLLM-style error body
      hang        never answers
      stall       streams two tokens, then never sends more
      cut         streams two tokens and ends the response without [DONE]
      error-event streams one token, then an error event and [DONE]
      garbage     streams one token, then an event that is not JSON
    Every request body is kept in ``received``, in arrival order.
    """

    EMPTY_FIRST_CHUNK_S = 0.05  # the empty chunk comes this long before the first token
    TOKEN_GAP_S = 0.002

    def __init__(self) -> None:
        self.received: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.port}/{behaviour}"

    def __enter__(self) -> "CompletionServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{behaviour}/v1/completions", self._completions)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        behaviour = request.match_info["behaviour"]
        if behaviour == "http500":
            error = {"object": "error", "message": "the engine is\non fire", "type": "InternalServerError", "code": 500}
            return web.json_response(error, status=500)
        if behaviour == "hang":
            await asyncio.sleep(3600)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        # As the simulated GPU does: a reply whose length the seed carries ends there, at EOS.
        reply = None if body.get("ignore_eos") else reply_tokens_of(body.get("seed"))
        length = body["max_tokens"] if reply is None else min(reply, body["max_tokens"])
        tokens = {"stall": 2, "cut": 2, "error-event": 1, "garbage": 1}.get(behaviour, length)
        reason = "stop" if reply is not None and reply <= body["max_tokens"] else "length"
        await self._send(response, {"choices": [{"index": 0, "text": "", "finish_reason": None}]})
        await asyncio.sleep(self.EMPTY_FIRST_CHUNK_S)
        for i in range(tokens):
            last = behaviour == "ok" and i == tokens - 1
            await self._send(response, {"choices": [{"index": 0, "text": f" t{i}",
                                                     "finish_reason": reason if last else None}]})
            await asyncio.sleep(self.TOKEN_GAP_S)
        if behaviour == "stall":
            await asyncio.sleep(3600)
        if behaviour == "cut":
            return response
        if behaviour == "garbage":
            await response.write(b"data: <html>Bad Gateway</html>\n\n")
        if behaviour == "error-event":
            await self._send(response, {"error": {"object": "error", "message": "swap space exhausted",
                                                  "type": "BadRequestError", "code": 400}})
        if behaviour == "ok":
            prompt_tokens = len(body["prompt"].split()) + 1
            await self._send(response, {"choices": [], "usage": {
                "prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}})
        await response.write(b"data: [DONE]\n\n")
        return response

    @staticmethod
    async def _send(response: web.StreamResponse, event: dict) -> None:
        await response.write(f"data: {json.dumps(event)}\n\n".encode())


@pytest.fixture
def completion_server():
    with CompletionServer() as server:
        yield server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """vLLM's real OpenAI server on the simulated GPU (CodeLlama-34B, 2 x A100-40GB, FCFS), one
    start for every test of this folder that needs it."""
    log = tmp_path_factory.mktemp("server") / "vllm_server.log"
    with simulated_server(ServerOptions(log_path=log)) as running:
        yield running
