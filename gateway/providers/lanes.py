"""An httpx transport that gives each in-flight request a connection of its own ("lanes").

httpcore's connection pool checks every pooled connection on each pool operation
(``has_expired`` → a socket poll and ``getpeername`` per connection, twice a request:
encode/httpcore#924). With 32 requests in flight to one provider that cost the gateway
about 1.3 ms of CPU per request, more than everything else it does for a passthrough
request. :class:`LaneTransport` keeps httpx for the HTTP itself but hands each request an
idle single-connection transport (most recently used first, so warm connections are
reused and idle ones age out through the usual keep-alive expiry); a pool of lanes costs
O(1) per request whatever the number of connections. ``max_connections`` still bounds the
connections (and so the requests in flight) per endpoint; a request waits for a free lane
at most the pool timeout, then fails with :class:`httpx.PoolTimeout` as with httpx's pool.

The lanes share one TLS context, made with the first lane: httpx builds a new one per transport,
loading the CA bundle each time (~16 ms of CPU), which every new lane paid — a learning worker
opening its ~30 lanes to the shadow models and the judge as shadow concurrency grew spent more CPU
on that than on its requests (docs/lab-log.md, 2026-12-05 03:30).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpx


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that hands its lane back once closed (read fully, failed or abandoned)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: _Release) -> None:
        self._stream = stream
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


class _Release:
    """Returns a lane to the idle list exactly once."""

    def __init__(self, owner: LaneTransport, lane: httpx.AsyncHTTPTransport) -> None:
        self._owner = owner
        self._lane: httpx.AsyncHTTPTransport | None = lane

    def __call__(self) -> None:
        if self._lane is not None:
            self._owner._idle.append(self._lane)
            self._lane = None
            self._owner._slots.release()


class LaneTransport(httpx.AsyncBaseTransport):
    """Up to ``max_connections`` single-connection transports, one per request in flight."""

    def __init__(self, max_connections: int, keepalive_expiry_s: float = 5.0) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=keepalive_expiry_s)
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[httpx.AsyncHTTPTransport] = []  # LIFO: the warmest connection first
        self._lanes: list[httpx.AsyncHTTPTransport] = []
        self._tls: ssl.SSLContext | None = None

    @property
    def lanes(self) -> int:
        """How many lanes (connections at most) have been opened so far."""
        return len(self._lanes)

    async def _acquire(self, request: httpx.Request) -> httpx.AsyncHTTPTransport:
        pool_timeout = request.extensions.get("timeout", {}).get("pool")
        if self._slots.locked():
            try:
                async with asyncio.timeout(pool_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no free connection to the provider in time", request=request) from None
        else:
            await self._slots.acquire()
        if self._idle:
            return self._idle.pop()
        if self._tls is None:  # what httpx makes per transport (verify=True, trust_env), once for all lanes
            self._tls = httpx.create_ssl_context()
        lane = httpx.AsyncHTTPTransport(verify=self._tls, limits=self._limits)
        self._lanes.append(lane)
        return lane

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        lane = await self._acquire(request)
        release = _Release(self, lane)
        try:
            response = await lane.handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for lane in self._lanes:
            await lane.aclose()
        self._lanes.clear()
        self._idle.clear()
