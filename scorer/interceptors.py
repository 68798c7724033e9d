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


class _UnaryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the unary-unary methods of one service (``wrap``); every other handler passes through."""

    def __init__(self, service: str) -> None:
        self._prefix = f"/{service}/"

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not method.startswith(self._prefix):
            return handler
        behaviour, deserializer = self.wrap(method[len(self._prefix) :], handler.unary_unary, handler)
        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=deserializer, response_serializer=handler.response_serializer
        )

    def wrap(self, method: str, inner: Behaviour, handler: grpc.RpcMethodHandler) -> tuple[Behaviour, Any]:
        """The wrapped behaviour and the request deserializer it needs (the handler's, unless it parses)."""
        raise NotImplementedError


class MetricsInterceptor(_UnaryInterceptor):
    """Requests by method, router and code; latency by method and router."""

    def __init__(self, service: str, metrics: ScorerMetrics) -> None:
        super().__init__(service)
        self._metrics = metrics

    def wrap(self, method: str, inner: Behaviour, handler: grpc.RpcMethodHandler) -> tuple[Behaviour, Any]:
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

        return behaviour, handler.request_deserializer


class StatusInterceptor(_UnaryInterceptor):
    """Exceptions → status codes, in one place (see the module docstring)."""

    def wrap(self, method: str, inner: Behaviour, handler: grpc.RpcMethodHandler) -> tuple[Behaviour, Any]:
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

        return behaviour, handler.request_deserializer


class SizeLimitInterceptor(_UnaryInterceptor):
    """Refuse a request above its method's byte limit before parsing it; parse the others.

    ``label`` names the router a parsed request is for (bounded: "unknown" for names not loaded),
    for the metrics layer.
    """

    def __init__(self, service: str, limits: Mapping[str, int], label: Callable[[Any], str]) -> None:
        super().__init__(service)
        self._limits = dict(limits)
        self._label = label

    def wrap(self, method: str, inner: Behaviour, handler: grpc.RpcMethodHandler) -> tuple[Behaviour, Any]:
        parse = handler.request_deserializer
        limit = self._limits.get(method)
        label = self._label
        if parse is None:
            return inner, None

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

        return behaviour, None
