"""Scorer replicas as a gateway sees them: one added behind the DNS name, one loading, stopped or killed.

In Kubernetes the gateway dials ``dns:///scorer.ferryman.svc.cluster.local:50051`` with
``round_robin`` over the headless Service's pods. gRPC resolves that name again only when a
connection ends, so the scorer closes each connection after ``--max-connection-age-s``; here the
name is served by a loopback DNS server (harness.dns) and two real scorers listen on 127.0.0.1
and 127.0.0.2 on one port, as two pods. A scorer restarted in place (same address: a crashed or
OOM-killed container) listens while its routers load and refuses calls meanwhile, one draining
refuses new calls, one killed fails those in flight: the gateway's channel calls only scorers whose
health says SERVING and retries an UNAVAILABLE Score on the next one. A real gateway serves the openai SDK.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import grpc
import httpx
import openai

from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from harness.cluster import CLIENT_KEY as CLUSTER_KEY
from harness.cluster import LocalCluster
from harness.dns import LoopbackDNS
from harness.fake_provider import FakeProvider
from harness.gateway import CLIENT_KEY, GatewayThread, gateway_config
from harness.processes import free_port, grpc_serving, spawn, wait_for
from harness.scorer import loading_scorer, scorer_in_thread

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


def test_a_scorer_loading_its_routers_costs_no_request_its_score(test_routers: Path) -> None:
    with (
        scorer_in_thread(test_routers, ENCODER) as serving,
        loading_scorer(test_routers, ENCODER) as loading,
        gateway_for(f"ipv4:{serving},{loading}") as client,
    ):
        sources = [client.ask() for _ in range(20)]
    assert sources == ["scored"] * 20, sources


def test_scorers_stopped_killed_and_restarted_under_load_cost_no_request_its_score(test_routers: Path) -> None:
    """A rolling restart (SIGTERM, then the same address again) and a crash (SIGKILL) of one scorer of
    two, with a gateway process serving 8 concurrent openai SDK clients: every answer is scored."""
    with LocalCluster(scorers=2, gateways=1, routers_dir=test_routers, scorer_overrides={"deadline_ms": 5000}) as c:
        gateway = c.gateway_procs[0]
        sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway.http_port}/v1", api_key=CLUSTER_KEY, max_retries=0)
        sources: Counter[str] = Counter()
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                raw = sdk.chat.completions.with_raw_response.create(
                    model="ferryman-balanced", messages=[{"role": "user", "content": "Prove that 2 is prime."}]
                )
                raw.parse()
                sources[raw.headers["x-ferryman-decision-source"]] += 1

        with ThreadPoolExecutor(8) as pool:
            clients = [pool.submit(client) for _ in range(8)]
            for index, sig in ((0, signal.SIGTERM), (1, signal.SIGKILL)):
                time.sleep(1.0)
                old = c.scorer_procs[index]
                old.signal(sig)
                old.proc.wait(30)
                argv = cast("list[str]", old.proc.args)  # the same command line: same address and ports
                new = spawn(f"{old.name}-again", argv, c.workdir or Path("."))
                new.grpc_port = old.grpc_port
                c.scorer_procs[index] = new
                wait_for(f"{new.name} health", lambda target=new.target: grpc_serving(target), 120, new.proc)
            time.sleep(1.0)
            stop.set()
            for future in clients:
                future.result()
        for proc in c.scorer_procs:
            proc.stop()
    assert sum(sources.values()) >= 50, sources
    assert set(sources) == {"scored"}, sources


def test_a_batch_score_longer_than_the_connection_age_completes(test_routers: Path) -> None:
    """The connection's age ends it only once its calls are done: was a BatchScore still running at age +
    --grace-s got CANCELLED (an evaluation's or a benchmark's long batch on an old connection)."""
    prompt = "Explain how TCP congestion control reacts to packet loss, step by step. " * 40  # a full window
    with scorer_in_thread(test_routers, ENCODER, max_connection_age_s=0.5, grace_s=0.5) as address:
        channel = grpc.insecure_channel(address)
        stub = scorer_pb2_grpc.ScorerServiceStub(channel)
        stub.ListRouters(scorer_pb2.ListRoutersRequest(), timeout=10)  # the connection is up before the batch
        requests = [scorer_pb2.ScoreRequest(router="mf", prompt=f"{i} {prompt}") for i in range(300)]
        started = time.monotonic()
        reply = stub.BatchScore(scorer_pb2.BatchScoreRequest(requests=requests), timeout=120)
        took = time.monotonic() - started
        channel.close()
    assert len(reply.responses) == 300
    assert took > 1.0, f"the batch took {took:.2f} s: too short to outlive the connection's age and grace"
