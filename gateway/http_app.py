"""OpenAI-compatible HTTP API (Starlette ASGI apps, served by ``gateway.http_server``).

The API listener: ``POST /v1/chat/completions`` (whole or SSE), ``POST /v1/messages`` and
``/v1/messages/count_tokens`` (Anthropic-compatible: ``gateway.anthropic_app``), ``POST
/v1/feedback`` (rate an answer by its id: ``{"id", "rating": "good"|"bad"}``), ``GET
/v1/models`` (in the OpenAI and the Anthropic SDK's list shapes at once) and ``GET /v1/models/{id}``
(the SDKs' ``models.retrieve``: a listed entry or a ``router-<router>-...`` name), ``GET /healthz``
(process alive, says nothing else); any other path or method is a 404 / 405 in the error shape.
The admin listener (``admin.port``, for operators and Prometheus, not for API clients): ``GET
/metrics``, ``GET /readyz`` (serving, with breaker states), ``GET /healthz``. Every routed answer
carries ``x-ferryman-*`` headers. Errors use OpenAI's shape; ``_error_response`` is the only place
HTTP statuses are chosen (from the exception class), ``_no_such_route`` the place for unknown
paths. A stream always ends with ``[DONE]`` or an error event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.config import LimitsConfig
from gateway.errors import (
    INTERNAL_MESSAGE,
    GatewayError,
    InvalidRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnknownModelError,
    openai_error_body,
)
from gateway.formats.openai import ChunkWriter
from gateway.openai_format import (
    accounting_json,
    completion_json,
    decision_json,
    decode_body,
    parse_chat_request,
    served_json,
)
from gateway.policy import parse_spec
from gateway.service import Gateway, StreamResult
from gateway.types import Accounting, ChatRequest, Decision, DecisionSource, RoutingOverrides, StreamEnd

log = logging.getLogger(__name__)

#: Conversation key for sticky policies (as ``routing.conversation_id``; see ``gateway.sticky``).
CONVERSATION_HEADER = "x-ferryman-conversation-id"


def with_conversation(chat: ChatRequest, headers: Headers) -> ChatRequest:
    """``chat`` with the conversation header as its ``routing.conversation_id`` (the body's wins)."""
    conversation = headers.get(CONVERSATION_HEADER, "").strip()
    if conversation and not chat.routing.conversation_id:
        return replace(chat, routing=replace(chat.routing, conversation_id=conversation))
    return chat


def _error_response(exc: BaseException, *, close: bool = False) -> JSONResponse:
    """The OpenAI error body for ``exc``; ``close``: the request body may be unread, end the connection."""
    if not isinstance(exc, GatewayError):
        log.error("unexpected error serving an HTTP request", exc_info=exc)
    status, body = openai_error_body(exc)
    return JSONResponse(body, status_code=status, headers={"connection": "close"} if close else None)


def decision_headers(decision: Decision) -> dict[str, str]:
    """``x-ferryman-*`` headers known as soon as the request is routed."""
    headers = {
        "x-ferryman-tier": decision.tier_name or decision.tier.value,
        "x-ferryman-decision-source": decision.source.value,
    }
    if decision.router:
        headers["x-ferryman-router"] = decision.router
        if decision.source is not DecisionSource.STICKY:
            headers["x-ferryman-threshold"] = f"{decision.threshold:.6g}"
    if decision.source is DecisionSource.SCORED:
        headers["x-ferryman-score"] = f"{decision.score:.6g}"
        headers["x-ferryman-scorer-ms"] = f"{decision.scorer_latency_ms:.3f}"
        headers["x-ferryman-scorer-server-ms"] = f"{decision.scorer_server_ms:.3f}"
        if decision.router_version:
            headers["x-ferryman-router-version"] = decision.router_version
        # every score used: "<tier>=<score>" and "<tier>=<threshold>" per lower tier, cheapest first
        headers["x-ferryman-scores"] = ",".join(f"{t.tier}={t.score:.6g}" for t in decision.tier_scores)
        headers["x-ferryman-thresholds"] = ",".join(f"{t.tier}={t.threshold:.6g}" for t in decision.tier_scores)
        headers["x-ferryman-threshold-source"] = decision.threshold_source
    if decision.policy:
        headers["x-ferryman-policy"] = decision.policy
    if decision.llm is not None:
        llm = decision.llm
        headers["x-ferryman-llm-router"] = llm.router
        if llm.rating is not None:
            headers["x-ferryman-llm-rating"] = str(llm.rating)
            headers["x-ferryman-llm-reason"] = llm.reason.encode("ascii", "replace").decode()
            headers["x-ferryman-llm-cached"] = "true" if llm.cached else "false"
        if llm.fallback_reason:
            headers["x-ferryman-llm-fallback"] = llm.fallback_reason
    return headers


def accounting_headers(acc: Accounting, with_cost: bool) -> dict[str, str]:
    headers = {
        "x-ferryman-model": acc.served_model,
        "x-ferryman-served-tier": acc.served_tier_label,
        "x-ferryman-attempts": str(len(acc.attempts) + acc.retries),
        "x-ferryman-fallbacks": str(acc.fallbacks),
        "x-ferryman-degraded": "true" if acc.degraded else "false",
    }
    if with_cost:
        headers["x-ferryman-cost"] = f"{acc.cost_usd:.8f}"
        headers["x-ferryman-strong-cost"] = f"{acc.strong_cost_usd:.8f}"
    return headers


def authorization(headers: Headers) -> str | None:
    """The client key as an ``Authorization`` value: that header, or ``x-api-key`` (what Anthropic's SDK sends)."""
    key = headers.get("x-api-key")
    if key and not headers.get("authorization"):
        return f"Bearer {key.strip()}"
    return headers.get("authorization")


async def _read_body(request: Request, limits: LimitsConfig) -> bytes:
    """The whole body: at most ``max_body_bytes`` (413), within ``body_timeout_s`` (408)."""
    limit = limits.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limit:
                    raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
    except TimeoutError:
        raise RequestTimeoutError(f"the request body did not arrive within {limits.body_timeout_s:g} s") from None
    except ClientDisconnect:  # nobody will read the answer; a typed error keeps it out of the error log
        raise InvalidRequestError("the client disconnected before sending its whole body") from None
    return bytes(body)


def _feedback_fields(body: bytes) -> tuple[object, object]:
    """(id, rating) of a ``POST /v1/feedback`` body, unchecked; InvalidRequestError if it is no such object."""
    data = decode_body(body)
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object {id, rating}")
    unknown = sorted(set(data) - {"id", "rating"})
    if unknown:
        raise InvalidRequestError(f"unknown field(s): {', '.join(unknown)}"[:200], param=unknown[0][:50])
    return data.get("id"), data.get("rating")


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class HTTPApp:
    """The API routes, bound to one :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        from gateway.anthropic_app import MessagesAPI  # it builds on this module's helpers

        self.gateway = gateway
        messages = MessagesAPI(gateway)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/messages", messages.messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
                Route("/v1/feedback", self.feedback, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{id:path}", self.model, methods=["GET"]),
                Route("/healthz", healthz, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _no_such_route},
        )

    async def chat_completions(self, request: Request) -> Response:
        try:
            tenant = self.gateway.authenticate(authorization(request.headers))
            body = await _read_body(request, self.gateway.config.limits)
        except GatewayError as exc:
            return _error_response(exc, close=True)
        try:
            chat, stream, include_usage = parse_chat_request(decode_body(body), self.gateway.config)
            chat = with_conversation(replace(chat, tenant=tenant), request.headers)
            if stream:
                return self._stream_response(await self.gateway.start_stream(chat), include_usage)
            result = await self.gateway.chat(chat)
        except Exception as exc:
            return _error_response(exc)
        headers = decision_headers(result.decision) | accounting_headers(result.accounting, with_cost=True)
        return JSONResponse(completion_json(result), headers=headers)

    async def feedback(self, request: Request) -> Response:
        """``{"id": "<completion id>", "rating": "good" | "bad"}`` → 200, or 400 / 401 / 404 / 503."""
        try:
            tenant = self.gateway.authenticate(authorization(request.headers))
            body = await _read_body(request, self.gateway.config.limits)
        except GatewayError as exc:
            return _error_response(exc, close=True)
        try:
            response_id, rating = await self.gateway.feedback(tenant, lambda: _feedback_fields(body))
        except Exception as exc:
            return _error_response(exc)
        return JSONResponse({"object": "feedback", "id": response_id, "rating": rating.value})

    def _stream_response(self, started: StreamResult, include_usage: bool) -> StreamingResponse:
        headers = decision_headers(started.decision) | accounting_headers(started.accounting, with_cost=False)
        return StreamingResponse(
            self._sse_events(started, include_usage),
            media_type="text/event-stream",
            headers=headers | {"cache-control": "no-cache"},
        )

    async def _sse_events(self, started: StreamResult, include_usage: bool) -> AsyncIterator[bytes]:
        """The stream's chunks, then ``[DONE]``; or, whatever goes wrong, an error event last.

        Every chunk names the model that serves it and its tier (``model``, ``ferryman``); the
        first also carries the decision, the last the accounting (attempts, cost).
        """
        served = served_json(started.accounting)
        out = ChunkWriter(started.id, started.created, started.accounting.served_model, {"ferryman": served})
        try:
            first = out.start(started.request.n)
            yield _sse(first | {"ferryman": served | {"decision": decision_json(started.decision)}})
            async for event in self.gateway.stream_events(started):
                yield _sse(out.event(event))
        except GatewayError as exc:
            # after the first token there is no fallback: end with an explicit error event
            yield _sse(exc.openai_body())
            return
        except Exception as exc:  # a bug, not a provider fault (those are GatewayErrors by now)
            log.error("unexpected error in an HTTP stream", exc_info=exc)
            yield _sse(GatewayError(INTERNAL_MESSAGE).openai_body())
            return
        done = started.completion
        assert done is not None, "stream_events ends with a completion or raises"
        reasons = tuple(c.finish_reason for c in done.choices)
        last = out.finish(StreamEnd(reasons[0], done.usage, reasons[1:]))
        yield _sse(last | {"ferryman": served | accounting_json(started.accounting)})
        if include_usage:
            yield _sse(out.usage(done.usage))
        yield _sse("[DONE]")

    async def models(self, request: Request) -> Response:
        try:
            self.gateway.authenticate(authorization(request.headers))
        except GatewayError as exc:
            return _error_response(exc)
        config = self.gateway.config
        data = [_model_entry(n, "policy", router=p.router) for n, p in config.policies.items()]
        data += [_model_entry(n, "model", provider=m.provider) for n, m in config.models.items()]
        # RouteLLM-style names: one family per router the scorer serves (its id alone is not a model name)
        data += [_family_entry(router, calibrated) for router, calibrated in self.gateway.routers().items()]
        # one list in both SDKs' shapes: OpenAI's (object, created, owned_by) and Anthropic's (a page)
        page = {
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return JSONResponse({"object": "list", "data": data} | page)

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{id}`` (``models.retrieve`` of both SDKs): a policy, a configured model, or a
        ``router-<router>-<threshold>`` / ``-s<share>`` name whose router the scorer serves; else 404."""
        name = request.path_params["id"]
        try:
            self.gateway.authenticate(authorization(request.headers))
            config = self.gateway.config
            if name in config.policies:
                return JSONResponse(_model_entry(name, "policy", router=config.policies[name].router))
            if name in config.models:
                return JSONResponse(_model_entry(name, "model", provider=config.models[name].provider))
            served = self.gateway.routers()
            family = name.removeprefix("router-")
            if family != name and family in served:  # a listed family, router-<router>
                return JSONResponse(_family_entry(family, served[family]))
            spec = parse_spec(name, RoutingOverrides(), config)  # the request's own check of the name
            router = spec.router if spec is not None else ""
            if router not in served:
                serves = ", ".join(served) or "none yet"
                message = f"unknown model {name!r}: the scorer serves no router {router!r} (it serves: {serves})"
                raise UnknownModelError(message, param="model")
        except Exception as exc:
            return _error_response(exc)
        return JSONResponse(_model_entry(name, "routed", router=router, calibrated=served[router]))


def _model_entry(name: str, kind: str, **more: Any) -> dict[str, Any]:
    """One model of ``/v1/models`` in both SDKs' shapes: OpenAI's (object, created, owned_by) and Anthropic's."""
    created = int(time.time())
    stamp = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
    openai_shape = {"id": name, "object": "model", "created": created, "owned_by": "ferryman"}
    anthropic_shape = {"type": "model", "display_name": name, "created_at": stamp}
    return openai_shape | anthropic_shape | {"ferryman": {"type": kind} | more}


def _family_entry(router: str, calibrated: bool) -> dict[str, Any]:
    """The ``router-<router>`` family of ``/v1/models``: the names it stands for (not itself a model name)."""
    forms = [f"router-{router}-<threshold>"] + ([f"router-{router}-s<share>"] if calibrated else [])
    return _model_entry(f"router-{router}", "router_family", router=router, calibrated=calibrated, forms=forms)


async def _no_such_route(request: Request, exc: Exception) -> Response:
    """A path or method the API does not serve: 404 / 405 in OpenAI's error shape (was Starlette's plain text, which
    the SDKs show as "Not Found" without saying what is served)."""
    assert isinstance(exc, HTTPException)
    routes = [r for r in request.app.routes if isinstance(r, Route) and r.path.startswith("/v1/")]
    served = ", ".join(f"{m} {r.path_format}" for r in routes for m in sorted((r.methods or set()) - {"HEAD"}))
    what = "not found" if exc.status_code == 404 else str(exc.detail).lower()
    body = {
        "error": {
            "message": f"{request.method} {request.url.path}: {what}; this gateway serves {served}",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found" if exc.status_code == 404 else "method_not_allowed",
        }
    }
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class AdminApp:
    """The operators' routes: readiness with breaker states, and Prometheus metrics."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.ready = False
        self.app = Starlette(
            routes=[
                Route("/healthz", healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ]
        )

    async def readyz(self, request: Request) -> Response:
        breakers = self.gateway.resilience.breakers.states()
        if not self.ready or self.gateway.lifecycle.draining:
            return JSONResponse({"status": "not ready", "breakers": breakers}, status_code=503)
        return JSONResponse({"status": "ready", "breakers": breakers})

    async def metrics(self, request: Request) -> Response:
        return Response(self.gateway.metrics.render(), media_type="text/plain; version=0.0.4")
