"""A lean HTTP/1.1 transport for httpx: keep-alive connections on the event loop's own streams, the
response parsed by httptools (C), for the learning worker's provider calls.

Why: the learning worker is almost all HTTP client work (a profile of ``ferryman bench learning``:
84 % of its CPU in the three provider calls of each shadow job, docs/lab-log.md 2026-12-05 03:30), and
just over half of a call's CPU is httpcore's connection machinery (h11's pure-Python parser,
anyio's cancel scopes and socket wrappers, the pool's bookkeeping), the rest httpx's client. This transport
keeps the httpx client (so the adapters, error mapping and capped reads are the same code as the
gateway's) and replaces only what lies under it: on loopback, 0.60 -> 0.39 ms of CPU per
completion call.

What it does: up to ``max_connections`` connections per transport (a request waits for a free one
at most the pool timeout, then :class:`httpx.PoolTimeout`, as with :mod:`gateway.providers.lanes`);
an idle connection is reused most recently used first, unless the server closed it (end of file
seen while idle) or it has been idle for ``keepalive_expiry_s``; ``https`` over the event loop's TLS
with one shared context; request bodies read whole before a connection is taken and sent whole
(httpx has them in memory for the JSON the adapters post; one of unknown length as a single chunk);
responses by Content-Length, chunked, or (without either) until the server closes.
A connection is reused only after its response was read to the end and both sides kept it alive;
one abandoned or failed mid-way is closed. Timeouts map to httpx's (connect, read, write, pool), a
refused or reset connection to :class:`httpx.ConnectError` / :class:`httpx.ReadError`, a response
that is not HTTP (or whose head exceeds 64 kB) to :class:`httpx.RemoteProtocolError`. Informational
(1xx) answers before the real one are skipped; bytes after the end of an answer, or that arrive on an
idle connection, are never taken for the next request's (that connection is closed).

The keep-alive race: a request on a *reused* connection that meets end of file or a reset before
any byte of an answer (the provider closed it as idle just as it was reused) is sent once more, on a
new connection; never on a new connection, after an answer began, or after a timeout (docs/gateway.md).
An answer that arrives before the provider resets the connection mid-request (a 413 sent before it
read the whole body) is read and returned, not reported as a write error.

No HTTP/2, no ``Expect: 100-continue``, no HEAD (refused: a HEAD answer's Content-Length would be
waited for), no proxies: like the gateway's lanes (an httpx client given its own transport ignores
``HTTP(S)_PROXY``/``ALL_PROXY``), providers are reached directly.

The gateway's serving path keeps :mod:`gateway.providers.lanes` (httpx's own transport per
connection): only the learning worker uses this one (``ProviderPool(..., lean=True)``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

_READ = 65_536
#: Bytes an answer's status line and headers may take (httpx's own parser, h11, allows 16 kB).
_MAX_HEAD = 65_536


class _Parsed:
    """httptools callbacks: the status line and headers, then body pieces, then the end.

    Informational answers (1xx before the real one: 103 Early Hints, an unasked 100 Continue) are
    skipped, as httpx's own transport does. Anything after the end of the answer is not this request's
    (a stray second answer, a 408 before the server closes): ignored, and the connection not reused.
    """

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.status = 0
        self.headers_done = False
        self.done = False
        #: Bytes began another message after the answer: the connection is out of step.
        self.extra = False
        self._informational = False
        #: Both sides keep the connection (read while parsing: the parser forgets once the message ends).
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        if self.done:
            self.extra = True
        else:
            self.headers = []  # a skipped 1xx's

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.done:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.done or self.parser is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._informational = True
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if not self.done:
            self.body.append(bytes(body))

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
        elif self.headers_done:
            self.done = True


class _Reader(asyncio.StreamReader):
    """asyncio's stream reader (uvloop uses it too), counting the bytes it holds, which asyncio keeps
    private: bytes that arrived on an idle connection (a 408 before the server closes) would be read as
    the next answer. An error (a reset) that comes while it holds bytes is raised once they are read: an
    answer that arrived before the provider reset the connection is still read."""

    def __init__(self) -> None:
        super().__init__(limit=_READ)
        #: Bytes arrived and not read yet; bytes arrived since the connection was last taken for a request.
        self.held = 0
        self.received = 0
        self._error: Exception | None = None

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # typeshed: Iterable[SupportsIndex]
        self.held += len(data)
        self.received += len(data)
        super().feed_data(data)

    def set_exception(self, exc: Exception) -> None:
        if self.held:
            self._error = exc
            self.feed_eof()
        else:
            super().set_exception(exc)

    async def take(self) -> bytes:
        """What arrived (up to 64 kB); b"" at the end; raises a connection error after the bytes before it."""
        data = await self.read(_READ)
        self.held -= len(data)
        if not data and self._error is not None:
            raise self._error
        return data


class _Connection:
    def __init__(self, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()
        #: It served an answer before (a kept-alive connection taken from the idle ones).
        self.reused = False

    def reusable(self, expiry_s: float) -> bool:
        return (
            not self.reader.held
            and not self.reader.at_eof()
            and not self.writer.is_closing()
            and time.monotonic() - self.idle_since < expiry_s
        )

    def close(self) -> None:
        self.writer.close()


class _Exchange:
    """One request's response on one connection: reads and parses until the end."""

    def __init__(self, conn: _Connection, request: httpx.Request, read_timeout: float | None) -> None:
        self.conn = conn
        self.request = request
        self.read_timeout = read_timeout
        self.parsed = _Parsed()
        self.parser = httptools.HttpResponseParser(self.parsed)
        self.parsed.parser = self.parser
        self.until_close = False
        self.head_bytes = 0
        #: The request could not be sent whole: whatever the answer says, the connection goes.
        self.broken = False

    async def read_more(self) -> None:
        try:
            async with asyncio.timeout(self.read_timeout):
                data = await self.conn.reader.take()
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading the provider's answer", request=self.request) from None
        except OSError as exc:
            raise httpx.ReadError(f"reading the provider's answer failed: {exc}", request=self.request) from None
        if not data:
            if self.parsed.headers_done and self.until_close:
                self.parsed.done = True  # a body delimited by the end of the connection
                return
            raise httpx.RemoteProtocolError("the provider closed the connection mid-answer", request=self.request)
        if not self.parsed.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError) as exc:
            if self.parsed.done:  # garbage after a whole answer: the answer stands, the connection goes
                self.parsed.extra = True
                return
            if isinstance(exc, httptools.HttpParserUpgrade):
                raise httpx.RemoteProtocolError("the provider switched protocols", request=self.request) from None
            raise httpx.RemoteProtocolError(f"the provider's answer is not HTTP: {exc}", request=self.request) from None
        if not self.parsed.headers_done and self.head_bytes > _MAX_HEAD:
            raise httpx.RemoteProtocolError(f"the provider's headers exceed {_MAX_HEAD} bytes", request=self.request)

    async def read_head(self) -> None:
        while not self.parsed.headers_done:
            await self.read_more()
        names = {name.lower() for name, _ in self.parsed.headers}
        self.until_close = b"content-length" not in names and b"transfer-encoding" not in names

    def keep_alive(self) -> bool:
        parsed = self.parsed
        return parsed.done and not self.until_close and parsed.keep_alive and not parsed.extra and not self.broken


class _Body(httpx.AsyncByteStream):
    """The response body as it arrives; returns the connection (or closes it) and the slot once closed."""

    def __init__(self, owner: LeanTransport, key: tuple[str, str, int], exchange: _Exchange) -> None:
        self._owner = owner
        self._key = key
        self._exchange = exchange
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parsed = self._exchange.parsed
        while True:
            if parsed.body:
                pieces, parsed.body = parsed.body, []
                for piece in pieces:
                    yield piece
            if parsed.done:
                return
            await self._exchange.read_more()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner._release(self._key, self._exchange.conn, self._exchange.keep_alive())


class LeanTransport(httpx.AsyncBaseTransport):
    """Up to ``max_connections`` kept-alive HTTP/1.1 connections per endpoint, on the event loop's streams."""

    def __init__(self, max_connections: int, keepalive_expiry_s: float = 5.0) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._expiry_s = keepalive_expiry_s
        self._tls: ssl.SSLContext | None = None
        #: Connections opened so far, and requests sent again after a reused connection was closed (tests, metrics).
        self.opened = 0
        self.retried = 0

    async def _acquire(self, pool_timeout: float | None, request: httpx.Request) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection to the provider in time", request=request) from None

    def _release(self, key: tuple[str, str, int], conn: _Connection, keep: bool) -> None:
        if keep:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(conn)
        else:
            conn.close()
        self._slots.release()

    async def _connect(
        self, key: tuple[str, str, int], timeout: float | None, request: httpx.Request, fresh: bool = False
    ) -> _Connection:
        idle = self._idle.get(key)
        while idle and not fresh:
            conn = idle.pop()  # the warmest first
            if conn.reusable(self._expiry_s):
                conn.reused, conn.reader.received = True, 0
                return conn
            conn.close()
        scheme, host, port = key
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._tls is None:
                self._tls = httpx.create_ssl_context()
            tls = self._tls
        try:
            async with asyncio.timeout(timeout):
                loop = asyncio.get_running_loop()
                reader = _Reader()
                # as asyncio.open_connection does, with the counting reader
                transport, protocol = await loop.create_connection(
                    lambda: asyncio.StreamReaderProtocol(reader),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
                writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting to the provider", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to the provider: {exc}", request=request) from None
        self.opened += 1
        return _Connection(reader, writer)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        if request.method == "HEAD":  # its answer announces a body that never comes: it would be waited for
            raise NotImplementedError("the lean transport does not send HEAD requests (the provider adapters never do)")
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        # the whole body first: nothing awaited between taking a connection and writing to it, and a second
        # try sends the same bytes (a streamed body is read once)
        content = await request.aread()
        await self._acquire(timeouts.get("pool"), request)
        conn: _Connection | None = None
        try:
            try:
                conn = await self._connect(key, timeouts.get("connect"), request)
                exchange = await self._exchange(conn, request, content, timeouts)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                # a kept-alive connection the provider closed as it was reused (its idle timeout racing this
                # request): no byte of an answer came, so the request is sent once more, on a new connection
                if conn is None or not conn.reused or conn.reader.received:
                    raise
                conn.close()
                self.retried += 1
                conn = await self._connect(key, timeouts.get("connect"), request, fresh=True)
                exchange = await self._exchange(conn, request, content, timeouts)
        except BaseException:  # failed, timed out or cancelled mid-way: this connection's state is unknown
            if conn is not None:
                conn.close()
            self._slots.release()
            raise
        body = _Body(self, key, exchange)
        extensions = {"http_version": b"HTTP/1.1"}
        parsed = exchange.parsed
        return httpx.Response(parsed.status, headers=parsed.headers, stream=body, extensions=extensions)

    async def _exchange(
        self, conn: _Connection, request: httpx.Request, body: bytes, timeouts: dict[str, Any]
    ) -> _Exchange:
        """Send ``request`` (its ``body`` read) on ``conn``, read the answer's head."""
        sent = await self._send(conn, request, body, timeouts.get("write"))
        exchange = _Exchange(conn, request, timeouts.get("read"))
        exchange.broken = not sent
        await exchange.read_head()
        return exchange

    @staticmethod
    async def _send(conn: _Connection, request: httpx.Request, body: bytes, timeout: float | None) -> bool:
        """Send ``request``; False when the provider closed the connection mid-way but an answer came first
        (a 413 before it read the whole body): it is read. Raises httpx's write errors otherwise."""
        target = request.url.raw_path
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), target)]
        head += [name + b": " + value + b"\r\n" for name, value in request.headers.raw]
        head.append(b"\r\n")
        if "transfer-encoding" in request.headers:  # a body of unknown length (httpx said chunked): one chunk
            body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        try:
            if conn.writer.is_closing():  # reset since it was opened (uvloop's write would raise RuntimeError)
                raise conn.reader.exception() or ConnectionResetError("the provider closed the connection")
            conn.writer.write(b"".join(head) + body)
            async with asyncio.timeout(timeout):
                await conn.writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("timed out sending to the provider", request=request) from None
        except OSError as exc:
            if conn.reader.held:
                return False
            raise httpx.WriteError(f"sending to the provider failed: {exc}", request=request) from None
        return True

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
