"""Cross-cutting concerns of the scorer's gRPC service, as ``grpc.aio.ServerInterceptor`` s.

The servicer (``scorer.server.ScorerServicer``) is a typed adapter: proto → domain → proto.
What every method shares lives here, outermost first:

1. ``MetricsInterceptor``: counts each call by method, router and status code and times it
   (``scorer.metrics``); the inner layers tell it the router and the status through ``CALL``.
2. ``StatusInterceptor``: the one place where exceptions become status codes. A domain error
   (``scorer.errors.ScorerError``) carries its code and a message for the client; anything else
   is logged here with its traceback and reaches the client as INTERNAL, "internal error".
3. ``SizeLimitInterceptor``: admission by size, before parsing. Protobuf parsing holds the GIL,
   so a request of millions of tiny messages would stall the event loop for everyone while it is
   parsed; a request larger than its method's limit is refused as INVALID_ARGUMENT unparsed.

Only the methods of the scorer's own service are wrapped; health and reflection pass through.
The scorer has no authentication of its own: it listens inside the cluster (see docs/scorer.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from scorer.errors import RequestTooLargeError, ScorerError
from scorer.metrics import ScorerMetrics

log = logging.getLogger(__name__)

Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


@dataclass
class CallInfo:
    """What the layers learn about one call: the router label for metrics and the final status."""

    method: str
    router: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK


CALL: contextvars.ContextVar[CallInfo] = contextvars.ContextVar("scorer_call")


def _unary(
    service: str, details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler | None
) -> tuple[str, Behaviour] | None:
    """(method name, behaviour) of a unary-unary handler of ``service``, else None (leave it alone)."""
    prefix = f"/{service}/"
    if handler is None or handler.unary_unary is None or not details.method.startswith(prefix):
        return None
    return details.method[len(prefix) :], handler.unary_unary


def _rewrap(handler: grpc.RpcMethodHandler, behaviour: Behaviour, deserializer: Any = ...) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=handler.request_deserializer if deserializer is ... else deserializer,
        response_serializer=handler.response_serializer,
    )


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Requests by method, router and code; latency by method and router."""

    def __init__(self, service: str, metrics: ScorerMetrics) -> None:
        self._service = service
        self._metrics = metrics

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        found = _unary(self._service, handler_call_details, handler)
        if found is None or handler is None:
            return handler
        method, inner = found
        metrics = self._metrics

        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            info = CallInfo(method)
            CALL.set(info)
            started = time.perf_counter()
            try:
                return await inner(request, context)
            finally:
                metrics.requests.labels(method, info.router, info.code.name).inc()
                metrics.latency.labels(method, info.router).observe(time.perf_counter() - started)

        return _rewrap(handler, behaviour)


class StatusInterceptor(grpc.aio.ServerInterceptor):
    """Exceptions → status codes, in one place (see the module docstring)."""

    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        found = _unary(self._service, handler_call_details, handler)
        if found is None or handler is None:
            return handler
        method, inner = found

        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            info = CALL.get(None) or CallInfo(method)
            try:
                return await inner(request, context)
            except ScorerError as exc:
                info.code = exc.code
                await context.abort(exc.code, str(exc))
            except asyncio.CancelledError:
                info.code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                log.exception("%s failed unexpectedly", method)
                info.code = grpc.StatusCode.INTERNAL
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise AssertionError("unreachable: context.abort raises")

        return _rewrap(handler, behaviour)


class SizeLimitInterceptor(grpc.aio.ServerInterceptor):
    """Refuse a request above its method's byte limit before parsing it; parse the others.

    ``label`` names the router a parsed request is for (bounded: "unknown" for names not loaded),
    for the metrics layer.
    """

    def __init__(self, service: str, limits: Mapping[str, int], label: Callable[[Any], str]) -> None:
        self._service = service
        self._limits = dict(limits)
        self._label = label

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        found = _unary(self._service, handler_call_details, handler)
        if found is None or handler is None or handler.request_deserializer is None:
            return handler
        method, inner = found
        parse = handler.request_deserializer
        limit = self._limits.get(method)
        label = self._label

        async def behaviour(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            if limit is not None and len(raw) > limit:
                raise RequestTooLargeError(
                    f"{method} request is {len(raw):,} bytes; the limit is {limit:,} "
                    "(send only what is scored: the prompt or the turns to score; split large batches)"
                )
            request = parse(raw)
            info = CALL.get(None)
            if info is not None:
                info.router = label(request)
            return await inner(request, context)

        return _rewrap(handler, behaviour, deserializer=None)
