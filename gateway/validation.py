"""The one validator of a chat request, whatever transport it came by (gRPC, OpenAI HTTP, ...).

Transports only translate their wire shape into a :class:`~gateway.types.ChatRequest` (and
refuse wrong JSON *types*); every rule about *values* is here and runs in the core
(``Gateway``) before routing, so no transport can skip it: message count, roles, strings that
cannot be encoded (lone UTF-16 surrogates, e.g. ``"\\ud800"`` in JSON), temperature/top_p that
are NaN, infinite or out of range, max_tokens ≤ 0 or above the cap, too many stop sequences,
routing overrides outside [0, 1]. Each error is an :class:`~gateway.errors.InvalidRequestError`
naming the field (``param``).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from gateway.config import GatewayConfig
from gateway.errors import InvalidRequestError, PayloadTooLargeError
from gateway.types import ChatRequest, Message

#: Roles a request may use; "developer" (OpenAI's newer name) is read as "system".
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_USER_MAX = 256


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
    return request if messages is request.messages else replace(request, messages=messages)
