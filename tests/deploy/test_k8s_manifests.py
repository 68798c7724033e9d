"""The k8s overlays render, pass strict schema validation, and keep the invariants that matter.

Ports, probe ports, the config mount and the container arguments are checked against the code
(``gateway.config`` defaults, the real ``ferryman`` subcommand parsers), not against copies of
the numbers.
"""

from __future__ import annotations

import argparse
import subprocess

import pytest
import yaml

from gateway.config import AdminConfig, ServerConfig, parse_config
from harness.cli_args import parse_ferryman_args
from scorer.config import ScorerConfig
from scorer.main import ENV_PREFIX
from scorer.server import known_services

from . import k8s
from .k8s import OVERLAYS, ROOT, containers, find, one, port_named, render, selects

SERVICES = ("scorer", "gateway")


def _validate(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [k8s.venv_tool("kubernetes-validate"), "--strict", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_strict_validation(overlay: str) -> None:
    """`kubectl kustomize k8s/overlays/X | kubernetes-validate --strict -`, every object passes."""
    out = _validate(k8s.render_text(overlay))
    assert out.returncode == 0, out.stdout + out.stderr
    passed = [line for line in (out.stdout + out.stderr).splitlines() if " passed for resource " in line]
    assert len(passed) == len(render(overlay)), out.stdout + out.stderr


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator really is strict: a misspelt field fails (so the test above means something)."""
    objs = render("prod")
    one(objs, "Deployment", "scorer")["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    out = _validate(yaml.safe_dump_all(objs))
    assert out.returncode != 0
    assert "readinesProbe" in out.stdout + out.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_have_resources_and_locked_down_security(overlay: str) -> None:
    objs = render(overlay)
    seen = 0
    for dep, c in containers(objs):
        seen += 1
        where = f"{overlay}: {dep['metadata']['name']}/{c['name']}"
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{where}: resources.{bound}"
        pod_sc = dep["spec"]["template"]["spec"]["securityContext"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) is True, where
        assert int(sc.get("runAsUser", pod_sc.get("runAsUser", 0))) != 0, where
        assert ":latest" not in c["image"] and ":" in c["image"], f"{where}: image tag pinned"
    assert seen >= 2


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_ferryman_pods_spread_drain_and_have_scratch_space(overlay: str, service: str) -> None:
    dep = one(render(overlay), "Deployment", service)
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys
    assert all(
        selects(t["labelSelector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"])
        for t in spec["topologySpreadConstraints"]
    )
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"])
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pre_stop < spec["terminationGracePeriodSeconds"]
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) in {p["containerPort"] for p in c["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_ports_probes_and_config_match_the_code(overlay: str) -> None:
    objs = render(overlay)
    dep = one(objs, "Deployment", "gateway")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    command, ns = parse_ferryman_args(c["args"])
    assert command == "gateway"

    # The config file the command reads is the ConfigMap's gateway.yaml, mounted read-only.
    mount = next(m for m in c["volumeMounts"] if str(ns.config).startswith(m["mountPath"] + "/"))
    volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    cm = one(objs, "ConfigMap", "gateway-config")
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    cfg = parse_config(yaml.safe_load(cm["data"][str(ns.config)[len(mount["mountPath"]) + 1 :]]))

    assert cfg.server.grpc_port == ServerConfig.grpc_port == port_named(c, "grpc")
    assert cfg.server.http_port == ServerConfig.http_port == port_named(c, "http")
    # metrics and readiness (breaker states) on the admin port: scraped, but not in the Service
    prometheus_port = int(dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
    assert cfg.admin.port == AdminConfig.port == port_named(c, "admin") == prometheus_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == cfg.server.grpc_port, probe
    svc = one(objs, "Service", "gateway")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {
        "grpc": cfg.server.grpc_port,
        "http": cfg.server.http_port,
    }
    assert selects(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
    # Provider and client keys come from Secrets by reference; none is in the config itself.
    assert {s["secretRef"]["name"] for s in c["envFrom"]} == {"ferryman-provider-keys", "ferryman-client-keys"}
    assert not find(objs, "Secret")
    assert all(m.api_key.env for m in cfg.models.values())
    assert cfg.auth.keys_env and not cfg.auth.disabled


MI = 1 << 20
_MEMORY_UNITS = {"Ki": 1 << 10, "Mi": MI, "Gi": 1 << 30}


def _memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in the binary units these manifests use (``512Mi``, ``1Gi``)."""
    unit = quantity[-2:]
    assert unit in _MEMORY_UNITS, f"memory quantity {quantity!r}: write it in Ki, Mi or Gi"
    return int(quantity[:-2]) * _MEMORY_UNITS[unit]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_memory_limit_covers_the_learning_jobs_at_their_bound(overlay: str) -> None:
    """With learning on, every admitted shadow job (``shadow.max_admitted``: running + waiting) may hold
    its request and the served answer, each up to its size limit (docs/learning.md, "Bounded"). The
    container's limit must leave that on top of what the pod ordinarily uses (its request), whatever
    the shipped config's ``learning:`` says: the product's defaults apply once an operator turns it on."""
    objs = render(overlay)
    (c,) = one(objs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    cfg = parse_config(yaml.safe_load(one(objs, "ConfigMap", "gateway-config")["data"]["gateway.yaml"]))
    per_job = cfg.limits.max_body_bytes + cfg.limits.max_response_bytes
    jobs = cfg.learning.shadow.max_admitted * per_job
    request = _memory_bytes(c["resources"]["requests"]["memory"])
    limit = _memory_bytes(c["resources"]["limits"]["memory"])
    assert limit >= request + jobs, (
        f"{overlay}: gateway memory limit {limit // MI} MiB < request {request // MI} MiB + "
        f"{cfg.learning.shadow.max_admitted} shadow jobs x {per_job / MI:.0f} MiB = {(request + jobs) // MI} MiB"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_dials_the_headless_scorer_service(overlay: str) -> None:
    objs = render(overlay)
    (gc,) = one(objs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    _, args = parse_ferryman_args(gc["args"])
    scorer = one(objs, "Deployment", "scorer")
    (sc,) = scorer["spec"]["template"]["spec"]["containers"]
    svc = one(objs, "Service", "scorer")
    assert svc["spec"]["clusterIP"] == "None", "scorer Service must be headless (per-call balancing)"
    assert selects(svc["spec"]["selector"], scorer["spec"]["template"]["metadata"]["labels"])
    (port,) = svc["spec"]["ports"]
    assert port["targetPort"] == "grpc" and port["port"] == port_named(sc, "grpc")
    namespace = svc["metadata"]["namespace"]
    assert one(objs, "Deployment", "gateway")["metadata"]["namespace"] == namespace
    assert args.scorer == f"dns:///scorer.{namespace}.svc.cluster.local:{port['port']}"


def test_cluster_config_is_the_repository_config() -> None:
    """kustomize reads no file outside k8s/base, so the ConfigMap source is a checked copy."""
    copy = (ROOT / "k8s" / "base" / "gateway-config.yaml").read_text()
    assert copy == (ROOT / "config" / "gateway.yaml").read_text(), (
        "k8s/base/gateway-config.yaml differs from config/gateway.yaml: "
        "cp config/gateway.yaml k8s/base/gateway-config.yaml"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_reaches_the_scorer(overlay: str) -> None:
    objs = render(overlay)
    scorer_labels = one(objs, "Deployment", "scorer")["spec"]["template"]["metadata"]["labels"]
    gateway_labels = one(objs, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    (sc,) = one(objs, "Deployment", "scorer")["spec"]["template"]["spec"]["containers"]
    grpc_port = port_named(sc, "grpc")
    policies = [
        p for p in find(objs, "NetworkPolicy") if selects(p["spec"]["podSelector"]["matchLabels"], scorer_labels)
    ]
    assert policies, "no NetworkPolicy selects the scorer pods"
    admitted_grpc = 0
    for pol in policies:
        assert "Ingress" in pol["spec"]["policyTypes"]
        for rule in pol["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            assert ports and rule.get("from"), "a rule without ports or peers admits everything"
            if grpc_port in ports:
                for peer in rule["from"]:
                    assert set(peer) == {"podSelector"}, "only same-namespace pods may reach the gRPC port"
                    assert selects(peer["podSelector"]["matchLabels"], gateway_labels)
                    assert not selects(peer["podSelector"]["matchLabels"], scorer_labels)
                    admitted_grpc += 1
    assert admitted_grpc >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_and_pdb_target_the_right_deployments(overlay: str) -> None:
    objs = render(overlay)
    for name in SERVICES:
        dep = one(objs, "Deployment", name)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        hpa = one(objs, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert "replicas" not in dep["spec"], "the HPA owns the replica count"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        pdbs = [p for p in find(objs, "PodDisruptionBudget") if selects(p["spec"]["selector"]["matchLabels"], labels)]
        assert [p["metadata"]["name"] for p in pdbs] == [name]
        others = [d for d in find(objs, "Deployment") if d is not dep]
        assert not any(
            selects(pdbs[0]["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
            for d in others
        )


def test_overlays_differ_as_intended() -> None:
    dev, prod = render("dev"), render("prod")
    for name in SERVICES:
        assert one(dev, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] == 1
        assert one(prod, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] >= 3
        assert (
            one(prod, "HorizontalPodAutoscaler", name)["spec"]["maxReplicas"]
            > one(dev, "HorizontalPodAutoscaler", name)["spec"]["maxReplicas"]
        )
    # dev runs Redis for shared breaker state and points the gateway at it; prod uses a managed one.
    assert one(dev, "Deployment", "redis") and one(dev, "Service", "redis")
    (gc,) = one(dev, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    cfg = parse_config(yaml.safe_load(one(dev, "ConfigMap", "gateway-config")["data"]["gateway.yaml"]))
    env = {e["name"]: e.get("value") for e in gc.get("env", [])}
    assert env[cfg.breaker.redis_url_env] == "redis://redis:6379/0"
    assert not find(prod, "Deployment", "redis")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scorer_ports_probes_and_flags_match_the_code(overlay: str) -> None:
    objs = render(overlay)
    dep = one(objs, "Deployment", "scorer")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    command, ns = parse_ferryman_args(c["args"])
    assert command == "scorer"
    defaults = ScorerConfig()
    assert ns.port == defaults.port == port_named(c, "grpc")
    assert ns.metrics_port == defaults.metrics_port == port_named(c, "metrics")
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert int(ann["prometheus.io/port"]) == ns.metrics_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == ns.port, probe
        assert c[probe]["grpc"].get("service", "") in ("", *known_services()), probe
    # Every FERRYMAN_SCORER_* variable is one of the scorer's flags (a typo would be ignored silently).
    flags = {a.dest.upper() for a in _scorer_parser_actions()}
    for env in c.get("env", []):
        if env["name"].startswith(ENV_PREFIX):
            assert env["name"][len(ENV_PREFIX) :] in flags, env["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scorer_threads_follow_the_cpu_limit_not_the_nodes_cores(overlay: str) -> None:
    """A pod's CPU limit is a CFS quota: its affinity mask still lists every core of the node, so a thread count
    defaulting to the usable CPUs (the inference workers; the intra-op threads of a call running alone, up to 4)
    would exceed the limit on a large node and be throttled. Was: only the workers followed the limit, and a
    lone call ran on 4 threads in a pod limited to 1 CPU (dev) or 2 (prod)."""
    (c,) = one(render(overlay), "Deployment", "scorer")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    for flag in ("WORKERS", "IDLE_INTRA_OP_THREADS"):
        ref = env[ENV_PREFIX + flag]["valueFrom"]["resourceFieldRef"]
        assert ref == {"resource": "limits.cpu"}, flag  # the limit rounded up to whole CPUs (divisor 1)
    assert env[ENV_PREFIX + "INTRA_OP_THREADS"]["value"] == "1"


def _scorer_parser_actions() -> list[argparse.Action]:
    from scorer.main import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return list(parser._actions)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_termination_grace_covers_prestop_and_drain(overlay: str, service: str) -> None:
    """Kubernetes must not SIGKILL a pod before its preStop sleep and its own drain are over."""
    dep = one(render(overlay), "Deployment", service)
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    if service == "scorer":
        _, ns = parse_ferryman_args(c["args"])
        drain = ns.grace_s
    else:
        objs = render(overlay)
        cfg = parse_config(yaml.safe_load(one(objs, "ConfigMap", "gateway-config")["data"]["gateway.yaml"]))
        drain = cfg.server.drain_s
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain + 5
