"""A fake LLM provider: a real HTTP server on loopback speaking the OpenAI chat-completions
and Anthropic Messages APIs, with faults a test programs per request.

It answers like :class:`gateway.demo.LocalProvider` (tool calls when tools are offered, the tool
result quoted after one, JSON, ``n`` choices, log-probabilities; streamed tool-call arguments in
pieces), written with the gateway's own wire-format writers (``gateway.formats``).

Faults (:class:`Fault`): HTTP 500, 429 with Retry-After, any other status (400, 401), an HTML
error page, slow answers, malformed JSON, answers of the wrong shape (``shape``: a JSON patch
merged into the answer or into each stream event), huge answers, a connection dropped
mid-stream, a stream that stalls or trickles, and (by stopping the server) connection refused.
Which fault a request gets: the next one queued by :meth:`FakeProvider.program`; else the first
rule that matches (:meth:`~FakeProvider.poison`: a marker in the prompt; random failures at a
rate); else ``default`` (normally a correct answer). Counters say how many requests arrived,
so tests can check what the gateway really sent.

Run standalone (for benchmarks): ``python -m harness.fake_provider --port-file F``
(``--fail-rate`` for random failures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.demo import LocalProvider, asked


@dataclass(frozen=True)
class Fault:
    """What a request gets. ``kind``: ok, status, html, slow, malformed, shape, huge, disconnect,
    stall (after ``after_chunks`` chunks a stream sends only SSE comments for ``delay_s``),
    trickle (every chunk after ``delay_s``)."""

    kind: str = "ok"
    status: int = 500
    retry_after: str | None = None
    delay_s: float = 0.0
    #: For disconnect, stall and shape: content chunks sent intact first.
    after_chunks: int = 2
    #: For shape: a JSON object merged into the whole answer, or into each later stream event.
    patch: str = ""
    #: For huge: bytes of answer text, in this many stream chunks.
    size: int = 0
    chunks: int = 1
    #: For status: the error message in the body (default: "fake error <status>").
    message: str = ""


OK = Fault()


def status(code: int, retry_after: str | None = None, message: str = "") -> Fault:
    return Fault("status", status=code, retry_after=retry_after, message=message)


def slow(delay_s: float) -> Fault:
    return Fault("slow", delay_s=delay_s)


def shape(patch: dict[str, Any], after_chunks: int = 0) -> Fault:
    """An answer of the wrong shape: ``patch`` merged in (e.g. ``{"usage": {"prompt_tokens": "12"}}``)."""
    return Fault("shape", patch=json.dumps(patch), after_chunks=after_chunks)


def huge(size: int, chunks: int = 1) -> Fault:
    return Fault("huge", size=size, chunks=chunks)


def stall(delay_s: float, after_chunks: int = 2) -> Fault:
    return Fault("stall", delay_s=delay_s, after_chunks=after_chunks)


def trickle(delay_s: float) -> Fault:
    return Fault("trickle", delay_s=delay_s)


MALFORMED = Fault("malformed")
DISCONNECT = Fault("disconnect")
HTML = Fault("html", status=502)

Rule = Callable[[dict[str, Any]], "Fault | None"]


def _prompt(body: dict[str, Any]) -> str:
    return " ".join(str(m.get("content", "")) for m in body.get("messages", []) if isinstance(m, dict))


class _Dropped(Exception):
    """Raised inside a streaming body to drop the connection mid-stream."""


class FakeProvider(LocalProvider):
    """One fake endpoint serving both APIs under ``/v1`` (``/v1/chat/completions``, ``/v1/messages``);
    how it answers tools, JSON, ``n`` and log-probabilities: :class:`gateway.demo.LocalProvider`
    (``tool_arguments`` is what its tool calls and JSON answers carry)."""

    def __init__(self, reply: str = "The quick brown fox jumps over the lazy dog.", name: str = "fake") -> None:
        super().__init__(reply)
        self.name = name
        self.default = OK
        self.rules: list[Rule] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.requests = 0
        self.last_body: dict[str, Any] | None = None
        self.last_headers: dict[str, str] = {}
        #: Client ports seen since the last reset: one per connection the gateway opened.
        self.peers: set[int] = set()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    # ---------------------------------------------------------------- control

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def program(self, *faults: Fault) -> None:
        """Queue faults for the next requests (one each)."""
        with self._lock:
            self._faults.extend(faults)

    def when(self, marker: str, fault: Fault) -> None:
        """Requests whose prompt contains ``marker`` get ``fault`` (unless one is queued)."""
        self.rules.append(lambda body: fault if marker in _prompt(body) else None)

    def poison(self, marker: str) -> None:
        """Requests whose prompt contains ``marker`` get HTTP 500, like a prompt every provider chokes on."""
        self.when(marker, status(500))

    def fail_at_random(self, rate: float, fault: Fault | None = None, seed: int = 0) -> None:
        """Each request fails with ``fault`` (HTTP 500 by default) with probability ``rate``."""
        bad, rng = fault or status(500), random.Random(seed)
        self.rules.append(lambda body: bad if rng.random() < rate else None)

    def reset(self, default: Fault = OK) -> None:
        with self._lock:
            self._faults.clear()
            self.rules.clear()
            self.default = default
            self.requests = 0
            self.peers.clear()

    def _next(self, request: Request, body: dict[str, Any]) -> Fault:
        with self._lock:
            self.requests += 1
            self.last_body = body
            self.last_headers = dict(request.headers)
            if request.client is not None:
                self.peers.add(request.client.port)
            if self._faults:
                return self._faults.popleft()
            for rule in self.rules:
                fault = rule(body)
                if fault is not None:
                    return fault
            return self.default

    def start(self, port: int = 0) -> FakeProvider:
        """Serve in a background thread on 127.0.0.1 (port 0 = a free port)."""
        # log_level None: no Logger.setLevel while other servers run in this process (gateway.http_server says why)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, lifespan="off", log_level=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"fake-provider-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake provider did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving; the port then refuses connections."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- serving

    async def _fault_response(self, fault: Fault) -> Response | None:
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
        elif fault.kind == "status":
            headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
            message = fault.message or f"fake error {fault.status}"
            body = {"error": {"message": message, "type": "fake", "code": None}}
            return JSONResponse(body, status_code=fault.status, headers=headers)
        elif fault.kind == "malformed":
            return Response(b'{"choices": [ this is not json', media_type="application/json")
        elif fault.kind == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return Response(page, status_code=fault.status, media_type="text/html")
        return None

    async def _begin(self, request: Request) -> tuple[dict[str, Any], Fault, Response | None]:
        """Both APIs: parse the body, apply the next programmed fault."""
        body = json.loads(await request.body())
        fault = self._next(request, body)
        return body, fault, await self._fault_response(fault)

    def _words(self, reply: str, fault: Fault) -> list[str] | None:
        """A huge answer's stream pieces (``fault.chunks`` of them); None: the reply, word by word."""
        if fault.kind == "huge":
            return ["x" * (fault.size // fault.chunks)] * fault.chunks
        return None

    @staticmethod
    def _patched(answer: dict[str, Any], fault: Fault) -> dict[str, Any]:
        return answer | json.loads(fault.patch) if fault.kind == "shape" else answer

    async def _sse(self, fault: Fault, events: list[str]) -> AsyncIterator[bytes]:
        # the opening events (the role chunk; message_start and the first content_block_start) are never
        # faulted; ``after_chunks`` counts the content events after them
        lead = 2 if len(events) > 1 and events[1].startswith("event: content_block_start") else 1
        for i, event in enumerate(events):
            content = i >= fault.after_chunks + lead if fault.after_chunks >= 0 else True  # -1: every event
            if fault.kind == "disconnect" and content:
                raise _Dropped("dropped mid-stream by the test")
            if fault.kind == "stall" and i == fault.after_chunks + lead:
                # SSE comments only, as some providers send to keep a connection open: the socket is
                # never idle for long, so only a timeout between *events* notices the stall
                stalled_until = time.monotonic() + fault.delay_s
                while time.monotonic() < stalled_until:
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(0.1)
            if fault.kind == "trickle" and i > 0:
                await asyncio.sleep(fault.delay_s)
            if fault.kind == "shape" and content and event.startswith(("data: {", "event:")):
                head, _, data = event.partition("data: ")
                event = f"{head}data: {json.dumps(self._patched(json.loads(data), fault))}\n\n"
            yield event.encode()

    async def _serve(self, api: str, request: Request) -> Response:
        """Both APIs: the programmed fault, else the answer (``gateway.demo.LocalProvider``) in ``api``'s format."""
        body, fault, early = await self._begin(request)
        if early is not None:
            return early
        ask = asked(api, body)
        reply = self.reply_for(body)  # once: a fake judge records each prompt it answers
        pieces = self._words(reply, fault)
        text = "".join(pieces) if pieces is not None else reply
        choices = self.choices(ask, text)
        if not ask.stream:
            return JSONResponse(self._patched(self.answer_json(ask, choices), fault))
        events = self.stream_events(ask, choices, pieces if not choices[0].tool_calls else None)
        return StreamingResponse(self._sse(fault, events), media_type="text/event-stream")

    async def _openai(self, request: Request) -> Response:
        return await self._serve("openai", request)

    async def _anthropic(self, request: Request) -> Response:
        return await self._serve("anthropic", request)


def main() -> int:
    """Serve a fake provider until killed (benchmarks run it in its own process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="answer every request after this delay")
    parser.add_argument("--reply", help="the answer to every request (default: a fixed sentence)")
    parser.add_argument("--judge", action="store_true", help="answer as a pairwise judge (harness.fake_judge)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="answer this share of requests with HTTP 500")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random failures")
    parser.add_argument(
        "--judge-rule",
        choices=("marker", "traffic"),
        default="marker",
        help="the judge's rule: the answer with the marker 'strong' wins, or harness.traffic's family verdicts",
    )
    args = parser.parse_args()
    if args.judge:
        from harness.fake_judge import FakeJudge, by_traffic_family, prefer_marker

        fake: FakeProvider = FakeJudge(by_traffic_family() if args.judge_rule == "traffic" else prefer_marker())
    else:
        fake = FakeProvider(reply=args.reply) if args.reply else FakeProvider()
    if args.delay_ms > 0:
        fake.default = slow(args.delay_ms / 1000)
    if args.fail_rate > 0:
        fake.fail_at_random(args.fail_rate, seed=args.seed)
    config = uvicorn.Config(
        fake.app, host=args.host, port=args.port, lifespan="off", log_level="error", access_log=False
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        tmp = args.port_file.with_suffix(".tmp")  # written whole, then renamed: readers never see half
        tmp.write_text(str(server.servers[0].sockets[0].getsockname()[1]))
        tmp.replace(args.port_file)
        await task

    from gateway.loop import run_loop

    run_loop(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
