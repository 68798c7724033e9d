"""gRPC front end: a thin ``GatewayService`` servicer plus grpc.health.v1 and reflection.

Each handler converts proto → domain, calls :class:`gateway.service.Gateway`, and converts
back; nothing else. Authentication (``authorization: Bearer <key>`` call metadata), status
codes and metrics are ``gateway.grpc_interceptors``; the request's values are checked by the
core (``gateway.validation``), the same validator as over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from ferryman import keepalive
from ferryman.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from gateway.errors import InvalidRequestError
from gateway.formats import grpc as grpc_format
from gateway.grpc_interceptors import HEALTH_SERVICE, current_tenant, interceptors
from gateway.learning.records import Rating
from gateway.service import Gateway
from gateway.types import (
    Accounting,
    AttemptOutcome,
    ChatRequest,
    Decision,
    DecisionSource,
    LLMRating,
    RoutingOverrides,
    Tier,
    Usage,
)

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name

_TIER = {
    Tier.STRONG: gateway_pb2.TIER_STRONG,
    Tier.WEAK: gateway_pb2.TIER_WEAK,
    Tier.INTERMEDIATE: gateway_pb2.TIER_INTERMEDIATE,
    Tier.PASSTHROUGH: gateway_pb2.TIER_PASSTHROUGH,
}
_SOURCE = {
    DecisionSource.SCORED: gateway_pb2.DECISION_SOURCE_SCORED,
    DecisionSource.SCORER_UNAVAILABLE: gateway_pb2.DECISION_SOURCE_SCORER_UNAVAILABLE,
    DecisionSource.PASSTHROUGH: gateway_pb2.DECISION_SOURCE_PASSTHROUGH,
    DecisionSource.STICKY: gateway_pb2.DECISION_SOURCE_STICKY,
}
_THRESHOLD_SOURCE = {
    "fixed": gateway_pb2.THRESHOLD_SOURCE_FIXED,
    "artifact": gateway_pb2.THRESHOLD_SOURCE_ARTIFACT,
    "online": gateway_pb2.THRESHOLD_SOURCE_ONLINE,
}
_RATING = {
    gateway_pb2.FEEDBACK_RATING_GOOD: Rating.GOOD.value,
    gateway_pb2.FEEDBACK_RATING_BAD: Rating.BAD.value,
}
_RATING_PB = {v: k for k, v in _RATING.items()}


def _feedback_of(request: gateway_pb2.SubmitFeedbackRequest) -> tuple[object, object]:
    """(response id, rating) for the core; FEEDBACK_RATING_UNSPECIFIED or a number the enum does not have is an
    InvalidRequestError in this API's words (was "rating must be one of 'good', 'bad', got 'unspecified'", for 7
    too)."""
    if request.rating not in _RATING:
        allowed = " or ".join(gateway_pb2.FeedbackRating.Name(n) for n in _RATING)
        unset = request.rating == gateway_pb2.FEEDBACK_RATING_UNSPECIFIED
        got = "FEEDBACK_RATING_UNSPECIFIED (not set)" if unset else str(request.rating)
        raise InvalidRequestError(f"rating must be {allowed}, got {got}", param="rating")
    return request.response_id, _RATING[request.rating]


_OUTCOME = {
    AttemptOutcome.SUCCESS: gateway_pb2.ATTEMPT_OUTCOME_SUCCESS,
    AttemptOutcome.TRANSIENT_ERROR: gateway_pb2.ATTEMPT_OUTCOME_TRANSIENT_ERROR,
    AttemptOutcome.BREAKER_OPEN: gateway_pb2.ATTEMPT_OUTCOME_BREAKER_OPEN,
    AttemptOutcome.CLIENT_ERROR: gateway_pb2.ATTEMPT_OUTCOME_CLIENT_ERROR,
    AttemptOutcome.SATURATED: gateway_pb2.ATTEMPT_OUTCOME_SATURATED,
}


def _routing(options: gateway_pb2.RoutingOptions) -> RoutingOverrides:
    return RoutingOverrides(
        router=options.router,
        threshold=options.threshold if options.HasField("threshold") else None,
        strong_share=options.strong_share if options.HasField("strong_share") else None,
        policy=options.policy,
        conversation_id=options.conversation_id,
    )


def to_chat_request(
    msg: gateway_pb2.ChatCompletionRequest | gateway_pb2.StreamChatCompletionRequest | gateway_pb2.RouteRequest,
) -> ChatRequest:
    messages = tuple(grpc_format.message(m) for m in msg.messages)
    if isinstance(msg, gateway_pb2.RouteRequest):
        return ChatRequest(
            model=msg.model, messages=messages, routing=_routing(msg.routing), **grpc_format.route_features(msg)
        )
    return ChatRequest(
        model=msg.model,
        messages=messages,
        temperature=msg.temperature if msg.HasField("temperature") else None,
        max_tokens=msg.max_tokens if msg.HasField("max_tokens") else None,
        top_p=msg.top_p if msg.HasField("top_p") else None,
        stop=tuple(msg.stop),
        user=msg.user,
        routing=_routing(msg.routing),
        **grpc_format.request_features(msg),
    )


def decision_pb(d: Decision) -> gateway_pb2.RoutingDecision:
    return gateway_pb2.RoutingDecision(
        tier=_TIER[d.tier],
        model=d.model,
        router=d.router,
        score=d.score,
        threshold=d.threshold,
        source=_SOURCE[d.source],
        policy=d.policy,
        scorer_latency_ms=d.scorer_latency_ms,
        scorer_server_time_ms=d.scorer_server_ms,
        router_version=d.router_version,
        tier_name=d.tier_name,
        tier_scores=[
            gateway_pb2.TierScore(tier=t.tier, router_model=t.router_model, score=t.score, threshold=t.threshold)
            for t in d.tier_scores
        ],
        threshold_source=_THRESHOLD_SOURCE.get(d.threshold_source, gateway_pb2.THRESHOLD_SOURCE_UNSPECIFIED),
        llm=llm_pb(d.llm) if d.llm is not None else None,
    )


def llm_pb(r: LLMRating) -> gateway_pb2.LlmRating:
    return gateway_pb2.LlmRating(
        router=r.router,
        model=r.model,
        rating=r.rating or 0,
        reason=r.reason,
        cached=r.cached,
        latency_ms=r.latency_ms,
        fallback_reason=r.fallback_reason,
    )


def accounting_pb(a: Accounting, tier_of: Callable[[str], str | None]) -> gateway_pb2.Accounting:
    """``tier_of``: a model's configured tier name (``GatewayConfig.tier_of``)."""
    return gateway_pb2.Accounting(
        served_model=a.served_model,
        served_tier=_TIER[a.served_tier],
        served_tier_name=a.served_tier_name,
        attempts=[
            gateway_pb2.Attempt(
                model=x.model,
                tier=_TIER[x.tier],
                outcome=_OUTCOME[x.outcome],
                error=x.error,
                retries=x.retries,
                latency_ms=x.latency_ms,
                tier_name=(tier_of(x.model) or "") if x.tier is not Tier.PASSTHROUGH else "",
            )
            for x in a.attempts
        ],
        degraded=a.degraded,
        cost_usd=a.cost_usd,
        strong_cost_usd=a.strong_cost_usd,
    )


def usage_pb(u: Usage) -> gateway_pb2.Usage:
    return gateway_pb2.Usage(
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, total_tokens=u.total_tokens
    )


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """proto → :class:`Gateway` → proto, nothing else."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def Route(
        self, request: gateway_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RouteResponse:
        decision = await self._gateway.route(replace(to_chat_request(request), tenant=current_tenant()))
        return gateway_pb2.RouteResponse(decision=decision_pb(decision))

    async def ChatCompletion(
        self, request: gateway_pb2.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ChatCompletionResponse:
        chat = replace(to_chat_request(request), tenant=current_tenant())
        result = await self._gateway.chat(chat, context.time_remaining())
        c = result.completion
        return gateway_pb2.ChatCompletionResponse(
            id=result.id,
            model=result.accounting.served_model,
            message=grpc_format.assistant(c.choices[0]),
            finish_reason=c.finish_reason,
            usage=usage_pb(c.usage),
            decision=decision_pb(result.decision),
            accounting=accounting_pb(result.accounting, self._gateway.config.tier_of),
            created=result.created,
            choices=grpc_format.choices(c.choices),
        )

    async def StreamChatCompletion(
        self, request: gateway_pb2.StreamChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.StreamChatCompletionResponse]:
        chat = replace(to_chat_request(request), tenant=current_tenant())
        started = await self._gateway.start_stream(chat, context.time_remaining())
        # every event names the served model and its tier
        served: dict[str, Any] = {
            "id": started.id,
            "served_model": started.accounting.served_model,
            "served_tier": started.accounting.served_tier_label,
        }
        yield gateway_pb2.StreamChatCompletionResponse(decision=decision_pb(started.decision), **served)
        async for event in self._gateway.stream_events(started):
            yield gateway_pb2.StreamChatCompletionResponse(**grpc_format.stream_event(event), **served)
        done = started.completion
        assert done is not None, "stream_events ends with a completion or raises"
        yield gateway_pb2.StreamChatCompletionResponse(
            summary=gateway_pb2.StreamSummary(
                model=started.accounting.served_model,
                finish_reason=done.finish_reason,
                usage=usage_pb(done.usage),
                accounting=accounting_pb(started.accounting, self._gateway.config.tier_of),
                finish_reasons=[c.finish_reason for c in done.choices],
            ),
            **served,
        )

    async def SubmitFeedback(
        self, request: gateway_pb2.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.SubmitFeedbackResponse:
        response_id, recorded = await self._gateway.feedback(current_tenant(), lambda: _feedback_of(request))
        return gateway_pb2.SubmitFeedbackResponse(response_id=response_id, rating=_RATING_PB[recorded.value])


async def create_server(
    gateway: Gateway, host: str, port: int
) -> tuple[grpc.aio.Server, int, health_aio.HealthServicer]:
    """A ready (not yet started) aio server bound to ``host:port`` (0 = any free port)."""
    limits, sv = gateway.config.limits, gateway.config.server
    options = [
        # the same request size limit as over HTTP (larger messages get RESOURCE_EXHAUSTED)
        ("grpc.max_receive_message_length", limits.max_body_bytes),
        ("grpc.max_metadata_size", limits.max_header_bytes),
        # a connection with no call for this long is closed (GOAWAY): stalled clients hold nothing
        ("grpc.max_connection_idle_ms", 300_000),
        # ... and any connection after server.grpc_max_connection_age_s (calls under way get the
        # whole-request deadline to finish), so a client behind a Service reaches every replica in turn
        *keepalive.max_age_options(sv.grpc_max_connection_age_s, sv.request_timeout_s),
        # clients may ping every 10 s, with or without calls (faster is keepalive abuse: GOAWAY)
        *keepalive.server_options(),
        # no SO_REUSEPORT, so a second gateway on a port in use fails to start instead of sharing it
        ("grpc.so_reuseport", 0),
    ]
    chain = interceptors(gateway.metrics.registry, gateway.lifecycle, gateway.authenticate)
    server = grpc.aio.server(options=options, interceptors=chain)
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(gateway), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection((SERVICE_NAME, reflection.SERVICE_NAME, HEALTH_SERVICE), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio raises RuntimeError when the port is taken
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}: address in use or not available")
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    return server, bound, health
