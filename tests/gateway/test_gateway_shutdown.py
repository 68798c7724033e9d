"""SIGTERM under load: every request the gateway accepted completes or gets a clean error (issue #11, defect 3).

A real ``ferryman gateway`` process. The issue measured, on SIGTERM, 20 of 20 HTTP streams
longer than the drain cut without an error event and 16 of 35 requests accepted but not yet
read dropped. Here 35 whole requests and 20 long streams are written on their own connections
(so many are still unread by the gateway) and SIGTERM follows at once; then 10 gRPC calls.
Requests that fit in the drain complete; the rest get 503 ``shutting_down`` / an SSE error
event / UNAVAILABLE at the drain deadline.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time

import grpc
import yaml
from suite import AUTH, user

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from harness.fake_provider import slow, trickle
from harness.faults import ANSWERED, CLEAN, Tally, classify_grpc, classify_http
from harness.gateway import CLIENT_KEY, ENV, config_dict
from harness.processes import read_json, spawn, wait_for

DRAIN_S = 3.0
LONG_REPLY = " ".join(f"word{i}" for i in range(30))  # 30 chunks × 0.5 s: 15 s, far past the drain


def _request(body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {CLIENT_KEY}\r\n"
    head += f"content-type: application/json\r\ncontent-length: {len(data)}\r\nconnection: close\r\n\r\n"
    return head.encode() + data


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def _read_answer(sock: socket.socket) -> tuple[str, str]:
    """Read until the gateway closes the connection; classify what came back."""
    raw = b""
    try:
        while chunk := sock.recv(65536):
            raw += chunk
    except OSError as exc:
        return "lost", f"{type(exc).__name__} after {len(raw)} bytes"
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head:
        return "lost", "connection closed with no answer"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return classify_http(status, headers, body, stream="event-stream" in headers.get("content-type", ""))


def test_sigterm_under_load_loses_nothing(fakes, tmp_path, fault_table):
    fakes["weak-openai"].reset(default=slow(1.0))  # whole requests that fit in the drain ...
    fakes["weak-openai"].when("LONG", slow(10.0))  # ... and ones that do not
    fakes["strong-anthropic"].reset(default=trickle(0.5))
    fakes["strong-anthropic"].reply = LONG_REPLY
    config = config_dict(fakes, server={"drain_s": DRAIN_S})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    port_file = tmp_path / "ports.json"
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(path), "--port-file", str(port_file)]
    gateway = spawn("gateway", argv, tmp_path, ENV | {"TEST_CLIENT_KEYS": CLIENT_KEY})
    try:
        ports = wait_for("gateway", lambda: read_json(port_file), 60, gateway.proc)
        whole = [
            _request({"model": "weak-openai", "messages": [{"role": "user", "content": "LONG" if i % 2 else "short"}]})
            for i in range(35)
        ]
        streams = [
            _request({"model": "strong-anthropic", "messages": [{"role": "user", "content": "s"}], "stream": True})
        ]
        streams *= 20
        # gRPC calls started first, so that they are under way when SIGTERM comes
        grpc_results: list[tuple[str, str]] = []

        def grpc_calls() -> None:
            with grpc.insecure_channel(f"127.0.0.1:{ports['grpc_port']}") as channel:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                calls = [
                    stub.ChatCompletion.future(
                        pb.ChatCompletionRequest(model="weak-openai", messages=user("LONG" if i % 2 else "short")),
                        metadata=AUTH,
                        timeout=30,
                    )
                    for i in range(5)
                ]
                stream = pb.StreamChatCompletionRequest(model="strong-anthropic", messages=user("s"))
                streamed = [stub.StreamChatCompletion(stream, metadata=AUTH, timeout=30) for _ in range(5)]
                for call in calls:
                    try:
                        call.result()
                        grpc_results.append((ANSWERED, "OK"))
                    except grpc.RpcError as exc:
                        grpc_results.append((classify_grpc(exc.code()), f"{exc.code().name} {exc.details()}"))
                for s in streamed:
                    try:
                        events = list(s)
                        grpc_results.append((ANSWERED if events[-1].HasField("summary") else "lost", "stream"))
                    except grpc.RpcError as exc:
                        grpc_results.append((classify_grpc(exc.code()), f"{exc.code().name} {exc.details()}"))

        grpc_thread = threading.Thread(target=grpc_calls)
        grpc_thread.start()
        socks = []
        for data in whole + streams:
            s = socket.create_connection(("127.0.0.1", ports["http_port"]))
            s.settimeout(30)
            s.sendall(data)
            socks.append(s)
        time.sleep(0.3)  # the gRPC calls and the first streams are under way; many requests are unread
        started = time.monotonic()
        gateway.signal(signal.SIGTERM)
        results = []
        for s in socks:
            results.append(_read_answer(s))
            s.close()
        grpc_thread.join(30)
        code = gateway.proc.wait(30)
        took = time.monotonic() - started
    finally:
        gateway.stop()
        fakes["strong-anthropic"].reply = "Answer from strong-anthropic."
    http_whole, http_streams = Tally(), Tally()
    for i, (outcome, detail) in enumerate(results):
        (http_whole if i < 35 else http_streams).add(outcome, detail)
    grpc_tally = Tally()
    for outcome, detail in grpc_results:
        grpc_tally.add(outcome, detail)
    print(f"\nSIGTERM → exit {code} in {took:.1f} s (drain {DRAIN_S} s)")
    for name, tally in (("35 whole", http_whole), ("20 streams", http_streams), ("10 gRPC", grpc_tally)):
        print(f"  {name}: {tally.counts()} {tally.lost_examples}")
    fault_table.add(
        "shutdown", "SIGTERM: 35 whole requests in flight", "HTTP", http_whole, "done, or 503 `shutting_down`"
    )
    fault_table.add(
        "shutdown", "SIGTERM: 20 streams longer than the drain", "HTTP", http_streams, "error event at the drain end"
    )
    fault_table.add("shutdown", "SIGTERM: 5 whole + 5 streamed calls", "gRPC", grpc_tally, "done, or UNAVAILABLE")
    assert code == 0 and took < DRAIN_S + 5
    assert (http_whole.lost, http_streams.lost, grpc_tally.lost) == (0, 0, 0)
    assert http_whole.sent == 35 and http_streams.sent == 20 and grpc_tally.sent == 10
    assert http_streams.clean_error == 20  # every stream outlived the drain: each got its error event
    # the 17 slow ones (10 s) cannot finish in the drain: 503 `shutting_down`; the 18 short ones (1 s) are
    # answered, or refused the same way when the loaded machine started them too late
    assert all(outcome == CLEAN for outcome, _ in results[1:35:2])
    assert http_whole.answered >= 1
    assert [o for o, _ in grpc_results[:5]][1::2] == [CLEAN, CLEAN]  # the slow whole calls: UNAVAILABLE
