"""Request deadlines and the shutdown drain, shared by every transport.

Every awaited piece of a request (the provider calls of the whole request; each chunk of a
started stream) runs inside :meth:`Lifecycle.bound`, an ``asyncio.timeout_at`` scope
registered here, so that three limits end it the same way:

- the whole-request deadline (``server.request_timeout_s``, or the client's own deadline when
  shorter), streams included → :class:`~gateway.errors.DeadlineExceededError` (504);
- the idle timeout between a stream's chunks (``server.stream_idle_timeout_s``) →
  :class:`~gateway.errors.StreamStalledError` (502, a provider fault);
- the end of the shutdown drain: :meth:`Lifecycle.expire` moves every registered scope's
  deadline to now → :class:`~gateway.errors.ShuttingDownError` (503).

The transports turn those into an HTTP error body, an SSE error event or a gRPC status, so a
request the gateway accepted always completes or gets a clean error. Times are the running
loop's clock (``loop.time()``).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from gateway.errors import DeadlineExceededError, ShuttingDownError, StreamStalledError


def now() -> float:
    """The running loop's clock, in seconds (what every deadline here is measured in)."""
    return asyncio.get_running_loop().time()


class _Bound:
    """One ``asyncio.timeout_at`` scope, registered with the lifecycle while it is active."""

    __slots__ = ("_deadline", "_idle_until", "_lifecycle", "_timeout")

    def __init__(self, lifecycle: Lifecycle, deadline: float, idle_until: float | None) -> None:
        self._lifecycle = lifecycle
        self._deadline = deadline
        self._idle_until = idle_until
        when = deadline if idle_until is None else min(deadline, idle_until)
        self._timeout = asyncio.timeout_at(when)

    async def __aenter__(self) -> None:
        if self._lifecycle.expired:
            raise ShuttingDownError("the gateway is shutting down")
        await self._timeout.__aenter__()
        self._lifecycle._scopes.add(self._timeout)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lifecycle._scopes.discard(self._timeout)
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            if self._lifecycle.expired:
                raise ShuttingDownError("the gateway is shutting down and the request could not finish") from None
            if self._idle_until is not None and self._idle_until < self._deadline:
                raise StreamStalledError("the provider sent nothing within the stream idle timeout") from None
            raise DeadlineExceededError("the request deadline passed before the answer was complete") from None


class Lifecycle:
    """Serving → draining (readiness down, work still served) → expired (what is left ends with an error)."""

    def __init__(self) -> None:
        self.draining = False
        self.expired = False
        self._scopes: set[asyncio.Timeout] = set()
        #: gRPC calls running now (HTTP requests are counted by the HTTP server).
        self.rpcs = 0

    def bound(self, deadline: float, idle_until: float | None = None) -> _Bound:
        """``async with lifecycle.bound(deadline): ...`` — see the module docstring."""
        return _Bound(self, deadline, idle_until)

    def begin_drain(self) -> None:
        """Readiness goes down; work goes on (new requests included, each bounded by the drain)."""
        self.draining = True

    def expire(self) -> None:
        """The drain is over: end every bounded await now (each raises ShuttingDownError)."""
        self.draining = self.expired = True
        when = now()
        for scope in list(self._scopes):
            if not scope.expired():
                scope.reschedule(when)
