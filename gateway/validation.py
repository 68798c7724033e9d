"""The one validator of a chat request, whatever transport it came by (gRPC, OpenAI HTTP, ...).

Transports only translate their wire shape into a :class:`~gateway.types.ChatRequest` (and
refuse wrong JSON *types*); every rule about *values* is here and runs in the core
(``Gateway``) before routing, so no transport can skip it: message count, roles, strings that
cannot be encoded (lone UTF-16 surrogates, e.g. ``"\\ud800"`` in JSON), temperature/top_p that
are NaN, infinite or out of range, max_tokens ≤ 0 or above the cap, too many stop sequences,
routing overrides outside [0, 1], a conversation id past 256 characters; tools (how many, names,
unique, schema size and depth), a tool_choice naming no offered tool, tool calls naming unknown
tools or with arguments that are not a JSON object, tool results answering no earlier call,
response_format schemas, logprobs / top_logprobs and n. Each error is an
:class:`~gateway.errors.InvalidRequestError` naming the field (``param``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import InvalidRequestError, PayloadTooLargeError
from gateway.formats.openai import parse_arguments
from gateway.types import ChatRequest, Message, Tool

#: Roles a request may use; "developer" (OpenAI's newer name) is read as "system".
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_USER_MAX = 256
#: Tool and schema names, as both OpenAI and Anthropic require them.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOP_LOGPROBS_MAX = 20


def check_message_count(count: int, config: GatewayConfig) -> None:
    """Refuse more messages than ``limits.max_messages`` (transports may check before parsing them)."""
    if count > config.limits.max_messages:
        raise PayloadTooLargeError(
            f"messages has {count} entries; at most {config.limits.max_messages} are accepted", param="messages"
        )


def max_tokens_cap(model: str, config: GatewayConfig) -> int:
    """The largest max_tokens a request for ``model`` may ask: the model's cap for a configured model;
    for a routed request the smallest cap of every tier model (it may be served by any of them)."""
    names = [model] if model in config.models else [m for tier in config.tiers.values() for m in tier.models]
    caps = [c for c in (config.models[n].max_tokens_cap for n in names) if c is not None]
    return min([config.limits.max_tokens, *caps])


def _text(value: str, param: str) -> None:
    if _SURROGATE.search(value):
        raise InvalidRequestError(f"{param} contains a lone UTF-16 surrogate (not valid Unicode text)", param=param)


def _unit_range(value: float | None, param: str, hi: float) -> None:
    if value is not None and not (math.isfinite(value) and 0.0 <= value <= hi):
        raise InvalidRequestError(f"{param} must be a number in [0, {hi:g}], got {value!r}", param=param)


def _name(value: str, param: str) -> None:
    if not _NAME.match(value):
        raise InvalidRequestError(f"{param} must be 1-64 letters, digits, '_' or '-', got {value[:80]!r}", param=param)


def _schema(schema: Mapping[str, Any] | None, param: str, config: GatewayConfig) -> None:
    """A JSON schema no larger than ``limits.max_schema_bytes`` and no deeper than ``max_schema_depth``."""
    if schema is None:
        return
    size = len(json.dumps(schema, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    if size > config.limits.max_schema_bytes:
        raise InvalidRequestError(
            f"{param} is {size} bytes as JSON; at most {config.limits.max_schema_bytes} are accepted", param=param
        )
    limit = config.limits.max_schema_depth
    level: list[Any] = [schema]
    for depth in range(1, limit + 2):
        if depth > limit:
            raise InvalidRequestError(f"{param} is nested deeper than {limit} levels", param=param)
        level = [v for node in level for v in (node.values() if isinstance(node, dict) else node)]
        level = [v for v in level if isinstance(v, dict | list)]
        if not level:
            return


def _tools(tools: tuple[Tool, ...], config: GatewayConfig) -> None:
    if len(tools) > config.limits.max_tools:
        raise InvalidRequestError(f"tools has {len(tools)} entries; at most {config.limits.max_tools}", param="tools")
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        _name(tool.name, f"tools[{i}].name")
        if tool.name in seen:
            raise InvalidRequestError(f"tools[{i}].name {tool.name!r} is offered twice", param=f"tools[{i}].name")
        seen.add(tool.name)
        _text(tool.description, f"tools[{i}].description")
        _schema(tool.parameters, f"tools[{i}].parameters", config)


def _tool_turns(messages: tuple[Message, ...], tools: frozenset[str]) -> None:
    """Tool calls name offered tools with JSON-object arguments; each tool result answers an earlier call."""
    called: set[str] = set()
    for i, m in enumerate(messages):
        if m.tool_calls and m.role != "assistant":
            raise InvalidRequestError(f"messages[{i}]: only assistant turns carry tool calls", param=f"messages[{i}]")
        for j, call in enumerate(m.tool_calls):
            param = f"messages[{i}].tool_calls[{j}]"
            if not call.id:
                raise InvalidRequestError(f"{param}.id is required", param=f"{param}.id")
            if call.name not in tools:
                raise InvalidRequestError(
                    f"{param} calls {call.name[:80]!r}, which is not in tools", param=f"{param}.function.name"
                )
            if parse_arguments(call.arguments) is None:
                raise InvalidRequestError(
                    f"{param}.function.arguments must be a JSON object", param=f"{param}.function.arguments"
                )
            _text(call.arguments, f"{param}.function.arguments")
            called.add(call.id)
        if m.role == "tool" and m.tool_call_id not in called:
            raise InvalidRequestError(
                f"messages[{i}] (role tool) answers tool_call_id {m.tool_call_id[:80]!r}, which no earlier "
                "assistant turn called",
                param=f"messages[{i}].tool_call_id",
            )
        if m.role != "tool" and (m.tool_call_id or m.tool_error):
            what = "tool_call_id" if m.tool_call_id else "tool_error"
            raise InvalidRequestError(f"messages[{i}]: only tool turns carry {what}", param=f"messages[{i}]")


def _features(request: ChatRequest, config: GatewayConfig) -> None:
    """Tools, tool choice, response format, logprobs and n."""
    _tools(request.tools, config)
    names = frozenset(t.name for t in request.tools)
    _tool_turns(request.messages, names)
    choice = request.tool_choice
    if choice is not None and choice.mode not in ("auto", "none", "required", "function"):
        raise InvalidRequestError(
            f"tool_choice {choice.mode!r} is not auto, none, required or a function", param="tool_choice"
        )
    if choice is not None and choice.mode in ("required", "function") and not request.tools:
        raise InvalidRequestError(f"tool_choice {choice.mode!r} needs tools", param="tool_choice")
    if choice is not None and choice.mode == "function" and choice.name not in names:
        raise InvalidRequestError(f"tool_choice names {choice.name[:80]!r}, which is not in tools", param="tool_choice")
    fmt = request.response_format
    if fmt is not None:
        if fmt.type not in ("text", "json_object", "json_schema"):
            raise InvalidRequestError(f"response_format.type {fmt.type!r} is unknown", param="response_format.type")
        if fmt.type == "json_schema":
            _name(fmt.name, "response_format.json_schema.name")
            _schema(fmt.schema, "response_format.json_schema.schema", config)
    if request.top_logprobs is not None:
        if not 0 <= request.top_logprobs <= _TOP_LOGPROBS_MAX:
            raise InvalidRequestError(f"top_logprobs must be in [0, {_TOP_LOGPROBS_MAX}]", param="top_logprobs")
        if not request.logprobs and request.top_logprobs > 0:
            raise InvalidRequestError("top_logprobs needs logprobs: true", param="top_logprobs")
    if not 1 <= request.n <= config.limits.max_n:
        raise InvalidRequestError(f"n must be between 1 and {config.limits.max_n}, got {request.n}", param="n")


def _messages(messages: tuple[Message, ...], config: GatewayConfig) -> tuple[Message, ...]:
    if not messages:
        raise InvalidRequestError("messages must contain at least one message", param="messages")
    check_message_count(len(messages), config)
    out = messages
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise InvalidRequestError(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}", param=f"messages[{i}].role"
            )
        _text(m.content, f"messages[{i}].content")
        _text(m.name, f"messages[{i}].name")
        _text(m.tool_call_id, f"messages[{i}].tool_call_id")
        if m.role == "developer":
            out = (*out[:i], replace(m, role="system"), *out[i + 1 :])
    return out


def checked_request(request: ChatRequest, config: GatewayConfig) -> ChatRequest:
    """``request`` if every value is acceptable (roles normalised), else InvalidRequestError."""
    _text(request.model, "model")
    messages = _messages(request.messages, config)
    _unit_range(request.temperature, "temperature", 2.0)
    _unit_range(request.top_p, "top_p", 1.0)
    if request.max_tokens is not None:
        cap = max_tokens_cap(request.model, config)
        if not 1 <= request.max_tokens <= cap:
            raise InvalidRequestError(
                f"max_tokens must be between 1 and {cap} for model {request.model!r}, got {request.max_tokens}",
                param="max_tokens",
            )
    if len(request.stop) > config.limits.max_stop:
        raise InvalidRequestError(f"stop accepts at most {config.limits.max_stop} sequences", param="stop")
    for i, stop in enumerate(request.stop):
        if not stop:
            raise InvalidRequestError(f"stop[{i}] is empty", param="stop")
        _text(stop, "stop")
    if len(request.user) > _USER_MAX:
        raise InvalidRequestError(f"user is longer than {_USER_MAX} characters", param="user")
    _text(request.user, "user")
    routing = request.routing
    _unit_range(routing.threshold, "threshold", 1.0)
    _unit_range(routing.strong_share, "strong_share", 1.0)
    _text(routing.router, "routing.router")
    _text(routing.policy, "routing.policy")
    if len(routing.conversation_id) > _USER_MAX:
        raise InvalidRequestError(
            f"routing.conversation_id is longer than {_USER_MAX} characters", param="routing.conversation_id"
        )
    _text(routing.conversation_id, "routing.conversation_id")
    _features(request, config)
    return request if messages is request.messages else replace(request, messages=messages)
