"""The OpenAI chat-completions JSON shape: requests in, responses and chunks out.

This module checks the JSON *shape* only (types, unsupported features); the values are checked
by :mod:`gateway.validation`, the one validator every transport shares. Errors name the
offending field (``param``) in OpenAI's error shape. Routing options may be sent in a
``routing`` object (``extra_body={"routing": {...}}`` with the OpenAI SDK) with the fields of
the proto's ``RoutingOptions``. Tools, tool calls, response format and log-probabilities are
read and written by :mod:`gateway.formats.openai` (the same shapes the providers speak).
Every answer and every stream chunk carries a ``ferryman`` object naming the model that served
it and its tier (:func:`served_json`); a whole answer's also has the decision and accounting.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import InvalidRequestError, UnsupportedParameterError
from gateway.formats import openai as fmt
from gateway.formats.shape import client_error, flag, integer
from gateway.types import Accounting, ChatRequest, ChatResult, Decision, Message, RoutingOverrides
from gateway.validation import check_message_count

#: OpenAI parameters the gateway does not implement and whose loss would change the answer's
#: shape (the legacy functions API, audio, predicted outputs), each with the values that mean
#: "feature off". Any other value is refused with a 400 naming the parameter instead of being
#: dropped silently. Pure sampling hints the providers may ignore anyway (seed,
#: presence_penalty, logit_bias, ...) are not listed and are not forwarded.
UNSUPPORTED_PARAMS: dict[str, tuple[Any, ...]] = {
    "functions": (None, []),
    "function_call": (None, "none"),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
}


def _refuse_unsupported(data: dict[str, Any]) -> None:
    for key, off in UNSUPPORTED_PARAMS.items():
        value = data.get(key)
        if not any(value == v and type(value) is type(v) for v in off):
            hint = "; use tools and tool_choice" if key.startswith("function") else ""
            raise UnsupportedParameterError(
                f"parameter {key!r} is not supported by this gateway (got {value!r}){hint}; remove it"[:300], param=key
            )


def decode_body(body: bytes) -> Any:
    """The request body as JSON; not JSON, not UTF-8 or nested deeper than the decoder allows → 400."""
    try:
        return json.loads(body)
    except ValueError:
        raise InvalidRequestError("request body is not valid JSON") from None
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply") from None


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{key} must be a number, got {value!r}", param=key)
    return float(value)


def _content(value: Any, index: int) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list):
        parts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequestError(
                    f"messages[{index}].content: only text parts are supported", param=f"messages[{index}].content"
                )
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequestError(
        f"messages[{index}].content must be a string or a list of text parts", param=f"messages[{index}].content"
    )


def _messages(value: Any, config: GatewayConfig) -> tuple[Message, ...]:
    if value is None:
        raise InvalidRequestError("messages is required", param="messages")
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("messages must be a non-empty array", param="messages")
    check_message_count(len(value), config)  # before any work per message
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise InvalidRequestError(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str):
            raise InvalidRequestError(f"messages[{i}].role must be a string", param=f"messages[{i}].role")
        name = m.get("name") or ""
        if not isinstance(name, str):
            raise InvalidRequestError(f"messages[{i}].name must be a string", param=f"messages[{i}].name")
        calls = fmt.read_tool_calls(m.get("tool_calls"), f"messages[{i}]", client_error)
        call_id = m.get("tool_call_id") or ""
        if not isinstance(call_id, str):
            raise InvalidRequestError(
                f"messages[{i}].tool_call_id must be a string", param=f"messages[{i}].tool_call_id"
            )
        out.append(Message(role, _content(m.get("content"), i), name, calls, call_id))
    return tuple(out)


def read_routing(value: Any) -> RoutingOverrides:
    """The ``routing`` object (shared by ``/v1/chat/completions`` and ``/v1/messages``)."""
    if value is None:
        return RoutingOverrides()
    if not isinstance(value, dict):
        raise InvalidRequestError("routing must be an object", param="routing")
    unknown = set(value) - {"router", "threshold", "strong_share", "policy", "conversation_id"}
    if unknown:
        raise InvalidRequestError(f"routing: unknown field(s) {', '.join(sorted(unknown))}", param="routing")
    for key in ("router", "policy", "conversation_id"):
        if not isinstance(value.get(key) or "", str):
            raise InvalidRequestError(f"routing.{key} must be a string", param=f"routing.{key}")
    return RoutingOverrides(
        router=value.get("router") or "",
        threshold=_number(value, "threshold"),
        strong_share=_number(value, "strong_share"),
        policy=value.get("policy") or "",
        conversation_id=value.get("conversation_id") or "",
    )


def _n(data: dict[str, Any]) -> int:
    n = integer(data, "n", "", client_error)
    return 1 if n is None else n


def parse_chat_request(data: Any, config: GatewayConfig) -> tuple[ChatRequest, bool, bool]:
    """``(request, stream, include_usage)`` from a decoded JSON body (values unchecked: see the module)."""
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model is required and must be a string", param="model")
    _refuse_unsupported(data)
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise InvalidRequestError("max_tokens must be an integer", param="max_tokens")
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise InvalidRequestError("stop must be a string or an array of strings", param="stop")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("stream must be a boolean", param="stream")
    options = data.get("stream_options") or {}
    user = data.get("user") or ""
    if not isinstance(user, str):
        raise InvalidRequestError("user must be a string", param="user")
    request = ChatRequest(
        model=model,
        messages=_messages(data.get("messages"), config),
        temperature=_number(data, "temperature"),
        max_tokens=max_tokens,
        top_p=_number(data, "top_p"),
        stop=tuple(stop or ()),
        user=user,
        routing=read_routing(data.get("routing")),
        tools=fmt.read_tools(data.get("tools"), client_error),
        tool_choice=fmt.read_tool_choice(data.get("tool_choice"), client_error),
        parallel_tool_calls=flag(data, "parallel_tool_calls", "", client_error),
        response_format=fmt.read_response_format(data.get("response_format"), client_error),
        logprobs=bool(flag(data, "logprobs", "", client_error)),
        top_logprobs=integer(data, "top_logprobs", "", client_error),
        n=_n(data),
    )
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return request, stream, include_usage


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "tier": decision.tier.value,
        "model": decision.model,
        "router": decision.router,
        "score": decision.score,
        "threshold": decision.threshold,
        "source": decision.source.value,
        "policy": decision.policy,
        "scorer_latency_ms": decision.scorer_latency_ms,
        "scorer_server_ms": decision.scorer_server_ms,
        "router_version": decision.router_version,
        "tier_name": decision.tier_name,
        "tier_scores": [
            {"tier": t.tier, "router_model": t.router_model, "score": t.score, "threshold": t.threshold}
            for t in decision.tier_scores
        ],
        "threshold_source": decision.threshold_source,
        "llm": None
        if decision.llm is None
        else {
            "router": decision.llm.router,
            "model": decision.llm.model,
            "rating": decision.llm.rating,
            "reason": decision.llm.reason,
            "cached": decision.llm.cached,
            "fallback_reason": decision.llm.fallback_reason,
        },
    }


def served_json(acc: Accounting) -> dict[str, str]:
    """The model that served an answer and its tier: in every answer and every stream chunk."""
    return {"model": acc.served_model, "tier": acc.served_tier_label}


def completion_json(result: ChatResult) -> dict[str, Any]:
    """A ``chat.completion`` object plus a ``ferryman`` object with the routing details."""
    acc = result.accounting
    return {
        "id": result.id,
        "object": "chat.completion",
        "created": result.created,
        "model": acc.served_model,
        "choices": [fmt.choice_json(i, c) for i, c in enumerate(result.completion.choices)],
        "usage": fmt.usage_json(result.completion.usage),
        "ferryman": served_json(acc) | {"decision": decision_json(result.decision)} | accounting_json(acc),
    }


def accounting_json(acc: Accounting) -> dict[str, Any]:
    """What happened: the served tier, attempts and cost (a whole answer's, a stream's last chunk)."""
    return {
        "served_tier": acc.served_tier.value,
        "served_tier_name": acc.served_tier_name,
        "degraded": acc.degraded,
        "attempts": [
            {
                "model": a.model,
                "tier": a.tier.value,
                "outcome": a.outcome.value,
                "error": a.error,
                "retries": a.retries,
                "latency_ms": round(a.latency_ms, 3),
            }
            for a in acc.attempts
        ],
        "cost_usd": acc.cost_usd,
        "strong_cost_usd": acc.strong_cost_usd,
    }
