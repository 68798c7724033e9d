"""``ferryman gateway``: serve gRPC (default :50061), OpenAI-compatible HTTP (default :8080) and
the admin listener (``/metrics``, ``/readyz``; default :9091).

All servers share one event loop and one :class:`gateway.service.Gateway`. Settings are
built here from flags and the environment: the YAML config (``--config`` or
``FERRYMAN_GATEWAY_CONFIG``), ``REDIS_URL`` (or the variable named by
``breaker.redis_url_env``) for shared breaker state, and client API keys.

On SIGTERM/SIGINT (:meth:`RunningGateway.stop`): readiness and gRPC health go down; requests
under way and any that still arrive are served (each HTTP answer closing its connection); at
``server.drain_s`` whatever still runs ends with a clean error (503 / an SSE error event /
UNAVAILABLE: see ``gateway.lifecycle``); then the listeners close and everything stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from ferryman import ports, signals
from ferryman.logs import configure_logging
from gateway.config import GatewayConfig, add_config_argument, load_config
from gateway.errors import ConfigError
from gateway.grpc_server import SERVICE_NAME, create_server
from gateway.http_app import AdminApp, HTTPApp
from gateway.http_metrics import HTTPMetrics
from gateway.http_server import FINISH_S, HTTPServer, create_http_server, start_serving
from gateway.lifecycle import now
from gateway.loop import run_loop
from gateway.service import Gateway, Runtime

log = logging.getLogger("gateway")

#: The drain ends early once no request has been running for this long.
QUIET_S = 0.3


def runtime_from_env(config: GatewayConfig, environ: Mapping[str, str]) -> Runtime:
    """Secrets and shared-state addresses, read from the environment (never from the YAML)."""
    redis_url = environ.get(config.breaker.redis_url_env, "").strip() or None
    keys = frozenset() if config.auth.disabled else config.auth.load_keys(environ)
    return Runtime(redis_url=redis_url, client_keys=keys, environ=environ)


@dataclass
class RunningGateway:
    """Every server of one gateway, started in the current event loop."""

    gateway: Gateway
    admin_app: AdminApp
    grpc_server: grpc.aio.Server
    health: health_aio.HealthServicer
    http_server: HTTPServer
    admin_server: HTTPServer
    tasks: list[asyncio.Task[None]]
    grpc_port: int

    @property
    def http_port(self) -> int:
        return self.http_server.port

    @property
    def admin_port(self) -> int:
        return self.admin_server.port

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain for ``grace_s`` (default ``server.drain_s``), end what is left cleanly, close everything.

        The listeners stay open while the drain lasts: closing the HTTP one would reset the
        connections still in the kernel's accept queue, whose requests were sent (the issue's
        "accepted but not yet read"), and a stopping gRPC server cancels the calls that reach it.
        Those, and any request arriving meanwhile, are served (HTTP answers with ``connection:
        close``) within the drain; it ends early once nothing has run for ``QUIET_S``.
        """
        drain_s = self.gateway.config.server.drain_s if grace_s is None else grace_s
        lifecycle = self.gateway.lifecycle
        lifecycle.begin_drain()
        await self.health.enter_graceful_shutdown()
        self.http_server.end_keep_alive()

        def busy() -> bool:
            return self.http_server.in_flight > 0 or lifecycle.rpcs > 0

        deadline, quiet_since = now() + drain_s, now()
        while now() < deadline:
            if busy():
                quiet_since = now()
            elif now() - quiet_since >= QUIET_S:
                break
            await asyncio.sleep(0.05)
        if busy():
            log.warning(
                "drain of %gs over: %d HTTP request(s) and %d gRPC call(s) still running end with an error",
                drain_s,
                self.http_server.in_flight,
                lifecycle.rpcs,
            )
            lifecycle.expire()
            finish = now() + FINISH_S
            while busy() and now() < finish:
                await asyncio.sleep(0.05)
        self.http_server.close_listeners()
        self.http_server.should_exit = self.admin_server.should_exit = True
        await asyncio.gather(*self.tasks, self.grpc_server.stop(FINISH_S))
        await self.gateway.close()


async def start_gateway(config: GatewayConfig, runtime: Runtime) -> RunningGateway:
    """Start the gRPC, HTTP and admin servers for ``config`` (ports 0 pick free ports; see the result)."""
    gateway = Gateway(config, runtime)
    await gateway.start()
    server = config.server
    grpc_server, grpc_port, health = await create_server(gateway, server.grpc_host, server.grpc_port)
    await grpc_server.start()
    admin_app = AdminApp(gateway)
    limits, lifecycle = config.limits, gateway.lifecycle
    api = HTTPMetrics(HTTPApp(gateway).app, gateway.metrics.registry)
    http_server = create_http_server(api, server.http_host, server.http_port, limits, lifecycle)
    admin_server = create_http_server(admin_app.app, config.admin.host, config.admin.port, limits, lifecycle)
    tasks: list[asyncio.Task[None]] = []
    try:
        tasks.append(await start_serving(http_server, "HTTP", "server.http_port, --http-port", tasks))
        tasks.append(await start_serving(admin_server, "admin", "admin.port, --admin-port", tasks))
    except BaseException:
        await grpc_server.stop(0)
        await gateway.close()
        raise
    admin_app.ready = True
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return RunningGateway(gateway, admin_app, grpc_server, health, http_server, admin_server, tasks, grpc_port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--grpc-port", type=ports.port, help="override server.grpc_port (0 = any free port)")
    parser.add_argument("--http-port", type=ports.port, help="override server.http_port (0 = any free port)")
    parser.add_argument(
        "--admin-port", type=ports.port, help="override admin.port: /metrics, /readyz (0: any free port)"
    )
    parser.add_argument("--host", help="override both listen hosts")
    parser.add_argument("--scorer", type=ports.grpc_target, help="override scorer.target, e.g. dns:///scorer:50051")
    parser.add_argument(
        "--port-file", type=Path, help="write {grpc_port, http_port, admin_port} as JSON here once serving"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _apply_overrides(config: GatewayConfig, args: argparse.Namespace) -> GatewayConfig:
    server = config.server
    if args.grpc_port is not None:
        server = replace(server, grpc_port=args.grpc_port)
    if args.http_port is not None:
        server = replace(server, http_port=args.http_port)
    if args.host:
        server = replace(server, grpc_host=args.host, http_host=args.host)
    scorer = replace(config.scorer, target=args.scorer) if args.scorer else config.scorer
    admin = config.admin if args.admin_port is None else replace(config.admin, port=args.admin_port)
    if args.host:
        admin = replace(admin, host=args.host)
    return replace(config, server=server, scorer=scorer, admin=admin)


async def _serve(config: GatewayConfig, runtime: Runtime, port_file: Path | None) -> None:
    stop = signals.stop_event()  # a signal during start-up drains as soon as the servers are up
    running = await start_gateway(config, runtime)
    log.info(
        "gateway serving: gRPC on %s:%d, HTTP on %s:%d, admin on %s:%d, scorer %s, open breakers %s",
        config.server.grpc_host,
        running.grpc_port,
        config.server.http_host,
        running.http_port,
        config.admin.host,
        running.admin_port,
        config.scorer.target,
        "shared through Redis" if runtime.redis_url else "local",
    )
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        ports = {"grpc_port": running.grpc_port, "http_port": running.http_port, "admin_port": running.admin_port}
        tmp.write_text(json.dumps(ports))
        tmp.replace(port_file)
    await stop.wait()
    log.info("shutting down")
    await running.stop()


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        config = _apply_overrides(load_config(args.config), args)
        runtime = runtime_from_env(config, os.environ)
        run_loop(_serve(config, runtime, args.port_file))
    except ConfigError as exc:
        print(f"ferryman gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ferryman gateway: {exc}", file=sys.stderr)
        return 1
    return 0
