"""What every gRPC call needs apart from its own conversion, as ``grpc.aio.ServerInterceptor``s.

Installed outermost first (``interceptors()``):

- :class:`MetricsInterceptor`: RPCs by method and final status code, and their latency;
- :class:`LifecycleInterceptor`: counts the calls running (the shutdown drain waits for them);
- :class:`StatusInterceptor`: the one place gRPC statuses are chosen. A
  :class:`~gateway.errors.GatewayError` becomes its class's code and client-safe message; a
  request that does not decode (bad UTF-8 in a string field, a corrupt message) becomes
  INVALID_ARGUMENT instead of grpc's UNKNOWN with a parser message; anything else is logged and
  becomes INTERNAL "internal error" (no exception text reaches a client);
- :class:`AuthInterceptor`: ``authorization: Bearer <key>`` metadata on every service but
  ``grpc.health.v1.Health`` (Kubernetes probes send no metadata). Reflection needs the key.

So servicer methods are typed proto → core → proto adapters with no try/except of their own.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry

from gateway.errors import INTERNAL_MESSAGE, GatewayError, InvalidRequestError
from gateway.lifecycle import Lifecycle
from gateway.metrics import api_metrics

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]
Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Streaming = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]

HEALTH_SERVICE = "grpc.health.v1.Health"

_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("ferryman_tenant")


def current_tenant() -> str:
    """The caller's tenant id, as :class:`AuthInterceptor` authenticated it for this call."""
    return _TENANT.get()


class Undecodable:
    """What a request that does not parse is handed on as (StatusInterceptor turns it into INVALID_ARGUMENT)."""

    def __init__(self, type_name: str, error: DecodeError) -> None:
        self.type_name = type_name
        self.error = error


def _wrap(
    handler: grpc.RpcMethodHandler | None,
    unary: Callable[[Unary], Unary],
    streaming: Callable[[Streaming], Streaming],
    **replace: Any,
) -> grpc.RpcMethodHandler | None:
    """``handler`` with its behaviour wrapped (GatewayService has unary and server-streaming RPCs)."""
    if handler is None or handler.request_streaming:
        return handler
    h: Any = handler
    if handler.response_streaming:
        return h._replace(unary_stream=streaming(h.unary_stream), **replace)  # type: ignore[no-any-return]
    return h._replace(unary_unary=unary(h.unary_unary), **replace)  # type: ignore[no-any-return]


Leave = Callable[[BaseException | None], None]


def _bracket(
    handler: grpc.RpcMethodHandler | None, enter: Callable[[grpc.aio.ServicerContext], Leave]
) -> grpc.RpcMethodHandler | None:
    """``handler`` with ``enter(context)`` called as each call starts and what it returns called as the
    call ends (with the exception, or None)."""

    def unary(behaviour: Unary) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            leave = enter(context)
            try:
                result = await behaviour(request, context)
            except BaseException as exc:
                leave(exc)
                raise
            leave(None)
            return result

        return call

    def streaming(behaviour: Streaming) -> Streaming:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            leave = enter(context)
            try:
                async for message in behaviour(request, context):
                    yield message
            except BaseException as exc:
                leave(exc)
                raise
            leave(None)

        return call

    return _wrap(handler, unary, streaming)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """``ferryman_gateway_grpc_requests_total{method,code}`` and ``..._grpc_latency_seconds{method}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests, self._latency = api_metrics(
            registry,
            "grpc",
            "method",
            "gRPC calls by method and status code.",
            "gRPC call duration (a stream's: until its last message).",
        )

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method.rsplit("/", 1)[-1]

        def enter(context: grpc.aio.ServicerContext) -> Leave:
            started = time.perf_counter()

            def leave(exc: BaseException | None) -> None:
                self._requests.labels(method, "OK" if exc is None else _code(context, exc)).inc()
                self._latency.labels(method).observe(time.perf_counter() - started)

            return leave

        return _bracket(await continuation(handler_call_details), enter)


def _code(context: grpc.aio.ServicerContext, exc: BaseException) -> str:
    """The status an RPC ended with: the aborted code, else CANCELLED (the client went away)."""
    status = context.code() if isinstance(exc, grpc.aio.AbortError) else None
    return status.name if isinstance(status, grpc.StatusCode) else "CANCELLED"


class LifecycleInterceptor(grpc.aio.ServerInterceptor):
    """Keeps ``lifecycle.rpcs``, the number of calls running, for the drain (see ``gateway.main``)."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        lifecycle = self._lifecycle

        def leave(exc: BaseException | None) -> None:
            lifecycle.rpcs -= 1

        def enter(context: grpc.aio.ServicerContext) -> Leave:
            lifecycle.rpcs += 1
            return leave

        return _bracket(await continuation(handler_call_details), enter)


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, GatewayError):
        await context.abort(exc.grpc_code, exc.message)
    log.error("unexpected error serving a gRPC request", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _decoded(request: Any) -> Any:
    if isinstance(request, Undecodable):
        raise InvalidRequestError(f"the request is not a valid {request.type_name} message ({request.error})")
    return request


class StatusInterceptor(grpc.aio.ServerInterceptor):
    """Exceptions → status codes, and undecodable requests → INVALID_ARGUMENT (see the module docstring)."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        def unary(behaviour: Unary) -> Unary:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await behaviour(_decoded(request), context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, exc)

            return call

        def streaming(behaviour: Streaming) -> Streaming:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for message in behaviour(_decoded(request), context):
                        yield message
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, exc)

            return call

        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return _wrap(handler, unary, streaming)
        return _wrap(handler, unary, streaming, request_deserializer=_tolerant(handler.request_deserializer))


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    type_name = getattr(getattr(parse, "__self__", None), "__name__", "request")

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Undecodable(type_name, exc)

    return deserialize


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer key before any handler runs (health checks excepted); the handler reads the
    caller's tenant with :func:`current_tenant`."""

    def __init__(self, authenticate: Callable[[str | None], str]) -> None:
        self._authenticate = authenticate

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler_call_details.method.startswith(f"/{HEALTH_SERVICE}/"):
            return handler
        authorization = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode("latin-1")
        try:
            tenant = self._authenticate(authorization)
        except GatewayError as exc:
            return _refuse(handler, exc)

        def enter(context: grpc.aio.ServicerContext) -> Leave:
            _TENANT.set(tenant)  # in the call's own context, which the handler runs in
            return _nothing

        return _bracket(handler, enter)


def _nothing(exc: BaseException | None) -> None:
    pass


def _refuse(handler: grpc.RpcMethodHandler | None, exc: GatewayError) -> grpc.RpcMethodHandler | None:
    """``handler`` with a behaviour that only raises ``exc``."""

    def unary(_: Unary) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            raise exc

        return call

    def streaming(_: Streaming) -> Streaming:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            raise exc
            yield  # an async generator, like the behaviour it replaces

        return call

    if handler is not None and handler.request_streaming:  # reflection: a bidirectional stream
        h: Any = handler

        async def refuse_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await context.abort(exc.grpc_code, exc.message)
            yield

        return h._replace(stream_stream=refuse_stream)  # type: ignore[no-any-return]
    return _wrap(handler, unary, streaming)


def interceptors(
    registry: CollectorRegistry, lifecycle: Lifecycle, authenticate: Callable[[str | None], str]
) -> list[Any]:
    """The gateway's interceptors, outermost first."""
    return [
        MetricsInterceptor(registry),
        LifecycleInterceptor(lifecycle),
        StatusInterceptor(),
        AuthInterceptor(authenticate),
    ]
