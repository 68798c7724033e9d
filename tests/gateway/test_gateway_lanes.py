"""The provider connection pools against a real fake provider on loopback: the gateway's lanes
(gateway.providers.lanes) and the learning worker's lean transport (gateway.providers.lean), which
must behave alike on the same faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import _model
from gateway.providers import (
    MalformedAnswerError,
    ProviderClientError,
    ProviderPool,
    TransientProviderError,
)
from gateway.providers.lanes import LaneTransport
from gateway.providers.lean import LeanTransport
from gateway.types import ChatRequest, Message, StreamDelta
from harness.fake_provider import DISCONNECT, HTML, MALFORMED, FakeProvider, huge, slow, status
from harness.processes import free_port

PRICES = {"price_in_per_mtok": 1.0, "price_out_per_mtok": 1.0}

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


KINDS = ["lanes", "lean"]
#: The learning worker runs on uvloop (gateway.loop): the lean transport's stream tests run on both loops.
LOOPS = ["asyncio", "uvloop"]


def _run(main: Coroutine[Any, Any, None], loop: str) -> None:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main)
    else:
        asyncio.run(main)


def _client(
    max_connections: int, pool_timeout_s: float = 5.0, kind: str = "lanes"
) -> tuple[httpx.AsyncClient, LaneTransport | LeanTransport]:
    transport = LaneTransport(max_connections) if kind == "lanes" else LeanTransport(max_connections)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, pool=pool_timeout_s)), transport


def _connections(transport: LaneTransport | LeanTransport) -> int:
    return transport.lanes if isinstance(transport, LaneTransport) else transport.opened


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_requests_share_at_most_max_connections(fakes: dict[str, FakeProvider], kind: str) -> None:
    fake = fakes["strong-openai"]
    fake.reset(default=slow(0.05))

    async def main() -> list[int]:
        client, transport = _client(4, kind=kind)
        async with client:
            url = fake.base_url + "/chat/completions"
            first = await asyncio.gather(*(client.post(url, json=BODY) for _ in range(20)))
            second = await asyncio.gather(*(client.post(url, json=BODY) for _ in range(8)))
            assert _connections(transport) == 4
            return [r.status_code for r in first + second]

    codes = asyncio.run(main())
    assert codes == [200] * 28 and fake.requests == 28
    assert len(fake.peers) == 4  # 28 requests over 4 kept-alive connections


def test_lanes_share_one_tls_context(fakes: dict[str, FakeProvider], monkeypatch: pytest.MonkeyPatch) -> None:
    """A new lane must not build a TLS context of its own (loading the CA bundle: ~16 ms of CPU each)."""
    fake = fakes["strong-openai"]
    fake.reset(default=slow(0.05))
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)

    async def main() -> int:
        client, transport = _client(6)
        async with client:
            url = fake.base_url + "/chat/completions"
            codes = [r.status_code for r in await asyncio.gather(*(client.post(url, json=BODY) for _ in range(6)))]
            assert codes == [200] * 6
            return _connections(transport)

    assert asyncio.run(main()) == 6
    assert len(made) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_waiting_for_a_lane_is_bounded_by_the_pool_timeout(fakes: dict[str, FakeProvider], kind: str) -> None:
    fake = fakes["strong-openai"]
    fake.reset(default=slow(0.5))

    async def main() -> None:
        client, _ = _client(1, pool_timeout_s=0.1, kind=kind)
        async with client:
            url = fake.base_url + "/chat/completions"
            busy = asyncio.create_task(client.post(url, json=BODY))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await client.post(url, json=BODY)
            assert (await busy).status_code == 200

    asyncio.run(main())
    assert fake.requests == 1


@pytest.mark.parametrize("kind", KINDS)
def test_lanes_come_back_after_cancellation_errors_and_abandoned_streams(
    fakes: dict[str, FakeProvider], kind: str
) -> None:
    fake = fakes["strong-openai"]

    async def main() -> None:
        client, transport = _client(1, pool_timeout_s=1.0, kind=kind)
        async with client:
            url = fake.base_url + "/chat/completions"
            fake.program(slow(1.0))
            with pytest.raises(TimeoutError):  # cancelled while waiting for the answer
                await asyncio.wait_for(client.post(url, json=BODY), 0.1)
            async with client.stream("POST", url, json=BODY | {"stream": True}) as response:
                async for _ in response.aiter_lines():
                    break  # abandoned after the first line
            fake.program(DISCONNECT)
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream("POST", url, json=BODY | {"stream": True}) as response:
                    await response.aread()
            fake.program(slow(0.2))
            with pytest.raises(httpx.ReadTimeout):
                await client.post(url, json=BODY, timeout=httpx.Timeout(0.05, pool=1.0))
            # the single lane is free again each time: this would otherwise wait 1 s and raise PoolTimeout
            assert (await client.post(url, json=BODY)).status_code == 200
            # a lane reconnects inside its transport; the lean transport closes a connection left mid-answer
            assert transport.lanes == 1 if isinstance(transport, LaneTransport) else transport.opened >= 1

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (status(500), TransientProviderError),
        (status(429, retry_after="1"), TransientProviderError),
        (status(400), ProviderClientError),
        (HTML, TransientProviderError),
        (MALFORMED, MalformedAnswerError),
        (huge(300_000), MalformedAnswerError),
    ],
)
def test_provider_faults_map_the_same_on_both_transports(
    fakes: dict[str, FakeProvider], kind: str, fault: Any, error: type[Exception]
) -> None:
    fake = fakes["strong-openai"]
    cfg = _model("m", {"provider": "openai", "base_url": fake.base_url, "api_key_env": "K"} | PRICES)

    async def main() -> list[str]:
        pool = ProviderPool({"m": cfg}, {"K": "key"}, max_response_bytes=200_000, lean=kind == "lean")
        request = ChatRequest(model="m", messages=(Message("user", "hi"),))
        try:
            fake.program(fault)
            with pytest.raises(error):
                await pool["m"].complete(request)
            fake.program(fault)
            # streamed: a fault in a stream may show as the stream's end (still a provider fault)
            with pytest.raises(error if error is ProviderClientError else TransientProviderError):
                async for _ in pool["m"].stream(request):
                    pass
            # and the connection pool still serves, whole and streamed
            whole = (await pool["m"].complete(request)).content
            streamed = "".join([e.text async for e in pool["m"].stream(request) if isinstance(e, StreamDelta)])
            return [whole, streamed]
        finally:
            await pool.aclose()

    whole, streamed = asyncio.run(main())
    assert whole == streamed and whole


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_lean_pool_sends_what_the_lanes_pool_sends_without_httpx_client_layer(
    fakes: dict[str, FakeProvider], provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The learning worker's pool (lean) hands its requests to the lean transport directly, skipping httpx's
    client layer (a quarter of the worker's CPU); the provider still gets the same request: headers (the
    client's defaults, then auth), body, path. Was: through ``AsyncClient.stream``."""
    fake = fakes[f"strong-{provider}"]
    cfg = _model("m", {"provider": provider, "base_url": fake.base_url, "api_key_env": "K"} | PRICES)
    request = ChatRequest(model="m", messages=(Message("user", "hi"),), max_tokens=20)

    async def seen(lean: bool) -> tuple[dict[str, str], dict[str, Any] | None, str]:
        pool = ProviderPool({"m": cfg}, {"K": "key"}, lean=lean)
        try:
            answer = await pool["m"].complete(request)
        finally:
            await pool.aclose()
        return dict(fake.last_headers), fake.last_body, answer.content

    headers, body, answer = asyncio.run(seen(lean=False))

    async def not_used(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the lean pool went through httpx.AsyncClient.send")

    monkeypatch.setattr(httpx.AsyncClient, "send", not_used)
    lean_headers, lean_body, lean_answer = asyncio.run(seen(lean=True))
    assert lean_body == body and lean_answer == answer
    # the same header names and values (the Host header names the same server)
    assert lean_headers == headers, (lean_headers, headers)
    assert ("authorization" if provider == "openai" else "x-api-key") in lean_headers
    with pytest.raises(AssertionError, match=r"AsyncClient\.send"):
        asyncio.run(seen(lean=False))  # the check above bites: the lanes pool does go through it


def test_the_lean_pool_finds_its_transport_without_httpx_private_attributes(
    fakes: dict[str, FakeProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adapter takes the lean transport from the client the pool's factory built (``LeanClient.lean``), not
    from httpx's private ``AsyncClient._transport``: with that attribute hidden from all code outside httpx (as
    a release that renames it would), the lean pool still sends to the transport directly. Was: it read
    ``_transport`` and, finding nothing, went back through httpx's client layer without a word."""
    fake = fakes["strong-openai"]
    cfg = _model("m", {"provider": "openai", "base_url": fake.base_url, "api_key_env": "K"} | PRICES)

    def get(client: httpx.AsyncClient) -> Any:
        if not str(sys._getframe(1).f_globals.get("__name__", "")).startswith("httpx"):
            raise AttributeError("_transport")
        return client.__dict__["hidden_transport"]

    def put(client: httpx.AsyncClient, transport: Any) -> None:
        client.__dict__["hidden_transport"] = transport

    async def not_used(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the lean pool went through httpx.AsyncClient.send")

    monkeypatch.setattr(httpx.AsyncClient, "_transport", property(get, put), raising=False)
    monkeypatch.setattr(httpx.AsyncClient, "send", not_used)

    async def main() -> str:
        pool = ProviderPool({"m": cfg}, {"K": "key"}, lean=True)
        try:
            answer = await pool["m"].complete(ChatRequest(model="m", messages=(Message("user", "hi"),)))
        finally:
            await pool.aclose()
        return answer.content

    assert asyncio.run(main())


def test_the_lean_pool_keeps_the_read_timeout(fakes: dict[str, FakeProvider]) -> None:
    """The model's read timeout travels to the lean transport with the request (httpx's client set it before)."""
    fake = fakes["strong-openai"]
    cfg = _model(
        "m", {"provider": "openai", "base_url": fake.base_url, "api_key_env": "K", "read_timeout_s": 0.2} | PRICES
    )

    async def main() -> float:
        pool = ProviderPool({"m": cfg}, {"K": "key"}, lean=True)
        fake.program(slow(3.0))
        started = asyncio.get_running_loop().time()
        try:
            with pytest.raises(TransientProviderError, match="timed out"):
                await pool["m"].complete(ChatRequest(model="m", messages=(Message("user", "hi"),)))
        finally:
            await pool.aclose()
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(main()) < 2.0


def test_lean_transport_connection_ends() -> None:
    """A server that closes kept-alive connections without saying so, a body delimited by the end of the
    connection, a chunked body, and nothing listening."""
    replies = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",  # then closes: not reused
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",  # no length: until close
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ]

    async def main() -> None:
        served = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(v for k, v in _headers(head) if k == b"content-length"))
            await reader.readexactly(length)
            writer.write(replies[served])
            served += 1
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client, transport = _client(2, kind="lean")
        async with server, client:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            texts = []
            for _ in replies:
                response = await client.post(url, json=BODY)
                assert response.status_code == 200
                texts.append(response.text)
                await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
            assert texts == ["first", "until the end", "abcde"]
            assert isinstance(transport, LeanTransport) and transport.opened == 3
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://127.0.0.1:{free_port()}/", json=BODY)

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_https_with_a_verified_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Both transports speak TLS and verify the provider's certificate (trusted here through SSL_CERT_FILE,
    which httpx's default context reads); an untrusted one fails to connect."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    argv += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(argv, check=True, capture_output=True)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def main(trusted: bool) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    await reader.readexactly(int(dict(_headers(head))[b"content-length"]))
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        client, transport = _client(2, kind=kind)
        async with server, client:
            url = f"https://127.0.0.1:{port}/v1/chat/completions"
            if not trusted:
                with pytest.raises(httpx.ConnectError):
                    await client.post(url, json=BODY)
                return
            texts = [(await client.post(url, json=BODY)).text for _ in range(3)]
            assert texts == ["ok"] * 3 and _connections(transport) == 1

    asyncio.run(main(trusted=False))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    asyncio.run(main(trusted=True))


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    lines = head.split(b"\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(b":") for line in lines if line)]


Script = list[list[bytes | float]]


async def _scripted_server(*scripts: Script) -> tuple[asyncio.Server, int]:
    """A server answering the n-th request on its i-th connection with ``scripts[i][n]`` (the last script
    for later connections): byte strings written as they come, a float a pause, ``b""`` closes."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        script = scripts[min(connections, len(scripts) - 1)]
        connections += 1
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            for steps in script:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(dict(_headers(head))[b"content-length"]))
                for step in steps:
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    elif step == b"":
                        writer.close()
                        return
                    else:
                        writer.write(step)
                        await writer.drain()
            await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("kind", KINDS)
def test_informational_answers_before_the_answer_are_skipped(kind: str) -> None:
    """1xx answers (103 Early Hints, an unasked 100 Continue) come before the real one: it is the real one
    the caller gets, and the connection stays usable. Was (lean): the 103 taken for the answer."""
    script: list[list[bytes | float]] = [
        [
            b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n",
            0.02,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ],
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-Real: yes\r\nContent-Length: 3\r\n\r\nyes"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthird"],
    ]

    async def main() -> None:
        server, port = await _scripted_server(script)
        client, transport = _client(1, kind=kind)
        async with server, client:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            answers = [await client.post(url, json=BODY) for _ in range(3)]
            assert [(r.status_code, r.text) for r in answers] == [(200, "ok"), (201, "yes"), (200, "third")]
            assert answers[1].headers.get("x-real") == "yes" and "link" not in answers[0].headers
            assert _connections(transport) == 1

    asyncio.run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_lean_transport_never_reuses_a_connection_with_bytes_past_the_answer(loop: str) -> None:
    """Bytes after a complete answer (a stray second answer or garbage in the same write, or a 408 sent on
    an idle connection before the server closes it) are not the next request's answer: that connection is
    dropped and the next request gets its own answer on a new one. Was: reused, and the next request
    read the stale bytes as its answer."""
    stray = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    timeout = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    first: Script = [[ok + stray]]
    garbage: Script = [[ok + b"\x00 not HTTP\r\n\r\n"]]
    second: Script = [[ok], [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext", 0.05, timeout]]
    third: Script = [[ok]]

    async def main() -> None:
        server, port = await _scripted_server(first, garbage, second, third)
        client, transport = _client(1, kind="lean")
        async with server, client:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            texts = [(await client.post(url, json=BODY)).text for _ in range(4)]
            # the stray answer is neither in the first body nor the second request's answer; garbage after
            # the second answer does not fail it; the third connection answers twice
            assert texts == ["ok", "ok", "ok", "next"]
            await asyncio.sleep(0.2)  # the 408 arrives while the third connection is idle
            last = await client.post(url, json=BODY)
            assert (last.status_code, last.text) == (200, "ok")
            assert isinstance(transport, LeanTransport) and transport.opened == 4

    _run(main(), loop)


@pytest.mark.parametrize("kind", KINDS)
def test_an_endless_head_is_refused(kind: str) -> None:
    """Headers past a bound (here 400 kB of them, never ending) are a protocol error, not memory that grows
    while the server keeps sending: httpx's own parser refuses past 16 kB. Was (lean): no bound."""
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(400))
    script: Script = [[b"HTTP/1.1 200 OK\r\n" + pad + b"Content-Length: 2\r\n\r\nok"]]

    async def main() -> None:
        server, port = await _scripted_server(script)
        client, _ = _client(1, kind=kind)
        async with server, client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY)

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_a_streamed_request_body_is_sent_chunked(fakes: dict[str, FakeProvider], kind: str) -> None:
    """A request body of unknown length (httpx sends it with Transfer-Encoding: chunked) reaches the server
    whole. Was (lean): sent raw under that header, so the server read a malformed request."""
    fake = fakes["strong-openai"]

    async def body() -> AsyncIterator[bytes]:
        text = json.dumps(BODY).encode()
        yield text[:10]
        yield text[10:]

    async def main() -> None:
        client, _ = _client(1, kind=kind)
        async with client:
            url = fake.base_url + "/chat/completions"
            streamed = await client.post(url, content=body(), headers={"content-type": "application/json"})
            assert streamed.status_code == 200, streamed.text
            assert (await client.post(url, json=BODY)).status_code == 200  # the connection still in step

    asyncio.run(main())


@pytest.mark.parametrize("cls", [LaneTransport, LeanTransport])
def test_max_connections_must_be_positive(cls: type[LaneTransport] | type[LeanTransport]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        cls(0)


@pytest.mark.parametrize("loop", LOOPS)
def test_an_early_answer_to_a_body_not_read_is_reported(loop: str) -> None:
    """A provider that answers before reading the whole request body (413 Payload Too Large) and closes:
    the caller gets the 413, not a write error. Was (lean): httpx.WriteError (the reset on writing),
    though the answer had arrived. (httpx's own transport, the lanes, raises httpx.ReadError here: it
    reads the socket after the reset.)"""
    answer = b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big!"

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()  # the body unread: the client's writes meet a reset

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client, _ = _client(1, kind="lean")
        async with server, client:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            response = await client.post(url, content=b"x" * 32_000_000)
            assert (response.status_code, response.text) == (413, "too big!")

    _run(main(), loop)


async def _closing_server(close_on: int, reset: bool, answers: list[int]) -> tuple[asyncio.Server, int]:
    """A server that answers "ok" on each connection until its ``close_on``-th request, on which it closes
    the connection without a byte of answer (``reset``: abortively, RST), as one whose keep-alive timer
    fires just as a request arrives; ``answers`` counts the requests each connection got."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answers.append(0)
        mine = len(answers) - 1
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(dict(_headers(head))[b"content-length"]))
                answers[mine] += 1
                if answers[mine] == close_on:
                    if reset:
                        writer.get_extra_info("socket").setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_lean_transport_sends_again_once_when_a_reused_connection_was_closed(reset: bool, loop: str) -> None:
    """The keep-alive race: the provider closes an idle connection just as it is reused (its keep-alive
    timeout), so the request meets end of file or a reset before any byte of an answer. Like most HTTP
    clients, the lean transport then sends it once more on a new connection (docs/gateway.md). Was: the
    request failed (httpx.RemoteProtocolError or httpx.ReadError)."""

    async def main() -> None:
        answers: list[int] = []
        server, port = await _closing_server(2, reset, answers)
        client, transport = _client(1, kind="lean")
        async with server, client:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            texts = [(await client.post(url, json=BODY)).text for _ in range(3)]
            assert texts == ["ok"] * 3
            # each connection answers once, then closes as its second request comes: sent again each time
            assert isinstance(transport, LeanTransport) and (transport.opened, transport.retried) == (3, 2)
            assert answers == [2, 2, 1]

    _run(main(), loop)


def test_lean_transport_never_sends_again_on_a_new_connection_or_after_an_answer_began() -> None:
    """No second try where the failure is not the keep-alive race: a new connection closed without an
    answer (the provider is failing, not idle), or a reused one closed mid-answer."""

    async def main() -> None:
        answers: list[int] = []
        server, port = await _closing_server(1, False, answers)
        client, transport = _client(1, kind="lean")
        async with server, client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY)
            assert answers == [1] and isinstance(transport, LeanTransport) and transport.retried == 0
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        server, port = await _scripted_server([[ok], [b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf", b""]])
        client, transport = _client(1, kind="lean")
        async with server, client:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            assert (await client.post(url, json=BODY)).text == "ok"
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(url, json=BODY)
            assert isinstance(transport, LeanTransport) and (transport.opened, transport.retried) == (1, 0)

    asyncio.run(main())


def test_lean_transport_refuses_head_requests() -> None:
    """A HEAD answer announces a body that never comes: refused at once with a clear error, not waited for
    until the read timeout (the provider adapters never send HEAD)."""

    async def main() -> None:
        server, port = await _scripted_server([[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]])
        client, _ = _client(1, kind="lean")
        async with server, client:
            with pytest.raises(NotImplementedError, match="HEAD"):
                await client.head(f"http://127.0.0.1:{port}/v1/models")
            # the slot came back
            assert (await client.post(f"http://127.0.0.1:{port}/v1/x", json=BODY)).status_code == 200

    asyncio.run(asyncio.wait_for(main(), 10))


@pytest.mark.parametrize("loop", LOOPS)
def test_lean_transport_reads_a_streamed_body_before_taking_a_connection(loop: str) -> None:
    """A streamed request body (read whole before sending) that takes a while to produce: a kept-alive
    connection the provider resets meanwhile is not written to; the request goes on a new connection, with
    the whole body. Was: the body was read after the connection was taken, so the reset came in between
    and, on uvloop (the learning worker's loop), writing raised a bare RuntimeError (the handle is closed)."""
    bodies: list[bytes] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                head = await reader.readuntil(b"\r\n\r\n")
                if b"chunked" in head.lower():
                    bodies.append(await reader.readuntil(b"0\r\n\r\n"))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                await asyncio.sleep(0.1)  # then reset, as the body of the next request is being produced
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b"first half, "
            await asyncio.sleep(0.4)
            yield b"second half"

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client, transport = _client(1, kind="lean")
        async with server, client:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            assert (await client.post(url, json=BODY)).text == "ok"
            assert (await client.post(url, content=slow_body())).text == "ok"
            assert isinstance(transport, LeanTransport) and transport.opened == 2

    _run(main(), loop)
    assert bodies == [b"17\r\nfirst half, second half\r\n0\r\n\r\n"]


@pytest.mark.parametrize("loop", LOOPS)
def test_lean_transport_maps_a_reset_before_the_request_is_written(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new connection the provider resets before the request is written (here: the loop turns between
    connecting and writing, as under load) fails as httpx.WriteError. Was, on uvloop: a bare RuntimeError
    (writing to a closed handle), which no provider adapter maps."""
    connect = LeanTransport._connect

    async def connect_then_turn(self: LeanTransport, *args: Any, **kwargs: Any) -> Any:
        conn = await connect(self, *args, **kwargs)
        await asyncio.sleep(0.2)
        return conn

    monkeypatch.setattr(LeanTransport, "_connect", connect_then_turn)

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client, transport = _client(1, kind="lean")
        async with server, client:
            with pytest.raises(httpx.WriteError):
                await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY)
            assert isinstance(transport, LeanTransport) and transport.retried == 0

    _run(main(), loop)
