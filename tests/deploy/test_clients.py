"""The Go, Node and Python clients, built from proto/ (``make clients``), against a live gateway + scorer.

Each client calls Route and ChatCompletion and prints both decisions; the printed Route decision
must equal the one the gateway gives the Python stubs for the same request, and the completion
must be the fake provider's answer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import grpc
import pytest

from ferryman.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from harness.cluster import CLIENT_KEY, LocalCluster

from .k8s import ROOT

PROMPT = "Prove that the square root of two is irrational, step by step."
MODEL = "ferryman-balanced"
LINE = re.compile(r"^(route|chat) (.*)$")
PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


@pytest.fixture(scope="module")
def built_clients() -> None:
    """`make clients`: buf generate (Go stubs), go build (offline, GOPATH mode), npm ci."""
    out = subprocess.run(["make", "-s", "clients"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def client_command(language: str, addr: str) -> list[str]:
    args = ["--addr", addr, "--model", MODEL, "--prompt", PROMPT]
    if language == "go":
        return [str(ROOT / "clients" / "go" / "bin" / "ferryman-client"), *[a.replace("--", "-", 1) for a in args]]
    if language == "node":
        node = shutil.which("node")
        assert node, "node is not installed"
        return [node, str(ROOT / "clients" / "node" / "client.mjs"), *args]
    return [sys.executable, str(ROOT / "clients" / "python" / "example.py"), *args]


def parse_output(stdout: str) -> dict[str, dict[str, str]]:
    """{"route": {...}, "chat": {...}} from the clients' key=value lines."""
    parsed: dict[str, dict[str, str]] = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            parsed[m.group(1)] = {k: v for k, v in PAIR.findall(m.group(2))}
    return parsed


def reference_decision(cluster: LocalCluster) -> gateway_pb2.RoutingDecision:
    with grpc.insecure_channel(cluster.gateway_procs[0].target) as channel:
        reply = gateway_pb2_grpc.GatewayServiceStub(channel).Route(
            gateway_pb2.RouteRequest(model=MODEL, messages=[gateway_pb2.ChatMessage(role="user", content=PROMPT)]),
            timeout=30,
            metadata=[("authorization", f"Bearer {CLIENT_KEY}")],
        )
    return reply.decision


def expected_fields(d: gateway_pb2.RoutingDecision) -> dict[str, str]:
    """What every client must print for decision ``d``."""
    return {
        "tier": gateway_pb2.Tier.Name(d.tier),
        "model": d.model,
        "router": d.router,
        "score": f"{d.score:.6f}",
        "threshold": f"{d.threshold:.6f}",
        "source": gateway_pb2.DecisionSource.Name(d.source),
        "policy": d.policy,
        "tier_name": d.tier_name,
        "scores": ",".join(f"{t.tier}:{t.score:.6f}/{t.threshold:.6f}" for t in d.tier_scores),
    }


def run_client(language: str, cluster: LocalCluster) -> dict[str, dict[str, str]]:
    env = {**os.environ, "FERRYMAN_API_KEY": CLIENT_KEY}
    out = subprocess.run(
        client_command(language, cluster.gateway_procs[0].target),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    return parse_output(out.stdout)


@pytest.mark.parametrize("language", ["go", "node", "python"])
def test_client_prints_a_three_tier_decision(language: str, built_clients: None, three_tiers: LocalCluster) -> None:
    """A three-tier gateway process: every client shows the tier's name and both scores it used."""
    expected = reference_decision(three_tiers)
    assert expected.source == gateway_pb2.DECISION_SOURCE_SCORED, "the scorer must have scored the prompt"
    assert [t.tier for t in expected.tier_scores] == ["small", "medium"]
    assert expected.tier_name in ("small", "medium", "large")
    got = run_client(language, three_tiers)
    want = expected_fields(expected)
    assert {k: got["route"][k] for k in want} == want
    assert {k: got["chat"][k] for k in want} == want
    assert got["chat"]["reply"] == '"A local answer."'
    assert got["chat"]["served_model"] == expected.model


@pytest.mark.parametrize("language", ["go", "node", "python"])
def test_client_prints_the_gateways_routing_decision(
    language: str, built_clients: None, one_of_each: LocalCluster
) -> None:
    expected = reference_decision(one_of_each)
    assert expected.source == gateway_pb2.DECISION_SOURCE_SCORED, "the scorer must have scored the prompt"
    assert expected.tier_name in ("strong", "weak") and [t.tier for t in expected.tier_scores] == ["weak"]
    got = run_client(language, one_of_each)
    want = expected_fields(expected)
    assert {k: got["route"][k] for k in want} == want
    assert {k: got["chat"][k] for k in want} == want
    assert got["chat"]["reply"] == '"A local answer."'
    assert got["chat"]["served_model"] == expected.model
    assert got["chat"]["degraded"] == "false"


def test_clients_send_the_client_key(built_clients: None, one_of_each: LocalCluster) -> None:
    """Without the key the gateway refuses, and the Go client reports it and exits non-zero."""
    env = {k: v for k, v in os.environ.items() if k != "FERRYMAN_API_KEY"}
    out = subprocess.run(
        [*client_command("go", one_of_each.gateway_procs[0].target), "-chat=false"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 1
    assert "Unauthenticated" in out.stderr or "UNAUTHENTICATED" in out.stderr.upper(), out.stderr
