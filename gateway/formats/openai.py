"""OpenAI chat-completions shapes beyond plain text: tools, tool choice, response format, tool
calls, log-probabilities, choices and stream chunks — read and written for clients and
providers alike (see :mod:`gateway.formats`).

A tool call's ``arguments`` stay JSON text, as OpenAI sends them; values (names, sizes, that
arguments are a JSON object) are checked by :mod:`gateway.validation` for requests and by the
provider adapters for answers.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import UnsupportedParameterError
from gateway.formats.shape import Bad, array, flag, integer, json_object, member, number, obj, text
from gateway.types import (
    Choice,
    Message,
    ResponseFormat,
    StreamDelta,
    StreamEnd,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

#: tool_choice strings; an object names one function.
TOOL_CHOICE_MODES = ("auto", "none", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")

# ---------------------------------------------------------------- reading


def read_tools(value: Any, bad: Bad) -> tuple[Tool, ...]:
    """``tools``: ``[{"type": "function", "function": {name, description?, parameters?, strict?}}]``."""
    if value is None:
        return ()
    tools = []
    for i, item in enumerate(array(value, "tools", bad)):
        where = f"tools[{i}]"
        item = obj(item, where, bad)
        kind = item.get("type", "function")
        if kind != "function":
            raise UnsupportedParameterError(
                f"{where}.type {kind!r} is not supported (only function tools)", param=f"{where}.type"
            )
        fn = obj(item.get("function"), f"{where}.function", bad)
        where = f"{where}.function"
        tools.append(
            Tool(
                name=text(fn, "name", where, bad, required=True),
                description=text(fn, "description", where, bad),
                parameters=json_object(fn, "parameters", where, bad),
                strict=flag(fn, "strict", where, bad),
            )
        )
    return tuple(tools)


def read_tool_choice(value: Any, bad: Bad) -> ToolChoice | None:
    """``"auto" | "none" | "required" | {"type": "function", "function": {"name": ...}}``."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in TOOL_CHOICE_MODES:
            raise bad("tool_choice", f"must be one of {', '.join(TOOL_CHOICE_MODES)} or a function, got {value!r}")
        return ToolChoice(value)
    choice = obj(value, "tool_choice", bad)
    if choice.get("type") != "function":
        raise UnsupportedParameterError(
            "tool_choice: only {'type': 'function', ...} objects are supported", param="tool_choice"
        )
    fn = obj(choice.get("function"), "tool_choice.function", bad)
    return ToolChoice("function", text(fn, "name", "tool_choice.function", bad, required=True))


def read_response_format(value: Any, bad: Bad) -> ResponseFormat | None:
    """``{"type": "text" | "json_object"}`` or ``{"type": "json_schema", "json_schema": {name, schema, ...}}``."""
    if value is None:
        return None
    fmt = obj(value, "response_format", bad)
    kind = text(fmt, "type", "response_format", bad, required=True)
    if kind not in RESPONSE_FORMATS:
        raise bad("response_format.type", f"must be one of {', '.join(RESPONSE_FORMATS)}, got {kind!r}")
    if kind != "json_schema":
        return None if kind == "text" else ResponseFormat(kind)
    spec = obj(fmt.get("json_schema"), "response_format.json_schema", bad)
    where = "response_format.json_schema"
    return ResponseFormat(
        kind,
        name=text(spec, "name", where, bad, required=True),
        schema=json_object(spec, "schema", where, bad),
        strict=flag(spec, "strict", where, bad),
        description=text(spec, "description", where, bad),
    )


def read_tool_calls(value: Any, where: str, bad: Bad) -> tuple[ToolCall, ...]:
    """A message's ``tool_calls``: ``[{"id", "type": "function", "function": {"name", "arguments"}}]``."""
    if value is None:
        return ()
    calls = []
    for i, item in enumerate(array(value, f"{where}.tool_calls", bad)):
        at = f"{where}.tool_calls[{i}]"
        item = obj(item, at, bad)
        fn = obj(item.get("function"), f"{at}.function", bad)
        calls.append(
            ToolCall(
                id=text(item, "id", at, bad, required=True),
                name=text(fn, "name", f"{at}.function", bad, required=True),
                arguments=text(fn, "arguments", f"{at}.function", bad) or "{}",
            )
        )
    return tuple(calls)


def _token(item: Any, where: str, bad: Bad, top: bool) -> TokenLogprob:
    item = obj(item, where, bad)
    raw = item.get("bytes")
    if raw is not None and not (isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw)):
        raise bad(f"{where}.bytes", "must be an array of bytes")
    alternatives: tuple[TokenLogprob, ...] = ()
    if top and item.get("top_logprobs") is not None:
        items = array(item["top_logprobs"], f"{where}.top_logprobs", bad)
        alternatives = tuple(_token(t, f"{where}.top_logprobs[]", bad, top=False) for t in items)
    logprob = number(item, "logprob", where, bad)
    if logprob is None:
        raise bad(f"{where}.logprob", "is required")
    return TokenLogprob(text(item, "token", where, bad), logprob, None if raw is None else tuple(raw), alternatives)


def read_logprobs(value: Any, where: str, bad: Bad) -> tuple[TokenLogprob, ...] | None:
    """A choice's ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}] | null}``."""
    if value is None:
        return None
    content = obj(value, where, bad).get("content")
    if content is None:
        return None
    return tuple(_token(t, f"{where}.content[]", bad, top=True) for t in array(content, f"{where}.content", bad))


#: The most tool calls one streamed answer may open (a bound on what the gateway keeps per stream).
MAX_STREAMED_TOOL_CALLS = 128


def read_tool_call_deltas(value: Any, where: str, bad: Bad, choice: int) -> list[ToolCallDelta]:
    """A chunk delta's ``tool_calls``: ``[{"index", "id"?, "function": {"name"?, "arguments"?}}]``."""
    if value is None:
        return []
    out = []
    for item in array(value, f"{where}.tool_calls", bad):
        at = f"{where}.tool_calls[]"
        item = obj(item, at, bad)
        index = integer(item, "index", at, bad)
        if index is None or not 0 <= index < MAX_STREAMED_TOOL_CALLS:
            raise bad(f"{at}.index", f"must be an integer in [0, {MAX_STREAMED_TOOL_CALLS})")
        fn = member(item, "function", at, bad)
        out.append(
            ToolCallDelta(
                index,
                text(item, "id", at, bad),
                text(fn, "name", f"{at}.function", bad),
                text(fn, "arguments", f"{at}.function", bad),
                choice,
            )
        )
    return out


# ---------------------------------------------------------------- writing


def tools_json(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        fn: dict[str, Any] = {"name": t.name}
        if t.description:
            fn["description"] = t.description
        if t.parameters is not None:
            fn["parameters"] = t.parameters
        if t.strict is not None:
            fn["strict"] = t.strict
        out.append({"type": "function", "function": fn})
    return out


def tool_choice_json(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def response_format_json(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: dict[str, Any] = {"name": fmt.name}
    if fmt.description:
        spec["description"] = fmt.description
    if fmt.schema is not None:
        spec["schema"] = fmt.schema
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


def tool_calls_json(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def message_json(m: Message) -> dict[str, Any]:
    """One turn of a chat-completions request."""
    msg: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name:
        msg["name"] = m.name
    if m.tool_calls:
        msg["tool_calls"] = tool_calls_json(m.tool_calls)
        if not m.content:
            msg["content"] = None
    if m.tool_call_id:
        msg["tool_call_id"] = m.tool_call_id
    return msg


def _token_json(t: TokenLogprob, top: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"token": t.token, "logprob": t.logprob, "bytes": None if t.bytes is None else list(t.bytes)}
    if top:
        out["top_logprobs"] = [_token_json(a, top=False) for a in t.top]
    return out


def logprobs_json(logprobs: tuple[TokenLogprob, ...] | None) -> dict[str, Any] | None:
    if logprobs is None:
        return None
    return {"content": [_token_json(t, top=True) for t in logprobs], "refusal": None}


def choice_json(index: int, choice: Choice) -> dict[str, Any]:
    """One choice of a ``chat.completion``."""
    message: dict[str, Any] = {"role": "assistant", "content": choice.content}
    if choice.tool_calls:
        message["tool_calls"] = tool_calls_json(choice.tool_calls)
        if not choice.content:
            message["content"] = None
    return {
        "index": index,
        "message": message,
        "finish_reason": choice.finish_reason,
        "logprobs": logprobs_json(choice.logprobs),
    }


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


class ChunkWriter:
    """``chat.completion.chunk`` objects of one stream; ``extra`` is merged into every chunk."""

    def __init__(self, completion_id: str, created: int, model: str, extra: dict[str, Any] | None = None) -> None:
        self._base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._extra = extra or {}

    def chunk(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> dict[str, Any]:
        out = self._base | {"choices": choices} | self._extra
        if usage is not None:
            out["usage"] = usage_json(usage)
        return out

    def start(self, choices: int = 1) -> dict[str, Any]:
        """The first chunk: each choice's role."""
        return self.chunk(
            [
                {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                for i in range(choices)
            ]
        )

    def event(self, event: StreamDelta | ToolCallDelta) -> dict[str, Any]:
        """A text or tool-call delta."""
        if isinstance(event, StreamDelta):
            delta: dict[str, Any] = {"content": event.text}
            return self.chunk(
                [
                    {
                        "index": event.choice,
                        "delta": delta,
                        "logprobs": logprobs_json(event.logprobs),
                        "finish_reason": None,
                    }
                ]
            )
        call: dict[str, Any] = {"index": event.index}
        fn: dict[str, str] = {"arguments": event.arguments}
        if event.id:
            call |= {"id": event.id, "type": "function"}
        if event.name:
            fn["name"] = event.name
        call["function"] = fn
        return self.chunk([{"index": event.choice, "delta": {"tool_calls": [call]}, "finish_reason": None}])

    def finish(self, end: StreamEnd) -> dict[str, Any]:
        """Every choice's finish reason."""
        reasons = (end.finish_reason, *end.more_finish_reasons)
        return self.chunk([{"index": i, "delta": {}, "finish_reason": r} for i, r in enumerate(reasons)])

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The usage-only chunk (``stream_options.include_usage``)."""
        return self.chunk([], usage)


def parse_arguments(arguments: str) -> dict[str, Any] | None:
    """A tool call's arguments as a JSON object, or None when they are not one."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
