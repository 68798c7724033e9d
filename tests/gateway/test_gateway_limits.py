"""Bad input and slow clients get clear 4xx answers and hold nothing (issue #11, defects 4-7).

Raw sockets and httpx where a real client cannot misbehave enough (headers, stalls), the openai
SDK and gRPC otherwise; one validator (gateway.validation) behind both transports. Every case
is a clean error: an OpenAI-shaped 4xx (408, 413, 431, 400) or INVALID_ARGUMENT /
RESOURCE_EXHAUSTED, never a 500, INTERNAL or UNKNOWN, and no provider is called.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time

import grpc
import httpx
import pytest
from suite import AUTH, grpc_stub, user

from ferryman.gateway.v1 import gateway_pb2 as pb
from harness.fake_provider import huge
from harness.faults import CLEAN, Tally, classify_grpc, classify_http
from harness.gateway import CLIENT_KEY, GatewayThread, gateway_config

GROUP = "bad input"
HEADERS = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
GOOD = {"model": "weak-openai", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gw(_fake_servers):
    config = gateway_config(
        _fake_servers,
        model_overrides={"weak-openai": {"max_tokens_cap": 4096}, "weak-anthropic": {"max_tokens_cap": 2048}},
        limits={"header_timeout_s": 1.0, "body_timeout_s": 1.0, "write_timeout_s": 1.0},
    )
    with GatewayThread(config) as g:
        yield g


CALLS_PROVIDERS = {"test_a_client_that_never_reads_its_stream_is_cut_off", "test_oversized_headers_are_431"}


@pytest.fixture(autouse=True)
def _no_provider_calls(_fake_servers, request):
    for fake in _fake_servers.values():
        fake.reset()
    yield
    if request.node.name not in CALLS_PROVIDERS:
        assert sum(f.requests for f in _fake_servers.values()) == 0, "a bad request reached a provider"


def row(table, fault: str, via: str, tally: Tally, expected: str) -> None:
    table.add(GROUP, fault, via, tally, expected)
    assert tally.lost == 0, tally.lost_examples
    assert tally.clean_error == tally.sent


def _post(gw, body: bytes, headers: dict[str, str] | None = None) -> tuple[str, str, httpx.Response]:
    r = httpx.post(gw.http_url + "/v1/chat/completions", content=body, headers=headers or HEADERS, timeout=20)
    outcome, detail = classify_http(r.status_code, r.headers, r.content)
    return outcome, detail, r


def _raw(gw, data: bytes, *, wait_s: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection, read until the gateway closes it (or ``wait_s``)."""
    with socket.create_connection(("127.0.0.1", gw.running.http_port)) as s:
        s.sendall(data)
        s.settimeout(wait_s)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _split(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_oversized_headers_are_431(gw, fault_table):
    """The issue: a 1 MB header and 2,000 headers were accepted."""
    cases = {
        "one 1 MB header": {"x-big": "a" * 1_000_000},
        "2,000 headers": {f"x-h{i}": "v" for i in range(2000)},
        "headers just over 16 KiB": {f"x-h{i}": "v" * 200 for i in range(90)},
    }
    for name, extra in cases.items():
        tally = Tally()
        outcome, detail, r = _post(gw, json.dumps(GOOD).encode(), HEADERS | extra)
        tally.add(outcome, detail)
        assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large", name
        row(fault_table, name, "HTTP", tally, "431 `headers_too_large`, connection closed")
    assert _post(gw, json.dumps(GOOD).encode(), HEADERS | {"x-ok": "v" * 8000})[2].status_code == 200


def test_headers_that_never_end_are_408(gw, fault_table):
    started = time.monotonic()
    raw = _raw(gw, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: ")
    status, body = _split(raw)
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert 0.9 < time.monotonic() - started < 3
    tally = Tally()
    tally.add(*classify_http(status, {}, body))
    row(fault_table, "headers never finished (slowloris)", "HTTP", tally, "408 after limits.header_timeout_s")


def test_a_short_body_is_408_not_a_wait_forever(gw, fault_table):
    """The issue: a short body with a larger Content-Length waited forever."""
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n"
    head += "content-type: application/json\r\ncontent-length: 100\r\n\r\n"
    started = time.monotonic()
    status, body = _split(_raw(gw, head.encode() + b'{"model":'))
    assert status == 408 and 0.9 < time.monotonic() - started < 3
    tally = Tally()
    tally.add(*classify_http(status, {}, body))
    row(fault_table, "body shorter than its Content-Length", "HTTP", tally, "408 after limits.body_timeout_s")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stalled_connections_are_closed(gw, fault_table):
    """The issue: 1,200 connections that sent nothing all stayed open (open files 25 → 1,226)."""
    before = _open_fds()
    socks = [socket.create_connection(("127.0.0.1", gw.running.http_port)) for _ in range(300)]
    time.sleep(1.5)  # limits.header_timeout_s = 1
    closed, tally = 0, Tally()
    for s in socks:
        s.settimeout(2)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        closed += 1  # recv returned b"": the gateway closed it
        tally.add(*classify_http(*_split(data)[:1], {}, _split(data)[1]))
        s.close()
    time.sleep(0.2)
    after = _open_fds()
    print(f"\n300 silent connections: {closed} closed by the gateway; open files {before} → {after}")
    assert closed == 300 and after <= before + 5
    row(fault_table, "300 connections that send nothing", "HTTP", tally, "408, closed after header_timeout_s")


def test_a_client_that_never_reads_its_stream_is_cut_off(gw, _fake_servers, fault_table):
    """A client that stops reading holds the provider stream only until limits.write_timeout_s."""
    _fake_servers["weak-openai"].reset(default=huge(7_000_000, chunks=700))
    body = json.dumps(GOOD | {"stream": True}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n"
    head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", gw.running.http_port))
        s.sendall(head.encode() + body)
        server = gw.running.http_server
        deadline = time.monotonic() + 15
        while server.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        while server.in_flight > 0:  # the write stalls, then the gateway aborts the connection
            assert time.monotonic() < deadline, "the stalled stream was never cut off"
            time.sleep(0.1)
    tally = Tally()
    tally.add(CLEAN)  # the client stopped reading: a cut connection is the expected answer
    row(fault_table, "client stops reading a stream", "HTTP", tally, "connection aborted after write_timeout_s")


BAD_JSON = {
    "JSON nested 10,000 deep": b'{"model":"weak-openai","messages":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "lone surrogate \\ud800 in content": b'{"model":"weak-openai","messages":[{"role":"user","content":"a\\ud800b"}]}',
    "temperature NaN": b'{"model":"weak-openai","messages":[{"role":"user","content":"a"}],"temperature":NaN}',
    "top_p Infinity": b'{"model":"weak-openai","messages":[{"role":"user","content":"a"}],"top_p":Infinity}',
    "max_tokens 0": json.dumps(GOOD | {"max_tokens": 0}).encode(),
    "max_tokens -1": json.dumps(GOOD | {"max_tokens": -1}).encode(),
    "max_tokens over the model's cap": json.dumps(GOOD | {"max_tokens": 4097}).encode(),
    "max_tokens over a routed request's cap": json.dumps(
        GOOD | {"model": "router-mf-0.5", "max_tokens": 2049}
    ).encode(),
    "role 'banana'": json.dumps({"model": "weak-openai", "messages": [{"role": "banana", "content": "a"}]}).encode(),
    "10 stop sequences": json.dumps(GOOD | {"stop": [f"s{i}" for i in range(10)]}).encode(),
    "30,000 messages in 1 MB": json.dumps(
        {"model": "weak-openai", "messages": [{"role": "user", "content": "x"}] * 30_000}
    ).encode(),
}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_bad_json_values_are_4xx(gw, fault_table, case):
    """The issue: 10k nesting and a lone surrogate were HTTP 500s; max_tokens and messages had no bound."""
    outcome, detail, r = _post(gw, BAD_JSON[case])
    assert r.status_code in (400, 413), r.text
    tally = Tally()
    tally.add(outcome, detail)
    param = r.json()["error"]["param"]
    row(fault_table, case, "HTTP", tally, f"{r.status_code}" + (f" (param `{param}`)" if param else ""))


def _grpc_cases() -> dict[str, pb.ChatCompletionRequest]:
    hi = user("hi")
    return {
        "temperature NaN": pb.ChatCompletionRequest(model="weak-openai", messages=hi, temperature=math.nan),
        "top_p infinite": pb.ChatCompletionRequest(model="weak-openai", messages=hi, top_p=math.inf),
        "max_tokens -1": pb.ChatCompletionRequest(model="weak-openai", messages=hi, max_tokens=-1),
        "max_tokens 0": pb.ChatCompletionRequest(model="weak-openai", messages=hi, max_tokens=0),
        "max_tokens over the model's cap": pb.ChatCompletionRequest(model="weak-openai", messages=hi, max_tokens=5000),
        "role 'banana'": pb.ChatCompletionRequest(
            model="weak-openai", messages=[pb.ChatMessage(role="banana", content="hi")]
        ),
        "3,000 messages": pb.ChatCompletionRequest(model="weak-openai", messages=user("x") * 3000),
        "routing threshold NaN": pb.ChatCompletionRequest(
            model="router-mf-0.5", messages=hi, routing=pb.RoutingOptions(threshold=math.nan)
        ),
    }


def test_grpc_gets_the_same_validation(gw, fault_table):
    """The issue: over gRPC, NaN/inf were INTERNAL and max_tokens -1 / role 'banana' reached providers."""
    channel, stub = grpc_stub(gw)
    with channel:
        for name, request in _grpc_cases().items():
            for stream in (False, True):
                tally = Tally()
                try:
                    if stream:  # the two request messages have the same fields and numbers
                        streamed = pb.StreamChatCompletionRequest.FromString(request.SerializeToString())
                        list(stub.StreamChatCompletion(streamed, metadata=AUTH, timeout=10))
                    else:
                        stub.ChatCompletion(request, metadata=AUTH, timeout=10)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                tally.add(classify_grpc(code), code.name)
                assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), (name, code)
                if not stream:
                    row(fault_table, name, "gRPC", tally, code.name)


def test_grpc_undecodable_requests_are_invalid_argument(gw, fault_table):
    """Bad UTF-8 in a string field was grpc's UNKNOWN with the parser's message."""
    good = pb.ChatCompletionRequest(model="weak-openai", messages=user("abc")).SerializeToString()
    cases = {"invalid UTF-8 in content": good.replace(b"abc", b"a\xffc"), "corrupt message": b"\xff\xff\xff"}
    with grpc.insecure_channel(gw.grpc_target) as channel:
        call = channel.unary_unary(
            "/ferryman.gateway.v1.GatewayService/ChatCompletion",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        for name, payload in cases.items():
            with pytest.raises(grpc.RpcError) as info:
                call(payload, metadata=AUTH, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
            tally = Tally()
            tally.add(classify_grpc(info.value.code()))
            row(fault_table, name, "gRPC", tally, "INVALID_ARGUMENT")


def test_grpc_oversized_metadata_is_refused(gw):
    channel, stub = grpc_stub(gw)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.ChatCompletion(
            pb.ChatCompletionRequest(model="weak-openai", messages=user("hi")),
            metadata=(*AUTH, ("x-big", "a" * 40_000)),
            timeout=10,
        )
    assert info.value.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), info.value.code()
