"""``ferryman gateway``: serve gRPC (default :50061) and OpenAI-compatible HTTP (default :8080).

Both servers share one event loop and one :class:`gateway.service.Gateway`. Settings are
built here from flags and the environment: the YAML config (``--config`` or
``FERRYMAN_GATEWAY_CONFIG``), ``REDIS_URL`` (or the variable named by
``breaker.redis_url_env``) for shared breaker state, and client API keys. On SIGTERM/SIGINT
health turns NOT_SERVING, then both servers drain and stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Generator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from gateway.config import GatewayConfig, add_config_argument, load_config
from gateway.errors import ConfigError
from gateway.grpc_server import SERVICE_NAME, create_server
from gateway.http_app import HTTPApp
from gateway.service import Gateway, Runtime

log = logging.getLogger("gateway")


def runtime_from_env(config: GatewayConfig, environ: Mapping[str, str]) -> Runtime:
    """Secrets and shared-state addresses, read from the environment (never from the YAML)."""
    redis_url = environ.get(config.breaker.redis_url_env, "").strip() or None
    keys = frozenset() if config.auth.disabled else config.auth.load_keys(environ)
    return Runtime(redis_url=redis_url, client_keys=keys, environ=environ)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: ``_serve`` owns SIGTERM/SIGINT for both servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class RunningGateway:
    """Both servers of one gateway, started in the current event loop."""

    gateway: Gateway
    http_app: HTTPApp
    grpc_server: grpc.aio.Server
    health: health_aio.HealthServicer
    http_server: uvicorn.Server
    http_task: asyncio.Task[None]
    grpc_port: int
    http_port: int

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking new work, drain for ``grace_s`` (default ``server.drain_s``), close clients."""
        self.http_app.ready = False
        await self.health.enter_graceful_shutdown()
        self.http_server.should_exit = True
        await self.grpc_server.stop(self.gateway.config.server.drain_s if grace_s is None else grace_s)
        await self.http_task
        await self.gateway.close()


async def start_gateway(config: GatewayConfig, runtime: Runtime) -> RunningGateway:
    """Start gRPC and HTTP servers for ``config`` (ports 0 pick free ports; see the result)."""
    gateway = Gateway(config, runtime)
    await gateway.start()
    server = config.server
    grpc_server, grpc_port, health = await create_server(gateway, server.grpc_host, server.grpc_port)
    await grpc_server.start()
    http_app = HTTPApp(gateway)
    uv_config = uvicorn.Config(
        http_app.app,
        host=server.http_host,
        port=server.http_port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=max(1, round(server.drain_s)),
    )
    http_server = _EmbeddedServer(uv_config)
    http_task = asyncio.create_task(http_server.serve())
    while not http_server.started:
        if http_task.done():
            await grpc_server.stop(0)
            await gateway.close()
            http_task.result()
            raise OSError(f"cannot bind HTTP to {server.http_host}:{server.http_port}")
        await asyncio.sleep(0.01)
    http_port = http_server.servers[0].sockets[0].getsockname()[1]
    http_app.ready = True
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return RunningGateway(gateway, http_app, grpc_server, health, http_server, http_task, grpc_port, http_port)


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when installed (less CPU per request), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--grpc-port", type=int, help="override server.grpc_port (0 = any free port)")
    parser.add_argument("--http-port", type=int, help="override server.http_port (0 = any free port)")
    parser.add_argument("--host", help="override both listen hosts")
    parser.add_argument("--scorer", help="override scorer.target, e.g. dns:///scorer:50051")
    parser.add_argument("--port-file", type=Path, help="write {grpc_port, http_port} as JSON here once serving")
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
    return replace(config, server=server, scorer=scorer)


async def _serve(config: GatewayConfig, runtime: Runtime, port_file: Path | None) -> None:
    running = await start_gateway(config, runtime)
    log.info(
        "gateway serving: gRPC on %s:%d, HTTP on %s:%d, scorer %s, breaker state %s",
        config.server.grpc_host,
        running.grpc_port,
        config.server.http_host,
        running.http_port,
        config.scorer.target,
        "in Redis" if runtime.redis_url else "local",
    )
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"grpc_port": running.grpc_port, "http_port": running.http_port}))
        tmp.replace(port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await running.stop()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
