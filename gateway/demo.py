"""A local stand-in LLM provider speaking both wire formats, and ``ferryman demo-provider``.

``ferryman up --demo`` (``make demo``) runs it beside the scorer and the gateway, with
``config/gateway.demo.yaml``: two keyless models on loopback, ``demo-strong`` (the OpenAI
chat-completions format) and ``demo-weak`` (Anthropic's Messages API), so that a fresh clone
without provider keys gets real routed completions — whole, streamed, with tool calls — through
the same code paths as real providers. Every answer is labelled: its model is ``demo-...`` and
its text starts with ``[Ferryman demo]``. No LLM is called; the answer is canned.

How it answers (:class:`LocalProvider`; the test harness's fake provider is one too, with
faults): when tools are offered (and ``tool_choice`` is not none) and the conversation does not
end with a tool result, it calls the forced tool or the first one with ``tool_arguments``;
after a tool result it answers in text and quotes the result; asked for JSON
(``response_format``) it answers ``tool_arguments``; ``n`` choices, log-probabilities per word;
a text answer ends before the first stop sequence in it (Anthropic's ``stop_sequence`` says which).
The demo's tool arguments and JSON answers are small values that fit the request's schemas
(:func:`example`), so an SDK that parses them (``messages.parse(output_format=Model)``,
``chat.completions.parse``) gets a valid object.
Streams send the text word by word and tool-call arguments in pieces.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.types import (
    Choice,
    Completion,
    StreamDelta,
    StreamEnd,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)

#: The demo's default port (``ferryman up --demo`` adds its port offset).
DEMO_PORT = 8089
_ARGUMENT_PIECE = 8


@dataclass(frozen=True)
class Asked:
    """What a provider request asks for, read from either wire format."""

    api: str
    model: str
    tools: tuple[str, ...]
    forced: str | None
    tools_off: bool
    tool_result: str | None
    json_output: bool
    n: int
    logprobs: bool
    top_logprobs: int
    stream: bool
    include_usage: bool
    prompt_tokens: int
    #: Each offered tool's parameter schema, and the JSON schema asked of the answer (OpenAI's
    #: response_format; Anthropic's structured output is a forced tool), for answers that fit them.
    schemas: dict[str, Any] = field(default_factory=dict)
    output_schema: Any = None
    #: Stop sequences (``stop`` / ``stop_sequences``): a text answer ends before the first one found.
    stop: tuple[str, ...] = ()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(b.get("text") or b.get("content")) for b in content if isinstance(b, dict))
    return ""


def asked(api: str, body: dict[str, Any]) -> Asked:
    """Read a chat-completions (``api="openai"``) or Messages (``"anthropic"``) request body."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in messages)
    choice = body.get("tool_choice")
    if api == "openai":
        tools = tuple(t["function"]["name"] for t in body.get("tools") or [])
        schemas = {t["function"]["name"]: t["function"].get("parameters") for t in body.get("tools") or []}
        forced = choice["function"]["name"] if isinstance(choice, dict) else None
        off = choice == "none"
        result = _text_of(last.get("content")) if last.get("role") == "tool" else None
        fmt = body.get("response_format") or {}
        json_output = fmt.get("type") in ("json_object", "json_schema")
        output_schema = (fmt.get("json_schema") or {}).get("schema") if json_output else None
    else:
        tools = tuple(t["name"] for t in body.get("tools") or [])
        schemas = {t["name"]: t.get("input_schema") for t in body.get("tools") or []}
        output_schema = None
        forced = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
        off = isinstance(choice, dict) and choice.get("type") == "none"
        content = last.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        results = [_text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result"]
        result = " ".join(results) if results and last.get("role") == "user" else None
        json_output = False  # Anthropic has no JSON mode: the gateway sends a forced tool
    return Asked(
        api,
        str(body.get("model", "")),
        tools,
        forced,
        off,
        result,
        json_output,
        int(body.get("n") or 1),
        bool(body.get("logprobs")),
        int(body.get("top_logprobs") or 0),
        bool(body.get("stream")),
        bool((body.get("stream_options") or {}).get("include_usage")),
        prompt_tokens,
        schemas,
        output_schema,
        _stops(body.get("stop") if api == "openai" else body.get("stop_sequences")),
    )


def _stops(value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(v for v in values if isinstance(v, str) and v)


def _cut(text: str, stops: tuple[str, ...]) -> tuple[str, str]:
    """``text`` up to the first stop sequence in it, and that sequence ("" when none is)."""
    found = [(text.find(s), s) for s in stops if s in text]
    if not found:
        return text, ""
    at, stop = min(found)
    return text[:at], stop


def example(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A small JSON value that fits ``schema`` (its ``const``, first ``enum`` value or ``default``; an
    object's required properties, or all when none are; one array item; ``"demo"``, the minimum or 1, true).
    Local ``$ref`` s (``#/$defs/...``, what pydantic writes) are followed; unknown shapes give null."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 16:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return example(target, root, depth + 1)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return example(options[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or (kind is None and isinstance(schema.get("properties"), dict)):
        found = schema.get("properties")
        properties: dict[str, Any] = found if isinstance(found, dict) else {}
        required = [k for k in schema.get("required") or [] if k in properties] or list(properties)
        return {k: example(properties[k], root, depth + 1) for k in required}
    if kind == "array":
        return [example(schema.get("items"), root, depth + 1)] if isinstance(schema.get("items"), dict) else []
    if kind == "string":
        return "demo"
    if kind in ("integer", "number"):
        # the minimum (just above an exclusive one), else 1: a count or size that is valid where a
        # constraint was moved into the description (as Anthropic's SDK does with exclusiveMinimum)
        low, above = schema.get("minimum"), False
        if low is None and "exclusiveMinimum" in schema:
            low, above = schema["exclusiveMinimum"], True
        low = low if isinstance(low, int | float) and not isinstance(low, bool) else 1
        return int(low) + above if kind == "integer" else float(low) + 0.5 * above
    if kind == "boolean":
        return True
    return None


def words(text: str) -> list[str]:
    """``text`` in word-sized stream pieces (spaces kept)."""
    parts = text.split(" ")
    return [w + (" " if i < len(parts) - 1 else "") for i, w in enumerate(parts)]


def _logprobs(pieces: list[str], top: int) -> tuple[TokenLogprob, ...]:
    out = []
    for piece in pieces:
        alternatives = (TokenLogprob(piece, -0.25), TokenLogprob("maybe", -2.5), TokenLogprob("perhaps", -3.5))
        out.append(TokenLogprob(piece, -0.25, tuple(piece.encode()), alternatives[:top]))
    return tuple(out)


class LocalProvider:
    """Answers provider requests in either wire format (subclasses choose the text: ``reply_for``)."""

    def __init__(self, reply: str, tool_arguments: str = '{"query": "fake"}') -> None:
        self.reply = reply
        self.tool_arguments = tool_arguments
        self._ids = itertools.count(1)

    def reply_for(self, body: dict[str, Any]) -> str:
        """The answer's text (before a quoted tool result, and per choice)."""
        return self.reply

    def arguments(self, ask: Asked, schema: Any) -> str:
        """The JSON text of a tool call's arguments or of a JSON answer (``schema``: what it should fit)."""
        return self.tool_arguments

    def choices(self, ask: Asked, text: str) -> list[Choice]:
        """The answer: a tool call, JSON, or ``text`` (quoting a tool result), ``ask.n`` times."""
        if ask.tools and not ask.tools_off and ask.tool_result is None:
            prefix = "call_" if ask.api == "openai" else "toolu_"
            name = ask.forced or ask.tools[0]
            call = ToolCall(f"{prefix}{next(self._ids):06d}", name, self.arguments(ask, ask.schemas.get(name)))
            return [Choice("", "tool_calls", (call,)) for _ in range(ask.n)]
        if ask.json_output:
            text = self.arguments(ask, ask.output_schema)
        elif ask.tool_result is not None:
            text = f"{text} Tool result: {ask.tool_result}"
        out = []
        for i in range(ask.n):
            content = text if i == 0 else f"{text} (choice {i + 1})"
            content, stop = _cut(content, ask.stop) if not ask.json_output else (content, "")
            logprobs = _logprobs(words(content), ask.top_logprobs) if ask.logprobs else None
            out.append(Choice(content, "stop", (), logprobs, stop))
        return out

    def usage(self, ask: Asked, choices: list[Choice]) -> Usage:
        generated = sum(len(words(c.content)) if c.content else 1 for c in choices)
        return Usage(ask.prompt_tokens, generated)

    # ------------------------------------------------------------ whole answers

    def answer_json(self, ask: Asked, choices: list[Choice]) -> dict[str, Any]:
        usage = self.usage(ask, choices)
        if ask.api == "anthropic":
            completion = Completion.of(choices, usage)
            return anthropic_format.message_json(f"msg_{next(self._ids):06d}", ask.model, completion)
        return {
            "id": f"chatcmpl-local{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": ask.model,
            "choices": [openai_format.choice_json(i, c) for i, c in enumerate(choices)],
            "usage": openai_format.usage_json(usage),
        }

    # ------------------------------------------------------------ streams

    @staticmethod
    def deltas(choices: list[Choice], pieces: list[str] | None = None) -> list[StreamDelta | ToolCallDelta]:
        """Each choice's text word by word (or as ``pieces``), then its tool calls in pieces."""
        out: list[StreamDelta | ToolCallDelta] = []
        for i, choice in enumerate(choices):
            chunks = pieces if pieces is not None and i == 0 else words(choice.content) if choice.content else []
            logprobs = list(choice.logprobs or ())
            for j, chunk in enumerate(chunks):
                out.append(StreamDelta(chunk, i, (logprobs[j],) if j < len(logprobs) else None))
            for k, call in enumerate(choice.tool_calls):
                out.append(ToolCallDelta(k, call.id, call.name, "", i))
                for start in range(0, len(call.arguments), _ARGUMENT_PIECE):
                    out.append(ToolCallDelta(k, arguments=call.arguments[start : start + _ARGUMENT_PIECE], choice=i))
        return out

    def stream_events(self, ask: Asked, choices: list[Choice], pieces: list[str] | None = None) -> list[str]:
        """The whole stream as SSE event texts, in the request's wire format."""
        usage = self.usage(ask, choices)
        more = tuple(c.finish_reason for c in choices[1:])
        end = StreamEnd(choices[0].finish_reason, usage, more, choices[0].stop_sequence)
        deltas = self.deltas(choices, pieces)
        if ask.api == "anthropic":
            writer = anthropic_format.StreamWriter(f"msg_{next(self._ids):06d}", ask.model)
            events = writer.start(ask.prompt_tokens)
            for delta in deltas:
                events += writer.event(delta)
            return events + writer.finish(end, usage)
        out = openai_format.ChunkWriter(f"chatcmpl-local{next(self._ids):06d}", int(time.time()), ask.model)
        chunks = [out.start(len(choices)), *(out.event(d) for d in deltas), out.finish(end)]
        if ask.include_usage:
            chunks.append(out.usage(usage))
        return [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]


class DemoProvider(LocalProvider):
    """The demo's canned answers, labelled as such; tool arguments and JSON answers fit the request's schemas."""

    def __init__(self) -> None:
        super().__init__("", tool_arguments='{"query": "demo"}')

    def arguments(self, ask: Asked, schema: Any) -> str:
        value = example(schema) if isinstance(schema, dict) else None
        if isinstance(value, dict) and value:
            return json.dumps(value)
        # JSON mode (OpenAI's json_object; for Anthropic a forced tool taking any object): labelled
        closed = isinstance(schema, dict) and schema.get("additionalProperties") is False
        if (ask.json_output or ask.forced) and not closed:
            return json.dumps({"demo": "[Ferryman demo] a canned JSON answer"})
        return "{}"

    def reply_for(self, body: dict[str, Any]) -> str:
        model = str(body.get("model", "demo"))
        return (
            f"[Ferryman demo] This is a canned answer from {model}, a built-in local stand-in model: no LLM was "
            "called. The router chose this tier for your prompt; set OPENAI_API_KEY / ANTHROPIC_API_KEY and run "
            "`make run` for real answers."
        )

    async def handle(self, request: Request) -> Response:
        api = "anthropic" if request.url.path.endswith("/messages") else "openai"
        body = json.loads(await request.body())
        ask = asked(api, body)
        choices = self.choices(ask, self.reply_for(body))
        if not ask.stream:
            return JSONResponse(self.answer_json(ask, choices))

        async def events() -> Any:
            for event in self.stream_events(ask, choices):
                yield event.encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    def app(self) -> Starlette:
        routes = [Route(p, self.handle, methods=["POST"]) for p in ("/v1/chat/completions", "/v1/messages")]
        return Starlette(routes=routes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=DEMO_PORT, help="port (0: any free port)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once serving")


def run(args: argparse.Namespace) -> int:
    """Serve the demo provider until SIGINT/SIGTERM, then stop with status 0. uvicorn's own signal handling is
    off (``HTTPServer``): it re-raises the signal once stopped, a KeyboardInterrupt traceback on Ctrl-C."""
    import asyncio

    import uvicorn

    from ferryman import signals
    from gateway.http_server import HTTPServer, start_serving

    server = HTTPServer(
        uvicorn.Config(DemoProvider().app(), host=args.host, port=args.port, log_level="warning", lifespan="off")
    )

    async def stop_on_signal() -> None:
        await signals.stop_event().wait()
        server.should_exit = True

    async def serve() -> bool:
        stopper = asyncio.create_task(stop_on_signal())
        try:
            task = await start_serving(server, "demo provider", "--host/--port", [stopper])
        except OSError:  # the listener could not bind (uvicorn logged why)
            return False
        print(f"ferryman demo-provider: serving canned answers on http://{args.host}:{server.port}/v1", flush=True)
        if args.port_file is not None:
            args.port_file.write_text(str(server.port))
        await task
        stopper.cancel()
        return True

    if not asyncio.run(serve()):
        print(
            f"ferryman demo-provider: cannot listen on {args.host}:{args.port} (--host/--port): "
            "in use or not available",
            file=sys.stderr,
        )
        return 1
    return 0
