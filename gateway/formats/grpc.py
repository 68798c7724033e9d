"""``ferryman.gateway.v1`` messages ↔ the core's types for tools, tool calls, structured output,
log-probabilities, choices and stream deltas (``gateway.grpc_server`` stays a thin adapter).

JSON carried in strings (a tool's ``parameters_json``, a response format's ``schema_json``) is
decoded here: text that is not a JSON object is INVALID_ARGUMENT naming the field; the values are
checked by :mod:`gateway.validation`, as for HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ferryman.gateway.v1 import gateway_pb2 as pb
from gateway.errors import InvalidRequestError
from gateway.types import (
    Choice,
    Message,
    ResponseFormat,
    StreamDelta,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)

_MODES = {
    pb.TOOL_CHOICE_MODE_AUTO: "auto",
    pb.TOOL_CHOICE_MODE_NONE: "none",
    pb.TOOL_CHOICE_MODE_REQUIRED: "required",
    pb.TOOL_CHOICE_MODE_FUNCTION: "function",
}
_FORMATS = {
    pb.RESPONSE_FORMAT_TYPE_TEXT: "text",
    pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT: "json_object",
    pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: "json_schema",
}

Request = pb.ChatCompletionRequest | pb.StreamChatCompletionRequest


def _json_object(text: str, param: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidRequestError(f"{param} is not valid JSON", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{param} must be a JSON object", param=param)
    return value


def message(m: pb.ChatMessage) -> Message:
    calls = tuple(ToolCall(c.id, c.name, c.arguments or "{}") for c in m.tool_calls)
    return Message(m.role, m.content, m.name, calls, m.tool_call_id, m.tool_error)


def _tools(msg: Request | pb.RouteRequest) -> tuple[Tool, ...]:
    return tuple(
        Tool(
            t.name,
            t.description,
            _json_object(t.parameters_json, f"tools[{i}].parameters_json"),
            t.strict if t.HasField("strict") else None,
        )
        for i, t in enumerate(msg.tools)
    )


def _response_format(msg: Request | pb.RouteRequest) -> ResponseFormat | None:
    f = msg.response_format
    if not msg.HasField("response_format") or f.type in (
        pb.RESPONSE_FORMAT_TYPE_UNSPECIFIED,
        pb.RESPONSE_FORMAT_TYPE_TEXT,
    ):
        return None
    return ResponseFormat(
        _FORMATS.get(f.type, f"type {f.type}"),  # unknown: refused by validation
        f.name,
        _json_object(f.schema_json, "response_format.schema_json"),
        f.strict if f.HasField("strict") else None,
        f.description,
    )


def route_features(msg: Request | pb.RouteRequest) -> dict[str, Any]:
    """The ChatRequest fields that can change a decision's model: tools, response format, logprobs, n."""
    return {
        "tools": _tools(msg),
        "response_format": _response_format(msg),
        "logprobs": msg.logprobs,
        "n": msg.n if msg.HasField("n") else 1,
    }


def request_features(msg: Request) -> dict[str, Any]:
    """The ChatRequest fields for tools, tool choice, response format, logprobs and n."""
    choice = None
    if msg.HasField("tool_choice") and msg.tool_choice.mode != pb.TOOL_CHOICE_MODE_UNSPECIFIED:
        mode = _MODES.get(msg.tool_choice.mode, f"mode {msg.tool_choice.mode}")  # unknown: refused by validation
        choice = ToolChoice(mode, msg.tool_choice.name)
    return route_features(msg) | {
        "tool_choice": choice,
        "parallel_tool_calls": msg.parallel_tool_calls if msg.HasField("parallel_tool_calls") else None,
        "top_logprobs": msg.top_logprobs if msg.HasField("top_logprobs") else None,
    }


def _logprob(t: TokenLogprob) -> pb.TokenLogprob:
    out = pb.TokenLogprob(token=t.token, logprob=t.logprob, top_logprobs=[_logprob(a) for a in t.top])
    if t.bytes is not None:
        out.token_bytes = bytes(t.bytes)
    return out


def logprobs(values: Iterable[TokenLogprob] | None) -> list[pb.TokenLogprob]:
    return [_logprob(t) for t in values or ()]


def tool_calls(calls: Iterable[ToolCall]) -> list[pb.ToolCall]:
    return [pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls]


def assistant(choice: Choice) -> pb.ChatMessage:
    return pb.ChatMessage(role="assistant", content=choice.content, tool_calls=tool_calls(choice.tool_calls))


def choices(values: Iterable[Choice]) -> list[pb.ChatChoice]:
    return [
        pb.ChatChoice(index=i, message=assistant(c), finish_reason=c.finish_reason, logprobs=logprobs(c.logprobs))
        for i, c in enumerate(values)
    ]


def stream_event(event: StreamDelta | ToolCallDelta) -> dict[str, Any]:
    """The StreamChatCompletionResponse fields of one delta."""
    if isinstance(event, StreamDelta):
        return {"delta": event.text, "choice_index": event.choice, "logprobs": logprobs(event.logprobs)}
    call = pb.ToolCallDelta(index=event.index, id=event.id, name=event.name, arguments=event.arguments)
    return {"tool_call": call, "choice_index": event.choice}
