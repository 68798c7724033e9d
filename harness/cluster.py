"""The local cluster: N scorer and M gateway processes, a fake LLM provider and Redis, all on loopback.

The gateways read the dev overlay's gateway config (``k8s/base/gateway-config.yaml``) with only the
addresses changed, and dial every scorer with ``round_robin`` over a static address list
(``ipv4:127.0.0.1:P1,127.0.0.1:P2``), as they dial the headless Service's pod list in a cluster.
``bench.cluster_local`` drives load through it; ``tests/deploy`` reuses it.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferryman import paths
from harness.fake_provider import FakeProvider, slow
from harness.processes import Process, RedisServer, free_port, grpc_serving, read_json, scrape, spawn, wait_for

# The dev overlay's gateway config, from the checkout the tests and benchmarks run in (the working directory).
GATEWAY_CONFIG = Path("k8s/base/gateway-config.yaml")
CLIENT_KEY = "cluster-local-client-key"


def cluster_config(provider_url: str) -> dict[str, Any]:
    """The dev overlay's gateway config, with every provider pointed at the local fake one."""
    data: dict[str, Any] = yaml.safe_load(GATEWAY_CONFIG.read_text())
    for model in data["models"].values():
        model["base_url"] = provider_url
    return data


@dataclass
class LocalCluster:
    """Scorers, gateways, a fake provider and Redis on loopback; use as a context manager."""

    scorers: int = 2
    gateways: int = 2
    routers_dir: Path = field(default_factory=paths.routers_dir)
    encoder_dir: Path = field(default_factory=paths.encoder_dir)
    provider_delay_s: float = 0.2
    #: Overrides merged into the gateway config's ``scorer`` section (e.g. deadline_ms).
    scorer_overrides: dict[str, Any] = field(default_factory=dict)
    #: Top-level sections of the gateway config replaced whole (e.g. ``tiers`` and ``policies``).
    gateway_overrides: dict[str, Any] = field(default_factory=dict)
    workdir: Path | None = None
    start_timeout_s: float = 180.0
    scorer_procs: list[Process] = field(default_factory=list)
    gateway_procs: list[Process] = field(default_factory=list)
    scorer_metrics_ports: list[int] = field(default_factory=list)
    _stack: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> LocalCluster:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        if self.workdir is None:
            self.workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="ferryman-cluster-")))
        workdir = self.workdir
        provider = FakeProvider(reply="A local answer.", name="cluster-local")
        provider.reset(default=slow(self.provider_delay_s))
        self._stack.enter_context(provider)
        redis_url = self._start_redis(workdir)

        self.scorer_procs = [self._start_scorer(i, workdir) for i in range(self.scorers)]
        for p in self.scorer_procs:
            wait_for(f"{p.name} health", lambda p=p: grpc_serving(p.target), self.start_timeout_s, p.proc)

        config = cluster_config(provider.base_url)
        config["scorer"] = {**config.get("scorer", {}), **self.scorer_overrides}
        config.update(self.gateway_overrides)
        config_path = workdir / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        scorer_target = "ipv4:" + ",".join(p.target for p in self.scorer_procs)
        env = {"REDIS_URL": redis_url, "FERRYMAN_API_KEYS": CLIENT_KEY}
        env |= {m["api_key_env"]: "fake-provider-key" for m in config["models"].values() if m.get("api_key_env")}
        self.gateway_procs = [
            self._start_gateway(i, workdir, config_path, scorer_target, env) for i in range(self.gateways)
        ]
        for p in self.gateway_procs:
            wait_for(f"{p.name} health", lambda p=p: grpc_serving(p.target), self.start_timeout_s, p.proc)

    def _start_redis(self, workdir: Path) -> str:
        redis = RedisServer(workdir, start_timeout_s=20)
        self._stack.callback(redis.stop)
        return redis.url

    def _start_scorer(self, index: int, workdir: Path) -> Process:
        port, metrics_port = free_port(), free_port()
        argv = [sys.executable, "-m", "ferryman", "scorer", "--routers-dir", str(self.routers_dir)]
        argv += ["--encoder-dir", str(self.encoder_dir), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--metrics-port", str(metrics_port)]
        proc = spawn(f"scorer-{index}", argv, workdir)
        proc.grpc_port = port
        self.scorer_metrics_ports.append(metrics_port)
        self._stack.callback(proc.stop)
        return proc

    def _start_gateway(
        self, index: int, workdir: Path, config: Path, scorer_target: str, env: dict[str, str]
    ) -> Process:
        port_file = workdir / f"gateway-{index}.ports.json"
        argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(config), "--host", "127.0.0.1"]
        argv += ["--grpc-port", "0", "--http-port", "0", "--admin-port", "0", "--scorer", scorer_target]
        argv += ["--port-file", str(port_file)]
        proc = spawn(f"gateway-{index}", argv, workdir, env)
        self._stack.callback(proc.stop)
        ports = wait_for(f"{proc.name} ports", lambda: read_json(port_file), self.start_timeout_s, proc.proc)
        proc.grpc_port, proc.http_port = int(ports["grpc_port"]), int(ports["http_port"])
        proc.admin_port = int(ports["admin_port"])
        return proc

    def score_calls(self) -> list[int | None]:
        """Score calls each scorer has served so far (None for a scorer that is down)."""
        counts = [scrape(port, "ferryman_scorer_requests_total", method="Score") for port in self.scorer_metrics_ports]
        return [None if c is None else c.total() for c in counts]

    def gateway_scorer_failures(self) -> Counter[str]:
        """Score RPCs the running gateways saw fail, by status code, summed over gateways."""
        total: Counter[str] = Counter()
        for p in self.gateway_procs:
            total.update(scrape(p.admin_port, "ferryman_gateway_scorer_failures_total") or Counter())
        return total
