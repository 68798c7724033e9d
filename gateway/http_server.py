"""The HTTP listeners: uvicorn's httptools protocol plus the limits it lacks, and a drain.

:class:`GatewayProtocol` adds, per connection (``limits`` section):

- a head deadline: the request line and headers must arrive within ``header_timeout_s`` of
  connecting (or of the next request's first byte on a kept-alive connection), else 408 and
  the connection closes — a client that connects and sends nothing holds no socket for long;
- a head size: more than ``max_header_bytes`` (counted as the bytes arrive, so memory stays
  bounded whatever the parser buffers) or ``max_header_count`` headers → 431, connection closed;
- stalled writes: a client that reads nothing of its answer for ``write_timeout_s`` loses the
  connection (``abort``, since a plain close would wait for the unread bytes forever);
- while the gateway drains, every answer carries ``connection: close``.

The body deadline and size are the app's (``gateway.http_app``): 408 and 413 in OpenAI's shape.
:class:`HTTPServer` leaves signals to ``gateway.main``, which drains with
:meth:`HTTPServer.end_keep_alive`, the ``in_flight`` count and :meth:`HTTPServer.close_listeners`
before it sets ``should_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Generator, Sequence
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.config import LimitsConfig
from gateway.errors import GatewayError, HeadersTooLargeError, RequestTimeoutError
from gateway.lifecycle import Lifecycle

log = logging.getLogger(__name__)

# uvicorn's loggers take their level here, once, at import: a uvicorn.Config given a log_level sets it on every
# server it configures, and each Logger.setLevel clears every logger's cache under logging's module lock — a
# garbage collection there can finalize a grpc object that waits for a lock held by a grpc thread that is itself
# waiting for logging's lock (a deadlock seen with the gateway's two HTTP servers starting beside a running gRPC
# server). Configured servers get log_level=None.
logging.getLogger("uvicorn").setLevel(logging.WARNING)

#: After the drain: how long requests still running get to write their error, in seconds.
FINISH_S = 2.0


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits, stalled-write aborts and drain-aware keep-alive."""

    limits: ClassVar[LimitsConfig]
    lifecycle: ClassVar[Lifecycle]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_received = 0  # bytes received while in the head (what bounds memory)
        self._head_size = 0  # request line + header names and values, as parsed
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # ---------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_received += len(data)
            if self._head_timer is None:
                self._arm_head_timer()
        super().data_received(data)
        if self._in_head and not self._refused and self._head_received > self.limits.max_header_bytes:
            self._refuse(HeadersTooLargeError(f"request headers exceed {self.limits.max_header_bytes} bytes"))

    # ---------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_size = self._head_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._head_count <= self.limits.max_header_count and self._head_size <= self.limits.max_header_bytes:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_received = 0
        self._cancel_head_timer()
        if self._head_count > self.limits.max_header_count:
            self._refuse(HeadersTooLargeError(f"more than {self.limits.max_header_count} request headers"))
        elif self._head_size > self.limits.max_header_bytes:
            self._refuse(HeadersTooLargeError(f"request headers exceed {self.limits.max_header_bytes} bytes"))
        if self._refused:
            return
        super().on_headers_complete()
        if self.lifecycle.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head = True  # what follows on this connection is the next request's head

    # ---------------------------------------------------------------- limits

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self._refused and not self.transport.is_closing():
            timeout = self.limits.header_timeout_s
            self._refuse(RequestTimeoutError(f"request headers did not arrive within {timeout:g} s"))

    def _refuse(self, exc: GatewayError) -> None:
        """Answer ``exc`` in OpenAI's error shape (unless an answer is under way) and close."""
        self._refused = True
        self._cancel_head_timer()
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps(exc.openai_body()).encode()
            head = STATUS_LINE[exc.http_status] + b"content-type: application/json\r\n"
            head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            self.transport.write(head + body)
        self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.write_timeout_s, self._write_stalled)

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().resume_writing()

    def _write_stalled(self) -> None:
        self._write_timer = None
        log.info("closing a connection whose client read nothing for %g s", self.limits.write_timeout_s)
        self.transport.abort()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing() and self.transport.get_write_buffer_size():
            self.transport.abort()  # the client never read its answer: close() would wait for it forever
        else:
            super().timeout_keep_alive_handler()


def protocol_for(limits: LimitsConfig, lifecycle: Lifecycle) -> type[GatewayProtocol]:
    """A :class:`GatewayProtocol` bound to one gateway's limits and lifecycle (uvicorn creates the instances)."""
    return type("BoundGatewayProtocol", (GatewayProtocol,), {"limits": limits, "lifecycle": lifecycle})


class HTTPServer(uvicorn.Server):
    """uvicorn without its own signal handling, with the pieces ``gateway.main``'s drain needs."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: Any = None) -> None:
        """uvicorn's start-up, except that a listener that cannot bind ends ``serve()`` instead of the process
        (uvicorn calls ``sys.exit(3)``, which would leave the event loop before the gateway says which
        listener failed: see ``gateway.main``)."""
        try:
            await super().startup(sockets)
        except SystemExit:
            self.should_exit = True

    @property
    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        return len(self.server_state.tasks)

    def end_keep_alive(self) -> None:
        """Requests under way close their connection once answered (later ones do too: see
        :class:`GatewayProtocol`)."""
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False

    def close_listeners(self) -> None:
        for server in self.servers:
            server.close()

    async def shutdown(self, sockets: Any = None) -> None:
        """Called once ``should_exit`` is set, after the drain: close what is left."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle ones close now, busy ones once answered
        try:
            async with asyncio.timeout(FINISH_S):
                while self.server_state.tasks:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.error("cancelling %d HTTP request(s) still running after the drain", len(self.server_state.tasks))
            for task in list(self.server_state.tasks):
                task.cancel()


async def start_serving(
    server: HTTPServer, what: str, field: str, others: Sequence[asyncio.Task[None]] = ()
) -> asyncio.Task[None]:
    """Start ``server`` in a task and wait until it listens: the task. If it cannot bind (uvicorn has logged
    why), ``others`` are cancelled and OSError names the ``what`` listener, its address and its ``field``."""
    task = asyncio.create_task(server.serve(), name=f"{what}-server")
    while not server.started:
        if task.done():
            for other in others:
                other.cancel()
            task.result()
            address = f"{server.config.host}:{server.config.port}"
            raise OSError(f"cannot bind the {what} listener to {address}: address in use or not available ({field})")
        await asyncio.sleep(0.01)
    return task


def create_http_server(app: Any, host: str, port: int, limits: LimitsConfig, lifecycle: Lifecycle) -> HTTPServer:
    """An HTTP server for ``app`` (not started: ``await server.serve()`` in a task)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(limits, lifecycle),
        ws="none",
        lifespan="off",
        log_level=None,  # the level is set once above, not per server
        log_config=None,  # uvicorn's loggers write through the gateway's handler and format (gateway.main)
        access_log=False,
    )
    return HTTPServer(config)
