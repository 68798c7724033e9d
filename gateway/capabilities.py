"""Which request features each model honours, and a decision's fallback chain narrowed to them.

A request may need features that not every provider has: ``tools`` (tools offered, or tool calls
and results in the conversation), ``json_object`` / ``json_schema`` (``response_format``),
``logprobs`` and ``n`` (more than one choice). What a provider kind can do is
:data:`PROVIDER_FEATURES`; a model may declare less (``models.<name>.features``, e.g. a local
server without log-probabilities). Some combinations a provider kind cannot express at all are
refused per kind (:func:`_kind_refusal`): Anthropic's structured output is a forced tool, so it
cannot be combined with the request's own tools, and its tool input schema must be an object.

After routing, the chain keeps only the models that honour everything the request needs, in
order; a request none of them can serve is refused with a 400 ``unsupported_parameter`` that
names each model, its provider and what it lacks — never answered without the feature.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from gateway.errors import UnsupportedParameterError
from gateway.types import ChatRequest, Decision

if TYPE_CHECKING:
    from gateway.config import GatewayConfig, ModelConfig

log = logging.getLogger(__name__)

#: Every feature, with the request field that asks for it.
FEATURES = {
    "tools": "tools",
    "json_object": "response_format",
    "json_schema": "response_format",
    "logprobs": "logprobs",
    "n": "n",
}
#: What each provider kind can do.
PROVIDER_FEATURES: dict[str, frozenset[str]] = {
    "openai": frozenset(FEATURES),
    "anthropic": frozenset({"tools", "json_object", "json_schema"}),
}


def needed(request: ChatRequest) -> list[str]:
    """The features ``request`` needs, in :data:`FEATURES` order."""
    out = []
    if request.uses_tools:
        out.append("tools")
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_object", "json_schema"):
        out.append(fmt.type)
    if request.logprobs:
        out.append("logprobs")
    if request.n > 1:
        out.append("n")
    return out


def _kind_refusal(kind: str, request: ChatRequest) -> tuple[str, str] | None:
    """(param, reason) when provider ``kind`` cannot express the request's combination of features."""
    fmt = request.response_format
    if kind != "anthropic" or fmt is None or fmt.type == "text":
        return None
    if request.tools:
        return "response_format", "response_format together with tools (its structured output is a forced tool)"
    if fmt.schema is not None and fmt.schema.get("type", "object") != "object":
        return "response_format", "a json_schema whose top level is not an object (a tool input must be one)"
    return None


def refusal(model: ModelConfig, request: ChatRequest) -> tuple[str, str] | None:
    """(param, reason) when ``model`` cannot serve ``request`` as asked, else None."""
    can = model.features if model.features is not None else PROVIDER_FEATURES[model.provider]
    for feature in needed(request):
        if feature not in can:
            return FEATURES[feature], feature
    return _kind_refusal(model.provider, request)


def narrow(decision: Decision, request: ChatRequest, config: GatewayConfig) -> Decision:
    """``decision`` with its chain cut to the models that can serve ``request``; 400 when none can."""
    if not needed(request):
        return decision
    keep, refused = [], []
    for name in decision.chain:
        why = refusal(config.models[name], request)
        if why is None:
            keep.append(name)
        else:
            refused.append((name, why))
    if not refused:
        return decision
    if not keep:
        param = refused[0][1][0]
        detail = "; ".join(
            f"{why} is not supported by provider {config.models[name].provider} (model {name!r})"
            for name, (_, why) in refused
        )
        raise UnsupportedParameterError(f"no model this request may go to can serve it: {detail}"[:600], param=param)
    log.debug("chain narrowed to %s for features %s", keep, needed(request))
    return replace(decision, model=keep[0], chain=tuple(keep))
