"""The built images, run as containers (``make image-smoke``, which builds them first; skipped elsewhere).

Each container runs as its Deployment in ``k8s/`` runs it (the rendered prod overlay: image name,
args, env values, ports, read-only root filesystem with a tmpfs ``/tmp``, no capabilities, no
privilege escalation, the image's own user), on a podman network where the gateway reaches the
scorer by name (``dns:///scorer:50051``, the only change to the manifest's args) and the providers
are one fake-provider container (``docker/fake-provider.Dockerfile``). Checked: the sizes against
their targets, what each image leaves out, the scorer SERVING the shipped routers with the scores a
local ``ferryman score`` gives, the non-root user and the read-only root, the images' HEALTHCHECK,
OpenAI-SDK requests (plain and streamed) and a gRPC Route through gateway -> scorer -> provider, and
SIGTERM to each service's PID 1: in-flight work completes, then exit 0 within the documented drain;
SIGTERM while the scorer is still loading stops it at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
import yaml

from ferryman import __version__, health
from ferryman.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from harness.cluster import cluster_config
from harness.processes import scrape

from . import podman
from .k8s import ROOT, one, port_named, render
from .podman import REPORT, Container, poll

if os.environ.get("FERRYMAN_IMAGE_SMOKE") != "1" or not podman.available():
    pytest.skip(
        "runs in `make image-smoke` (builds the images with podman, then sets FERRYMAN_IMAGE_SMOKE=1)",
        allow_module_level=True,
    )

SIZE_TARGET_MB = {"scorer": 450, "gateway": 250}
# What each image must not contain (import names): the lab, the test support, the other service.
LEFT_OUT = {
    "scorer": ("torch", "transformers", "onnx", "huggingface_hub", "lab", "harness", "gateway", "pip"),
    "gateway": ("torch", "onnxruntime", "numpy", "tokenizers", "lab", "harness", "scorer", "pip"),
}
CLIENT_KEY = "image-smoke-client-key"
PROVIDER_DELAY_MS = 1000  # every fake answer takes this long: the drain tests need a request in flight
PROMPT = "Prove that the square root of 2 is irrational, and explain each step."
PREFIX = f"ferryman-smoke-{os.getpid()}"
# Long prompts (past mf's 224-token window) in one BatchScore: still in flight when SIGTERM comes
# 0.15 s later (~9 ms each on the idle 2-core VM, two workers: ~0.3 s), answered well inside the
# scorer's 10 s grace on that VM loaded (0.03-0.1 s each there).
BATCH = 64


def local_image(name: str) -> str:
    """The image a k8s ``image:`` names, as podman stores a local build (``localhost/<name>``)."""
    return name if name.startswith("localhost/") else f"localhost/{name}"


@pytest.fixture(scope="module")
def specs() -> dict[str, dict[str, Any]]:
    """The k8s container spec of each service (prod overlay)."""
    objs = render("prod")
    out = {}
    for service in ("scorer", "gateway"):
        (container,) = one(objs, "Deployment", service)["spec"]["template"]["spec"]["containers"]
        out[service] = container
    return out


@pytest.fixture(scope="module")
def pod_security(specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each Deployment's pod-level securityContext (runAsUser, runAsNonRoot)."""
    objs = render("prod")
    return {s: one(objs, "Deployment", s)["spec"]["template"]["spec"]["securityContext"] for s in specs}


@pytest.fixture(scope="module")
def images(specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    found = {s: local_image(c["image"]) for s, c in specs.items()}
    found["fake-provider"] = local_image(f"ferryman/fake-provider:{__version__}")
    missing = [i for i in found.values() if not podman.image_exists(i)]
    assert not missing, f"not built: {missing} (make images)"
    return found


@pytest.fixture(scope="module")
def net() -> Iterator[str]:
    with podman.network(PREFIX) as name:
        yield name


@pytest.fixture(scope="module")
def provider(net: str, images: dict[str, str], specs: dict[str, dict[str, Any]]) -> Iterator[Container]:
    """A fake LLM provider container, reached as http://fake-provider:9000/v1; locked down like the gateway."""
    spec = {
        "name": "fake-provider",
        "securityContext": specs["gateway"]["securityContext"],
        "volumeMounts": [m for m in specs["gateway"]["volumeMounts"] if m["name"] == "tmp"],
        "ports": [{"name": "http", "containerPort": 9000}],
    }
    args = ["--host", "0.0.0.0", "--port", "9000", "--port-file", "/tmp/port", "--delay-ms", str(PROVIDER_DELAY_MS)]
    c = Container.start(f"{PREFIX}-fake-provider", images["fake-provider"], spec, net=net, args=args)
    try:
        poll("fake provider", lambda: c.exec("cat", "/tmp/port").returncode == 0, 60)
        yield c
    finally:
        c.remove()


def _serving(target: str) -> bool:
    return health.status(target, timeout_s=0.5) == "SERVING"


@pytest.fixture(scope="module")
def scorer(net: str, images: dict[str, str], specs: dict[str, dict[str, Any]]) -> Iterator[Container]:
    # The thread counts come from the pod's CPU limit (resourceFieldRef limits.cpu) in the cluster.
    spec = specs["scorer"]
    cpus = str(spec["resources"]["limits"]["cpu"])
    from_limit = {e["name"]: cpus for e in spec["env"] if "resourceFieldRef" in e.get("valueFrom", {})}
    c = Container.start(f"{PREFIX}-scorer", images["scorer"], spec, net=net, env=from_limit)
    try:
        target = f"127.0.0.1:{c.ports['grpc']}"
        poll("scorer SERVING", lambda: _serving(target) or (c.state() != "running" and _fail(c)), 180)
        took = time.monotonic() - c.started_at
        REPORT.append(f"scorer: cold start to SERVING {took:.1f} s (podman run -> grpc health)")
        yield c
    finally:
        c.remove()


def _fail(c: Container) -> bool:
    raise AssertionError(f"{c.name} exited:\n{c.logs()[-3000:]}")


@pytest.fixture(scope="module")
def gateway_config_dir() -> Iterator[Path]:
    """The prod ConfigMap's gateway.yaml with the providers pointed at the fake one, readable by uid 10001."""
    config = cluster_config("http://fake-provider:9000/v1")
    # Routing must go through the scorer on a loaded CI machine too: a generous scorer deadline.
    config["scorer"] = {**config.get("scorer", {}), "deadline_ms": 5000}
    with tempfile.TemporaryDirectory(prefix="ferryman-smoke-") as d:
        path = Path(d)
        path.chmod(0o755)
        (path / "gateway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        yield path


@pytest.fixture(scope="module")
def gateway(
    net: str,
    images: dict[str, str],
    specs: dict[str, dict[str, Any]],
    scorer: Container,
    provider: Container,
    gateway_config_dir: Path,
) -> Iterator[Container]:
    spec = specs["gateway"]
    args = list(spec["args"])
    # the scorer's network alias, not the cluster's DNS name
    args[args.index("--scorer") + 1] = f"dns:///scorer:{port_named(specs['scorer'], 'grpc')}"
    config = yaml.safe_load((gateway_config_dir / "gateway.yaml").read_text())
    env = {"FERRYMAN_API_KEYS": CLIENT_KEY}
    env |= {m["api_key_env"]: "fake-provider-key" for m in config["models"].values() if m.get("api_key_env")}
    volumes = {"config": gateway_config_dir}
    c = Container.start(f"{PREFIX}-gateway", images["gateway"], spec, net=net, args=args, env=env, volumes=volumes)
    try:
        target, ready = f"127.0.0.1:{c.ports['grpc']}", f"http://127.0.0.1:{c.ports['admin']}/readyz"

        def up() -> bool:
            if c.state() != "running":
                _fail(c)
            try:
                return _serving(target) and httpx.get(ready, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        poll("gateway ready", up, 120)
        took = time.monotonic() - c.started_at
        REPORT.append(f"gateway: cold start to ready {took:.1f} s (podman run -> grpc health and /readyz)")
        yield c
    finally:
        c.remove()


def _client(gateway: Container) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{gateway.ports['http']}/v1", api_key=CLIENT_KEY, max_retries=0)


def _python_in(image: str, code: str) -> str:
    out = podman.podman("run", "--rm", "--health-interval", "disable", "--entrypoint", "python", image, "-c", code)
    return out.stdout.strip()


# --- the images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["scorer", "gateway"])
def test_image_size_within_target(service: str, images: dict[str, str]) -> None:
    size_mb = podman.image_size(images[service]) / 1e6
    REPORT.append(f"{service}: image {images[service]} {size_mb:.0f} MB (target <= {SIZE_TARGET_MB[service]} MB)")
    assert size_mb <= SIZE_TARGET_MB[service]


@pytest.mark.parametrize("service", ["scorer", "gateway"])
def test_image_leaves_out_the_lab_the_tests_and_the_other_service(service: str, images: dict[str, str]) -> None:
    code = f"import importlib.util as u; print([m for m in {LEFT_OUT[service]!r} if u.find_spec(m)])"
    assert _python_in(images[service], code) == "[]"


# --- the scorer -----------------------------------------------------------------------------------


def test_scorer_serves_the_shipped_routers_with_the_local_scores(scorer: Container) -> None:
    shipped = sorted(p.parent.name for p in (ROOT / "routers").glob("*/manifest.json"))
    with grpc.insecure_channel(f"127.0.0.1:{scorer.ports['grpc']}") as channel:
        stub = scorer_pb2_grpc.ScorerServiceStub(channel)
        listed = stub.ListRouters(scorer_pb2.ListRoutersRequest(), timeout=10)
        assert sorted(r.name for r in listed.routers) == shipped
        served = {r: stub.Score(scorer_pb2.ScoreRequest(router=r, prompt=PROMPT), timeout=30) for r in shipped}
    # The same prompt scored locally from this checkout's `make setup` files (routers/, build/encoder).
    local = {}
    for router in shipped:
        out = subprocess.run(
            [sys.executable, "-m", "ferryman", "score", "--router", router, PROMPT],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        local[router] = json.loads(out.stdout.splitlines()[-1])["strong_win_rate"]
    diffs = {r: abs(served[r].strong_win_rate - local[r]) for r in shipped}
    REPORT.append(
        "scorer: serves "
        + ", ".join(f"{r} {served[r].strong_win_rate:.6f}" for r in shipped)
        + f"; max |container - local ferryman score| {max(diffs.values()):.1e}"
    )
    assert max(diffs.values()) <= 1e-6, diffs


# --- both services --------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["scorer", "gateway"])
def test_runs_as_the_manifests_non_root_user_on_a_read_only_root(
    service: str, request: pytest.FixtureRequest, pod_security: dict[str, dict[str, Any]]
) -> None:
    c: Container = request.getfixturevalue(service)
    uid = pod_security[service]["runAsUser"]
    assert c.exec("id", "-u").stdout.strip() == str(uid)
    status = c.exec("cat", "/proc/1/status").stdout
    assert f"Uid:\t{uid}\t" in status, "PID 1 runs as the manifest's user"
    assert c.exec("cat", "/proc/1/cmdline").stdout.split("\0")[:2] == ["/opt/venv/bin/python", "/opt/venv/bin/ferryman"]
    assert c.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    for path in ("/app/probe", "/opt/venv/probe", "/etc/probe"):
        denied = c.exec("touch", path)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, path
    assert c.exec("touch", "/tmp/probe").returncode == 0, "the emptyDir /tmp is writable"
    REPORT.append(
        f"{service}: {c.exec('id').stdout.strip()}; PID 1 = ferryman; writes to / fail (Read-only file system), /tmp ok"
    )


@pytest.mark.parametrize("service", ["scorer", "gateway"])
def test_image_healthcheck_passes(service: str, request: pytest.FixtureRequest) -> None:
    c: Container = request.getfixturevalue(service)
    out = podman.podman("healthcheck", "run", c.name, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


# --- the gateway, through the scorer, to the provider ------------------------------------------------


def _score_calls(scorer: Container) -> int:
    samples = scrape(scorer.ports["metrics"], "ferryman_scorer_requests_total", method="Score", code="OK")
    return sum((samples or {}).values())


def test_openai_sdk_through_gateway_scorer_and_provider(gateway: Container, scorer: Container) -> None:
    client = _client(gateway)
    before = _score_calls(scorer)
    raw = client.chat.completions.with_raw_response.create(
        model="ferryman-balanced", messages=[{"role": "user", "content": PROMPT}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content
    assert raw.headers["x-ferryman-decision-source"] == "scored", dict(raw.headers)
    assert raw.headers["x-ferryman-router"] == "mf"
    chunks = client.chat.completions.create(
        model="ferryman-balanced", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer.choices[0].message.content
    assert _score_calls(scorer) >= before + 2, "both requests were scored by the scorer container"
    REPORT.append(
        f"gateway: OpenAI SDK chat.completions (plain and stream) -> tier {raw.headers['x-ferryman-tier']}, "
        f"model {raw.headers['x-ferryman-model']}, score {raw.headers['x-ferryman-score']} from the scorer container; "
        f"{len(streamed)} streamed characters"
    )


def test_grpc_route_through_gateway_and_scorer(gateway: Container) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.ports['grpc']}") as channel:
        reply = gateway_pb2_grpc.GatewayServiceStub(channel).Route(
            gateway_pb2.RouteRequest(
                model="ferryman-balanced", messages=[gateway_pb2.ChatMessage(role="user", content=PROMPT)]
            ),
            metadata=[("authorization", f"Bearer {CLIENT_KEY}")],
            timeout=30,
        )
    assert reply.decision.source == gateway_pb2.DECISION_SOURCE_SCORED
    assert reply.decision.router == "mf" and 0.0 <= reply.decision.score <= 1.0


# --- SIGTERM to PID 1 -----------------------------------------------------------------------------------


def test_gateway_sigterm_drains_in_flight_stream(gateway: Container, gateway_config_dir: Path) -> None:
    drain_s = yaml.safe_load((gateway_config_dir / "gateway.yaml").read_text())["server"]["drain_s"]
    result: dict[str, Any] = {}

    def stream() -> None:
        try:
            chunks = _client(gateway).chat.completions.create(
                model="ferryman-balanced", messages=[{"role": "user", "content": PROMPT}], stream=True
            )
            result["text"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except Exception as exc:  # reported by the assertion below
            result["error"] = repr(exc)
        result["done"] = time.monotonic()

    worker = threading.Thread(target=stream)
    worker.start()
    time.sleep(PROVIDER_DELAY_MS / 1000 / 3)  # the provider holds the answer for PROVIDER_DELAY_MS
    sent = gateway.kill("TERM")
    time.sleep(0.2)
    try:
        refused = httpx.get(f"http://127.0.0.1:{gateway.ports['admin']}/readyz", timeout=1).status_code != 200
    except httpx.HTTPError:
        refused = True
    status = gateway.wait(timeout_s=drain_s + 15)
    stopped = time.monotonic() - sent
    worker.join(timeout=30)
    assert "error" not in result, result
    assert result["text"] and result["done"] > sent, "the stream was in flight at SIGTERM and completed"
    assert refused, "not ready while draining"
    assert status == 0, gateway.logs()[-3000:]
    assert stopped <= drain_s + 5
    REPORT.append(
        f"gateway: SIGTERM with a stream in flight -> stream completed {result['done'] - sent:.1f} s after the "
        f"signal, /readyz refused while draining, exit {status} after {stopped:.1f} s (drain_s {drain_s})"
    )


def test_scorer_sigterm_drains_in_flight_batch(scorer: Container, specs: dict[str, dict[str, Any]]) -> None:
    grace_s = 10.0  # `ferryman scorer --grace-s` default; the manifests leave it
    assert "--grace-s" not in specs["scorer"]["args"]
    long_prompt = " ".join([PROMPT] * 20)
    batch = scorer_pb2.BatchScoreRequest(
        requests=[scorer_pb2.ScoreRequest(router="mf", prompt=f"{i} {long_prompt}") for i in range(BATCH)]
    )
    result: dict[str, Any] = {}
    target = f"127.0.0.1:{scorer.ports['grpc']}"

    def call() -> None:
        with grpc.insecure_channel(target) as channel:
            try:
                reply = scorer_pb2_grpc.ScorerServiceStub(channel).BatchScore(batch, timeout=60)
                result["n"] = len(reply.responses)
            except grpc.RpcError as exc:
                result["error"] = exc.code().name if isinstance(exc, grpc.Call) else repr(exc)
        result["done"] = time.monotonic()

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.15)
    sent = scorer.kill("TERM")
    status = scorer.wait(timeout_s=grace_s + 15)
    stopped = time.monotonic() - sent
    worker.join(timeout=30)
    assert "error" not in result, result
    assert result["n"] == BATCH
    in_flight = result["done"] > sent
    assert status == 0, scorer.logs()[-3000:]
    assert stopped <= grace_s + 5
    assert "signal received: draining" in scorer.logs()
    REPORT.append(
        f"scorer: SIGTERM with a {BATCH}-prompt BatchScore {'in flight' if in_flight else '(already answered)'} -> "
        f"answered in full, exit {status} after {stopped:.1f} s (grace {grace_s:.0f} s)"
    )
    assert in_flight, "the batch finished before the signal: make it longer"


def test_scorer_sigterm_while_loading_stops_at_once(
    net: str, images: dict[str, str], specs: dict[str, dict[str, Any]]
) -> None:
    c = Container.start(f"{PREFIX}-scorer-early", images["scorer"], specs["scorer"], net=net)
    try:
        poll("scorer loading", lambda: "loading routers" in c.logs(), 120)
        sent = c.kill("TERM")
        status = c.wait(timeout_s=30)
        stopped = time.monotonic() - sent
        logs = c.logs()
        assert status == 0, logs[-3000:]
        assert "stopped" in logs
        phase = "before serving" if "stopped (before serving)" in logs else "just after loading"
        REPORT.append(f"scorer: SIGTERM while loading -> stopped {phase}, exit {status} after {stopped:.1f} s")
        assert stopped <= 15
    finally:
        c.remove()
