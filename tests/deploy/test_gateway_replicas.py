"""Gateway replicas behind a ClusterIP Service, as a long-lived gRPC client sees them.

kube-proxy spreads connections, not calls: a gRPC client keeps one HTTP/2 connection, so it stays on
the gateway it first reached until that connection ends. The gateway closes each connection after
``server.grpc_max_connection_age_s`` (GOAWAY; calls under way finish), so the client reconnects and
lands on another replica in turn. Here harness.l4 stands for the Service in front of two real
gateways, and a plain ``grpc`` channel (pick_first, as most clients) sends ChatCompletion calls.
"""

from __future__ import annotations

import time

import grpc

from ferryman.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from harness.fake_provider import FakeProvider
from harness.gateway import CLIENT_KEY, GatewayThread, gateway_config
from harness.l4 import RoundRobinProxy

REBALANCED_WITHIN_S = 20.0


def served(gateway: GatewayThread) -> float:
    labels = {"method": "ChatCompletion", "code": "OK"}
    return gateway.gateway.metrics.registry.get_sample_value("ferryman_gateway_grpc_requests_total", labels) or 0.0


def test_a_long_lived_grpc_client_reaches_every_gateway_behind_the_service() -> None:
    with FakeProvider(reply="An answer.", name="gateway-replicas") as fake:
        config = gateway_config(
            {"strong-openai": fake, "weak-openai": fake},
            strong=("strong-openai",),
            weak=("weak-openai",),
            server={"grpc_max_connection_age_s": 1.0},
        )
        with (
            GatewayThread(config) as first,
            GatewayThread(config) as second,
            RoundRobinProxy([first.grpc_target, second.grpc_target]) as service,
        ):
            channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            request = gateway_pb2.ChatCompletionRequest(
                model="weak-openai", messages=[gateway_pb2.ChatMessage(role="user", content="hi")]
            )
            started, calls = time.monotonic(), 0
            while not (served(first) and served(second)):
                waited = time.monotonic() - started
                assert waited < REBALANCED_WITHIN_S, (
                    f"{calls} calls in {waited:.0f} s all reached one gateway "
                    f"({served(first):.0f} / {served(second):.0f}; {service.connections} connection(s))"
                )
                stub.ChatCompletion(request, metadata=[("authorization", f"Bearer {CLIENT_KEY}")], timeout=10)
                calls += 1
                time.sleep(0.05)
            channel.close()
    print(f"{calls} calls, {service.connections} connections: {served(first):.0f} / {served(second):.0f}")
