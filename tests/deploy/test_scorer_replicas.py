"""Scorer replicas as a gateway sees them: one added behind the DNS name.

In Kubernetes the gateway dials ``dns:///scorer.ferryman.svc.cluster.local:50051`` with
``round_robin`` over the headless Service's pods. gRPC resolves that name again only when a
connection ends, so the scorer closes each connection after ``--max-connection-age-s``; here the
name is served by a loopback DNS server (harness.dns) and two real scorers listen on 127.0.0.1
and 127.0.0.2 on one port, as two pods. A real gateway serves the openai SDK.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai

from harness.dns import LoopbackDNS
from harness.fake_provider import FakeProvider
from harness.gateway import CLIENT_KEY, GatewayThread, gateway_config
from harness.processes import free_port
from harness.scorer import scorer_in_thread

from .k8s import ROOT

ENCODER = ROOT / "build" / "encoder"
SCORE = re.compile(r'^ferryman_scorer_requests_total\{[^}]*method="Score"[^}]*\} (\S+)$', re.M)
#: gRPC re-resolves a name at most every 30 s (its default); a connection age of 1 s asks at once.
SCALE_OUT_WITHIN_S = 60.0


def score_calls(host: str, metrics_port: int) -> float:
    text = httpx.get(f"http://{host}:{metrics_port}/metrics", timeout=5).text
    return sum(float(v) for v in SCORE.findall(text))


class Client:
    """The openai SDK against a gateway; ``ask()`` returns the answer's decision source."""

    def __init__(self, gateway: GatewayThread) -> None:
        self.sdk = openai.OpenAI(base_url=gateway.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0)

    def ask(self) -> str:
        raw = self.sdk.chat.completions.with_raw_response.create(
            model="ferryman-balanced", messages=[{"role": "user", "content": "Prove that 2 is prime."}]
        )
        raw.parse()
        return raw.headers["x-ferryman-decision-source"]


@contextmanager
def gateway_for(scorer_target: str) -> Iterator[Client]:
    with FakeProvider(reply="An answer.", name="replicas") as fake:
        config = gateway_config(
            {"strong-openai": fake, "weak-openai": fake},
            strong=("strong-openai",),
            weak=("weak-openai",),
            scorer_target=scorer_target,
        )
        with GatewayThread(config) as gateway:
            yield Client(gateway)


def test_a_scorer_added_to_dns_gets_calls_from_a_running_gateway(test_routers: Path) -> None:
    port, metrics = free_port(), (free_port(), free_port())
    hosts = ("127.0.0.1", "127.0.0.2")
    common = {"port": port, "max_connection_age_s": 1.0, "grace_s": 1.0}
    with (
        LoopbackDNS([hosts[0]]) as dns,
        scorer_in_thread(test_routers, ENCODER, host=hosts[0], metrics_port=metrics[0], **common),
        scorer_in_thread(test_routers, ENCODER, host=hosts[1], metrics_port=metrics[1], **common),
        gateway_for(f"dns://127.0.0.1:{dns.port}/scorer.test:{port}") as client,
    ):
        sources = [client.ask() for _ in range(10)]
        assert score_calls(hosts[0], metrics[0]) >= 10 and score_calls(hosts[1], metrics[1]) == 0

        dns.addresses = list(hosts)  # the HPA added a pod; DNS now lists both
        added_at, waited = time.monotonic(), 0.0
        while score_calls(hosts[1], metrics[1]) == 0:
            waited = time.monotonic() - added_at
            assert waited < SCALE_OUT_WITHIN_S, (
                f"the added scorer got no call in {waited:.0f} s (DNS asked {dns.a_queries} time(s))"
            )
            sources.append(client.ask())
            time.sleep(0.05)
        print(f"the added scorer got its first call {waited:.1f} s after it appeared in DNS")
        sources += [client.ask() for _ in range(10)]
    # Connections closed by age never cost a request its score.
    assert set(sources) == {"scored"}, sources
