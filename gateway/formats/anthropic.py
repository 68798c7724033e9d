"""Anthropic's Messages API shapes, both ways: requests (from ``/v1/messages`` clients, to Anthropic
providers), answers (from providers, to clients) and the named SSE events of a stream.

Translation to and from the chat-completions model the core uses:

- ``system`` (a string or text blocks) is a leading system turn; system turns go back to ``system``.
- An assistant turn's ``tool_use`` blocks are its tool calls (``input`` ↔ JSON text ``arguments``);
  a user turn's ``tool_result`` blocks are ``tool`` turns (``tool_use_id`` ↔ ``tool_call_id``,
  ``is_error`` ↔ ``tool_error``, which chat completions have no field for), placed before the
  turn's text. Consecutive turns of one role are merged (Anthropic requires
  alternating turns); a turn of text blocks only is sent as one string.
- ``tool_choice`` ``auto`` / ``any`` / ``tool`` / ``none`` ↔ ``auto`` / ``required`` / a function /
  ``none``; ``disable_parallel_tool_use`` ↔ ``parallel_tool_calls: false``.
- Structured output (``response_format`` json_object / json_schema) has no Messages API field;
  its closest equivalent is a forced tool whose input schema is the requested schema
  (``{"type": "object"}`` for json_object): the answer's ``tool_use`` input becomes the text
  content, as JSON, and ``tool_use`` the finish reason ``stop``.
- Structured output asked of ``/v1/messages`` (``output_config.format``, or the beta's
  ``output_format``: ``{"type": "json_schema", "schema": ...}``) is ``response_format`` json_schema
  named ``output``; the answer is one text block holding the JSON.
- ``stop_reason`` ↔ ``finish_reason``: end_turn / stop_sequence → stop, max_tokens → length,
  tool_use → tool_calls, refusal → content_filter; the matched ``stop_sequence`` is kept, so a
  Messages API client gets ``stop_sequence`` back from an Anthropic model (chat completions do
  not say which sequence stopped them: ``end_turn``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequestError, UnsupportedParameterError
from gateway.formats.openai import parse_arguments
from gateway.formats.shape import Bad, array, client_error, flag, integer, member, number, obj, text
from gateway.types import (
    ChatRequest,
    Completion,
    Message,
    ResponseFormat,
    StreamDelta,
    StreamEnd,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
FROM_FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
#: The forced tool standing for ``response_format: json_object``.
JSON_TOOL = "json_response"
_JSON_TOOL_DESCRIPTION = "Give your whole answer as this tool's input, a JSON value matching its schema."
_TOOL_CHOICE = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}
_TOOL_CHOICE_BACK = {v: k for k, v in _TOOL_CHOICE.items()}


def stop_reason(finish: str, stop_sequence: str = "") -> str:
    """The Messages API ``stop_reason`` of a finish reason (``stop_sequence`` when one matched)."""
    return "stop_sequence" if stop_sequence and finish == "stop" else FROM_FINISH.get(finish, "end_turn")


def finish_reason(stop_reason: str | None, json_tool: str | None = None) -> str:
    """The chat-completions finish reason of a Messages API ``stop_reason``."""
    if stop_reason == "tool_use" and json_tool:
        return "stop"
    return TO_FINISH.get(stop_reason or "", "stop")


def json_tool(request: ChatRequest) -> str | None:
    """The forced tool's name when the request asks for structured output, else None."""
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    return fmt.name if fmt.type == "json_schema" else JSON_TOOL


# ---------------------------------------------------------------- requests, domain → Messages API


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        result = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
        return [result | {"is_error": True}] if m.tool_error else [result]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content or not m.tool_calls else []
    for call in m.tool_calls:
        args = parse_arguments(call.arguments) or {}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
    return blocks


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        if turns and turns[-1][0] == role:  # Anthropic requires alternating turns
            turns[-1][1].extend(_blocks(m))
        else:
            turns.append((role, _blocks(m)))
    out: list[dict[str, Any]] = []
    for role, blocks in turns:
        if all(b["type"] == "text" for b in blocks):
            out.append({"role": role, "content": "\n\n".join(b["text"] for b in blocks)})
        else:
            out.append({"role": role, "content": blocks})
    return out


def _tool_json(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description:
        out["description"] = tool.description
    return out


def _tool_choice_json(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None and parallel is not False:
        return None
    out: dict[str, Any] = {"type": _TOOL_CHOICE_BACK[choice.mode] if choice else "auto"}
    if choice is not None and choice.mode == "function":
        out["name"] = choice.name
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def request_json(model: str, request: ChatRequest, default_max_tokens: int, stream: bool) -> dict[str, Any]:
    """The Messages API body for a chat request."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(request.messages),
        "max_tokens": request.max_tokens or default_max_tokens,
    }
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if request.tools:
        body["tools"] = [_tool_json(t) for t in request.tools]
    choice = _tool_choice_json(request.tool_choice, request.parallel_tool_calls)
    if choice is not None and request.tools:  # Anthropic refuses a tool_choice without tools
        body["tool_choice"] = choice
    forced = json_tool(request)
    if forced is not None:  # structured output: a forced tool (gateway.capabilities refuses it beside tools)
        fmt = request.response_format
        assert fmt is not None
        schema = fmt.schema if fmt.schema is not None else {"type": "object"}
        tool = {"name": forced, "description": fmt.description or _JSON_TOOL_DESCRIPTION, "input_schema": schema}
        body["tools"] = [tool]
        body["tool_choice"] = {"type": "tool", "name": forced}
    if stream:
        body["stream"] = True
    return body


# ---------------------------------------------------------------- requests, Messages API → domain


def _text_blocks(value: Any, where: str) -> str:
    """A string, or text blocks joined by blank lines (other block types are refused)."""
    if isinstance(value, str):
        return value
    parts = []
    for j, block in enumerate(array(value, where, client_error)):
        at = f"{where}[{j}]"
        block = obj(block, at, client_error)
        if block.get("type") != "text":
            raise UnsupportedParameterError(
                f"{at}: only text blocks are supported here, got {block.get('type')!r}", param=f"{at}.type"
            )
        parts.append(text(block, "text", at, client_error, required=True))
    return "\n\n".join(parts)


def _turn(m: dict[str, Any], i: int) -> list[Message]:
    where = f"messages[{i}]"
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise InvalidRequestError(f"{where}.role must be 'user' or 'assistant'", param=f"{where}.role")
    content = m.get("content")
    if isinstance(content, str):
        return [Message(role, content)]
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for j, block in enumerate(array(content, f"{where}.content", client_error)):
        at = f"{where}.content[{j}]"
        block = obj(block, at, client_error)
        kind = block.get("type")
        if kind == "text":
            texts.append(text(block, "text", at, client_error, required=True))
        elif kind == "tool_use" and role == "assistant":
            args = block.get("input")
            if not isinstance(args, dict):
                raise InvalidRequestError(f"{at}.input must be an object", param=f"{at}.input")
            calls.append(
                ToolCall(
                    text(block, "id", at, client_error, required=True),
                    text(block, "name", at, client_error, required=True),
                    json.dumps(args, ensure_ascii=False),
                )
            )
        elif kind == "tool_result" and role == "user":
            failed = bool(flag(block, "is_error", at, client_error))
            result = _text_blocks(block.get("content") or "", f"{at}.content")
            call_id = text(block, "tool_use_id", at, client_error, required=True)
            results.append(Message("tool", result, tool_call_id=call_id, tool_error=failed))
        else:
            raise UnsupportedParameterError(
                f"{at}: content blocks of type {kind!r} are not supported in {role} turns", param=f"{at}.type"
            )
    turn = [Message(role, "\n\n".join(texts), tool_calls=tuple(calls))] if texts or calls else []
    return results + turn


def _tools(value: Any) -> tuple[Tool, ...]:
    tools = []
    for i, item in enumerate(array(value, "tools", client_error)):
        where = f"tools[{i}]"
        item = obj(item, where, client_error)
        kind = item.get("type")
        if kind not in (None, "custom"):
            raise UnsupportedParameterError(
                f"{where}.type {kind!r}: only client tools with an input_schema are supported", param=f"{where}.type"
            )
        schema = item.get("input_schema")
        tools.append(
            Tool(
                name=text(item, "name", where, client_error, required=True),
                description=text(item, "description", where, client_error),
                parameters=obj(schema, f"{where}.input_schema", client_error),
            )
        )
    return tuple(tools)


def _tool_choice(value: Any) -> tuple[ToolChoice | None, bool | None]:
    if value is None:
        return None, None
    choice = obj(value, "tool_choice", client_error)
    kind = choice.get("type")
    if kind not in _TOOL_CHOICE:
        raise InvalidRequestError("tool_choice.type must be one of auto, any, tool, none", param="tool_choice.type")
    name = text(choice, "name", "tool_choice", client_error, required=kind == "tool")
    disable = flag(choice, "disable_parallel_tool_use", "tool_choice", client_error)
    return ToolChoice(_TOOL_CHOICE[kind], name), (False if disable else None)


#: Messages API fields that would change the answer and that the gateway does not implement.
UNSUPPORTED = ("container", "mcp_servers", "context_management")
#: The json_schema name structured output from ``/v1/messages`` gets (the Messages API names none).
OUTPUT_NAME = "output"


def _output_format(body: dict[str, Any]) -> ResponseFormat | None:
    """``output_config.format`` (or the beta's top-level ``output_format``): a JSON schema the answer's
    text must match, as ``response_format`` json_schema; ``output_config.effort`` is a hint, not forwarded."""
    config = member(body, "output_config", "", client_error)
    unknown = sorted(set(config) - {"format", "effort"})
    if unknown:
        raise UnsupportedParameterError(
            f"output_config.{unknown[0][:40]} is not supported by this gateway; remove it",
            param=f"output_config.{unknown[0][:40]}",
        )
    where, value = "output_config.format", config.get("format")
    if body.get("output_format") is not None:
        if value is not None:
            raise InvalidRequestError("set output_config.format or output_format, not both", param="output_format")
        where, value = "output_format", body["output_format"]
    if value is None:
        return None
    fmt = obj(value, where, client_error)
    if fmt.get("type") != "json_schema":
        raise InvalidRequestError(f"{where}.type must be 'json_schema'", param=f"{where}.type")
    schema = obj(fmt.get("schema"), f"{where}.schema", client_error)
    return ResponseFormat("json_schema", OUTPUT_NAME, schema)


def read_request(data: Any, *, count_only: bool = False) -> tuple[ChatRequest, bool]:
    """``(request, stream)`` from a decoded ``/v1/messages`` body (values are checked by the core;
    ``routing`` is read by the caller, as for chat completions). ``count_only``: a
    ``/v1/messages/count_tokens`` body, which has no ``max_tokens``."""
    body = obj(data, "request body", lambda where, what: InvalidRequestError(f"{where} {what}"))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model is required and must be a string", param="model")
    for key in UNSUPPORTED:
        if body.get(key) is not None:
            raise UnsupportedParameterError(f"parameter {key!r} is not supported by this gateway; remove it", param=key)
    thinking = body.get("thinking")
    if thinking is not None and thinking != {"type": "disabled"}:
        raise UnsupportedParameterError("extended thinking is not supported by this gateway", param="thinking")
    max_tokens = integer(body, "max_tokens", "", client_error)
    if max_tokens is None and not count_only:
        raise InvalidRequestError("max_tokens is required", param="max_tokens")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequestError("messages must be a non-empty array", param="messages")
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:
        messages.append(Message("system", _text_blocks(system, "system")))
    for i, m in enumerate(raw):
        messages.extend(_turn(obj(m, f"messages[{i}]", client_error), i))
    stop = body.get("stop_sequences")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise InvalidRequestError("stop_sequences must be an array of strings", param="stop_sequences")
    integer(body, "top_k", "", client_error)  # a sampling hint: accepted, not forwarded
    metadata = member(body, "metadata", "", client_error)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("stream must be a boolean", param="stream")
    choice, parallel = _tool_choice(body.get("tool_choice"))
    request = ChatRequest(
        model=model,
        messages=tuple(messages),
        temperature=number(body, "temperature", "", client_error),
        max_tokens=max_tokens,
        top_p=number(body, "top_p", "", client_error),
        stop=tuple(stop or ()),
        user=text(metadata, "user_id", "metadata", client_error),
        tools=_tools(body.get("tools") or []),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=_output_format(body),
    )
    return request, stream


# ---------------------------------------------------------------- answers


def read_answer(data: dict[str, Any], request: ChatRequest, bad: Bad) -> tuple[Completion, Usage | None]:
    """A Messages API answer as a completion (usage None when the provider sent none)."""
    forced = json_tool(request)
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in array(data.get("content"), "answer.content", bad):
        block = obj(block, "answer.content[]", bad)
        kind = block.get("type")
        if kind == "text":
            texts.append(text(block, "text", "answer.content[]", bad))
        elif kind == "tool_use":
            args = obj(block.get("input"), "answer.content[].input", bad)
            arguments = json.dumps(args, ensure_ascii=False)
            name = text(block, "name", "answer.content[]", bad, required=True)
            if forced is not None and name == forced:
                texts.append(arguments)
            else:
                calls.append(ToolCall(text(block, "id", "answer.content[]", bad, required=True), name, arguments))
    stop = data.get("stop_reason")
    if stop is not None and not isinstance(stop, str):
        raise bad("answer.stop_reason", "must be a string")
    finish = finish_reason(stop, forced)
    usage = read_usage(data.get("usage"), "answer.usage", bad)
    matched = text(data, "stop_sequence", "answer", bad) if stop == "stop_sequence" else ""
    completion = Completion("".join(texts), finish, usage or Usage(), tuple(calls), stop_sequence=matched)
    return completion, usage


def read_usage(value: Any, where: str, bad: Bad) -> Usage | None:
    if value is None:
        return None
    counts = obj(value, where, bad)
    tokens = []
    for key in ("input_tokens", "output_tokens"):
        n = integer(counts, key, where, bad)
        if n is not None and n < 0:
            raise bad(f"{where}.{key}", "is negative")
        tokens.append(n or 0)
    return Usage(tokens[0], tokens[1])


def message_json(message_id: str, model: str, completion: Completion) -> dict[str, Any]:
    """A Messages API answer (``type: message``) for a completion (its first choice)."""
    content: list[dict[str, Any]] = []
    if completion.content or not completion.tool_calls:
        content.append({"type": "text", "text": completion.content})
    for call in completion.tool_calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": parse_arguments(call.arguments) or {}}
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(completion.finish_reason, completion.stop_sequence),
        "stop_sequence": completion.stop_sequence or None,
        "usage": {"input_tokens": completion.usage.prompt_tokens, "output_tokens": completion.usage.completion_tokens},
    }


def error_json(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


# ---------------------------------------------------------------- streams


def sse(name: str, data: dict[str, Any]) -> str:
    """One named SSE event (``data`` carries its ``type`` too, as Anthropic's do)."""
    return f"event: {name}\ndata: {json.dumps({'type': name} | data, separators=(',', ':'))}\n\n"


@dataclass
class StreamWriter:
    """Domain stream events → the Messages API's events (content blocks opened and closed in order);
    ``extra`` is merged into every event."""

    message_id: str
    model: str
    extra: dict[str, Any] = field(default_factory=dict)
    _open: int | None = None
    _blocks: int = 0
    _tool_blocks: dict[int, int] = field(default_factory=dict)

    def _sse(self, name: str, data: dict[str, Any]) -> str:
        return sse(name, data | self.extra)

    def start(self, input_tokens: int = 0) -> list[str]:
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 0},
        }
        return [self._sse("message_start", {"message": message})]

    def _begin(self, block: dict[str, Any]) -> list[str]:
        out = self._close()
        self._open = self._blocks
        self._blocks += 1
        return [*out, self._sse("content_block_start", {"index": self._open, "content_block": block})]

    def _close(self) -> list[str]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [self._sse("content_block_stop", {"index": index})]

    def event(self, event: StreamDelta | ToolCallDelta) -> list[str]:
        out: list[str] = []
        if isinstance(event, StreamDelta):
            if self._open is None or self._open in self._tool_blocks.values():
                out += self._begin({"type": "text", "text": ""})
            assert self._open is not None
            delta = {"type": "text_delta", "text": event.text}
            return [*out, self._sse("content_block_delta", {"index": self._open, "delta": delta})]
        block = self._tool_blocks.get(event.index)
        if block is None:
            out += self._begin({"type": "tool_use", "id": event.id, "name": event.name, "input": {}})
            assert self._open is not None
            block = self._tool_blocks[event.index] = self._open
        if event.arguments:
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
            out.append(self._sse("content_block_delta", {"index": block, "delta": delta}))
        return out

    def finish(self, end: StreamEnd, usage: Usage) -> list[str]:
        out = self._close()
        delta = {
            "stop_reason": stop_reason(end.finish_reason, end.stop_sequence),
            "stop_sequence": end.stop_sequence or None,
        }
        counts = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
        return [*out, self._sse("message_delta", {"delta": delta, "usage": counts}), self._sse("message_stop", {})]


@dataclass
class StreamReader:
    """The Messages API's events → domain stream events (``forced``: the structured-output tool)."""

    forced: str | None
    bad: Bad
    finish: str = "stop"
    usage: Usage | None = None
    stop_sequence: str = ""
    _prompt_tokens: int = 0
    _tools: dict[int, int] = field(default_factory=dict)
    _json_blocks: set[int] = field(default_factory=set)

    def read(self, kind: str, payload: dict[str, Any]) -> list[StreamDelta | ToolCallDelta | StreamEnd]:
        """The domain events of one SSE event (a ``StreamEnd`` at ``message_stop``)."""
        bad = self.bad
        if kind == "message_start":
            started = read_usage(
                member(payload, "message", "message_start", bad).get("usage"),
                "message_start.message.usage",
                bad,
            )
            self._prompt_tokens = started.prompt_tokens if started else 0
        elif kind == "content_block_start":
            index = integer(payload, "index", kind, bad)
            block = obj(payload.get("content_block"), f"{kind}.content_block", bad)
            if block.get("type") == "tool_use" and index is not None:
                name = text(block, "name", f"{kind}.content_block", bad, required=True)
                if name == self.forced:
                    self._json_blocks.add(index)
                    return []
                if len(self._tools) >= 128:
                    raise bad(f"{kind}.content_block", "opens too many tool calls")
                self._tools[index] = len(self._tools)
                return [
                    ToolCallDelta(
                        self._tools[index], text(block, "id", f"{kind}.content_block", bad, required=True), name
                    )
                ]
        elif kind == "content_block_delta":
            index = integer(payload, "index", kind, bad)
            delta = member(payload, "delta", kind, bad)
            if delta.get("type") == "input_json_delta":
                partial = text(delta, "partial_json", f"{kind}.delta", bad)
                if index in self._json_blocks:
                    return [StreamDelta(partial)] if partial else []
                if index not in self._tools:
                    raise bad(f"{kind}.index", "names no open tool_use block")
                return [ToolCallDelta(self._tools[index], arguments=partial)] if partial else []
            chunk = text(delta, "text", f"{kind}.delta", bad)
            return [StreamDelta(chunk)] if chunk else []
        elif kind == "message_delta":
            delta = member(payload, "delta", "message_delta", bad)
            reason = delta.get("stop_reason")
            if reason is not None and not isinstance(reason, str):
                raise bad("message_delta.delta.stop_reason", "must be a string")
            self.finish = finish_reason(reason, self.forced)
            if reason == "stop_sequence":
                self.stop_sequence = text(delta, "stop_sequence", "message_delta.delta", bad)
            counted = read_usage(payload.get("usage"), "message_delta.usage", bad)
            if counted is not None:
                self.usage = Usage(counted.prompt_tokens or self._prompt_tokens, counted.completion_tokens)
        elif kind == "message_stop":
            return [StreamEnd(self.finish, self.usage, stop_sequence=self.stop_sequence)]
        return []
