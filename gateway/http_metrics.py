"""``ferryman_gateway_http_requests_total{route,code}`` and ``..._http_latency_seconds{route}``: the HTTP API's
counterpart of the gRPC metrics interceptor (``gateway.grpc_interceptors.MetricsInterceptor``).

An ASGI middleware around the API app (not the admin listener's). ``route`` is the matching route's path
template, so the label stays bounded whatever clients request: ``/v1/models/{id:path}`` for every model id,
``other`` for any path that is not a route (answered 404). ``code`` is the HTTP status sent, or ``none`` when
the client went away before an answer began. The time runs until the answer's last byte is handed to the
server: a stream's until its last event.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from gateway.metrics import api_metrics


class HTTPMetrics:
    """Counts and times every HTTP request ``app`` answers."""

    def __init__(self, app: Starlette, registry: CollectorRegistry) -> None:
        self.app = app
        self._requests, self._latency = api_metrics(
            registry,
            "http",
            "route",
            "HTTP API requests by route and status code (none: the client left before an answer began).",
            "HTTP API request duration (a stream's: until its last event).",
        )

    def route_label(self, scope: Scope) -> str:
        """The path template of the app's route that ``scope`` asks for (whatever its method), else "other"."""
        for route in self.app.routes:
            if route.matches(scope)[0] is not Match.NONE:
                return str(getattr(route, "path", "other"))
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, code = time.perf_counter(), "none"

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = self.route_label(scope)
            self._requests.labels(route, code).inc()
            self._latency.labels(route).observe(time.perf_counter() - started)
