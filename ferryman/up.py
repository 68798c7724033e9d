"""``ferryman up``: run the scorer and the gateway together as child processes (``make run``).

The scorer listens on loopback; the gateway is pointed at it. On SIGINT/SIGTERM the gateway is
stopped first (it drains), then the scorer (and the demo provider), which ignore the SIGINT of a
terminal's Ctrl-C; if either child exits on its own, the other is stopped too and ``up`` exits with
the first child's status. Nothing outlives ``up``: if its own
parent goes away without signalling it (``timeout make run`` signals ``make`` only), ``up`` stops
the children and exits; if ``up`` itself is killed outright (SIGKILL), the kernel sends each child
SIGTERM (Linux ``PR_SET_PDEATHSIG``), so they drain and stop on their own. When gateway auth is enabled
and no client key is configured, a random key is generated for this run and printed, so
``make run`` works on a fresh clone without turning auth off.

Everything binds ``--host`` (default 127.0.0.1: a local run is not reachable from the network)
on the default ports (scorer 50051, its metrics 9090, gateway gRPC 50061 and HTTP 8080, the
last two from the config) plus ``--port-offset``, or the ports given one by one, so a second copy
runs beside the first with ``--port-offset 100`` (``make run PORT_OFFSET=100``). A port in use
stops start-up with an error naming it. Once both answer, ``up`` prints where everything listens.

``--demo`` (``make demo``) needs no provider keys: a third child serves the built-in demo provider
(``ferryman demo-provider``, :mod:`gateway.demo`: canned answers labelled ``[Ferryman demo]``) on
``--demo-port`` (8089 + offset), and the gateway uses ``config/gateway.demo.yaml``, whose two
keyless models point at it, or the ``--config`` given (e.g. the demo's with a ``learning:`` section);
models of either that point at the demo's default port follow ``--demo-port``. The client key is
``demo`` unless one is configured.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import yaml

from ferryman import paths
from ferryman.ports import MAX_PORT
from ferryman.ports import port as port_type
from gateway.config import GatewayConfig, add_config_argument, default_config_path, load_config
from gateway.demo import DEMO_PORT
from gateway.errors import ConfigError

STOP_TIMEOUT_S = 20.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


SCORER_PORT, SCORER_METRICS_PORT = 50051, 9090
ENV = "FERRYMAN_UP_"
DEMO_CONFIG = Path("config/gateway.demo.yaml")
DEMO_KEY = "demo"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else None
    except ValueError:  # e.g. `make run PORT_OFFSET=abc`
        print(f"ferryman up: {name}={value!r}: expected a whole number", file=sys.stderr)
        raise SystemExit(2) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, or_else=f"with --demo: {DEMO_CONFIG}")
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="router artifacts for the scorer")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder directory")
    parser.add_argument(
        "--host",
        default=os.environ.get(ENV + "HOST", "127.0.0.1"),
        help=f"address every server binds (0.0.0.0: all interfaces) [env {ENV}HOST]",
    )
    parser.add_argument(
        "--port-offset",
        type=int,
        default=_env_int(ENV + "PORT_OFFSET") or 0,
        help=f"added to every default port, to run beside another copy [env {ENV}PORT_OFFSET]",
    )
    parser.add_argument(
        "--scorer-port", type=port_type, default=_env_int(ENV + "SCORER_PORT"), help=f"scorer gRPC port ({SCORER_PORT})"
    )
    parser.add_argument(
        "--scorer-metrics-port",
        type=port_type,
        default=_env_int(ENV + "SCORER_METRICS_PORT"),
        help=f"scorer Prometheus port ({SCORER_METRICS_PORT}; 0: none; default also from FERRYMAN_SCORER_METRICS_PORT)",
    )
    parser.add_argument(
        "--grpc-port",
        type=port_type,
        default=_env_int(ENV + "GRPC_PORT"),
        help="gateway gRPC port (the config's server.grpc_port, 50061 in config/gateway.yaml)",
    )
    parser.add_argument(
        "--http-port",
        type=port_type,
        default=_env_int(ENV + "HTTP_PORT"),
        help="gateway HTTP port (the config's server.http_port, 8080 in config/gateway.yaml)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        default=os.environ.get(ENV + "DEMO", "") not in ("", "0"),
        help=f"no provider keys needed: serve the built-in demo provider (canned answers labelled as a demo), "
        f"with {DEMO_CONFIG} unless --config is given; client key {DEMO_KEY!r} unless one is set [env {ENV}DEMO]",
    )
    parser.add_argument(
        "--demo-port", type=port_type, default=_env_int(ENV + "DEMO_PORT"), help=f"demo provider port ({DEMO_PORT})"
    )
    parser.add_argument(
        "--admin-port",
        type=port_type,
        default=_env_int(ENV + "ADMIN_PORT"),
        help="gateway admin port: /metrics, /readyz (the config's admin.port, 9091 in config/gateway.yaml)",
    )


@dataclass(frozen=True)
class Addresses:
    """Where ``up``'s servers listen."""

    host: str
    scorer_port: int
    scorer_metrics_port: int
    grpc_port: int
    http_port: int
    admin_port: int

    @property
    def dial_host(self) -> str:
        """The host to connect to (loopback when binding every interface)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def ports(self) -> list[tuple[str, int]]:
        """(what, port) of every server ``up`` starts (a scorer metrics port of 0 is none)."""
        named = [("scorer gRPC", self.scorer_port)]
        named += [("scorer metrics", self.scorer_metrics_port)] if self.scorer_metrics_port else []
        named += [("gateway gRPC", self.grpc_port), ("gateway HTTP", self.http_port)]
        return [*named, ("gateway admin", self.admin_port)]

    def describe(self) -> list[str]:
        h = self.host
        metrics = f", metrics http://{h}:{self.scorer_metrics_port}/metrics" if self.scorer_metrics_port else ""
        return [
            f"scorer  gRPC {h}:{self.scorer_port}{metrics}",
            f"gateway gRPC {h}:{self.grpc_port}",
            f"gateway HTTP http://{h}:{self.http_port} (OpenAI base URL http://{h}:{self.http_port}/v1)",
            f"gateway admin http://{h}:{self.admin_port} (/metrics, /readyz)",
        ]


def addresses(
    args: argparse.Namespace, config_grpc_port: int, config_http_port: int, config_admin_port: int = 9091
) -> Addresses:
    """Ports given one by one win; the others are their defaults plus ``--port-offset``."""
    off = args.port_offset
    metrics = args.scorer_metrics_port
    if metrics is None:
        metrics = _env_int("FERRYMAN_SCORER_METRICS_PORT")
    if metrics is None:
        metrics = SCORER_METRICS_PORT + off
    return Addresses(
        host=args.host,
        scorer_port=SCORER_PORT + off if args.scorer_port is None else args.scorer_port,
        scorer_metrics_port=metrics,
        grpc_port=config_grpc_port + off if args.grpc_port is None else args.grpc_port,
        http_port=config_http_port + off if args.http_port is None else args.http_port,
        admin_port=config_admin_port + off if args.admin_port is None else args.admin_port,
    )


def _port_in_use(host: str, port: int) -> str | None:
    """Why ``port`` on ``host`` cannot be bound (None: it can). SO_REUSEADDR as the servers set it, so a
    port left in TIME_WAIT counts as free and only a listening socket as in use."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _check_ports(ports: list[tuple[str, int]], host: str) -> str | None:
    """An error naming every port of ``ports`` already taken on ``host`` (another copy of ``up``, say), or None.

    Checked before any child starts: the readiness probe would otherwise find the other copy's servers
    answering on these ports and print "ready" just before this copy's children fail to bind.
    """
    taken = [f"{port} ({what}: {why})" for what, port in ports if (why := _port_in_use(host, port))]
    if not taken:
        return None
    return (
        f"ferryman up: cannot listen on {host}: {'ports' if len(taken) > 1 else 'port'} {', '.join(taken)}; "
        "stop what uses it, or run beside it "
        "with other ports: --port-offset N (make run PORT_OFFSET=N) or --scorer-port, --grpc-port, ..."
    )


def _scorer_serving(addr: Addresses) -> bool:
    """The scorer's health is SERVING (every router loaded)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"{addr.dial_host}:{addr.scorer_port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5).status
    except grpc.RpcError:
        return False
    return bool(status == health_pb2.HealthCheckResponse.SERVING)


def _gateway_ready(addr: Addresses) -> bool:
    """The gateway's /readyz is 200."""
    import httpx

    try:
        return httpx.get(f"http://{addr.dial_host}:{addr.admin_port}/readyz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _gateway_env(config: GatewayConfig, demo: bool = False) -> dict[str, str]:
    """The environment for the gateway, with a client key for this run when none is configured
    (generated; ``demo`` in demo mode, where no provider key is spent)."""
    env = dict(os.environ)
    auth = config.auth
    if not auth.disabled and not auth.load_keys(env):
        if auth.keys_env is None:
            raise SystemExit("ferryman up: auth is enabled but no client keys are configured")
        if demo:
            env[auth.keys_env] = DEMO_KEY
            print(f"ferryman up: demo mode; client API key {DEMO_KEY!r} (set {auth.keys_env} to choose)", flush=True)
            return env
        key = "fm-" + secrets.token_urlsafe(24)
        env[auth.keys_env] = key
        print(f"ferryman up: no client API key configured; generated one for this run: {key}", flush=True)
        print(f"ferryman up: (set {auth.keys_env} to choose your own)", flush=True)
    return env


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when ``up`` dies (None off Linux).

    libc is loaded here, in ``up``; the hook only calls ``prctl`` between fork and exec. If ``up``
    died before the call took effect, the child exits at once instead of running unwatched.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    up_pid = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != up_pid:
            os._exit(1)

    return hook


def _without_ctrl_c(hook: Callable[[], None] | None) -> Callable[[], None]:
    """``hook``, then SIGINT ignored in the child (kept through exec; ``ferryman.signals.stop_event`` leaves an
    inherited ignore alone): a terminal's Ctrl-C reaches every process of its group, and the scorer and the demo
    provider must outlive the gateway's drain, so ``up`` stops them itself, after the gateway."""

    def ignore_sigint() -> None:
        if hook is not None:
            hook()
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return ignore_sigint


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the children in the reverse order of their start, each once the one after it has exited: the
    gateway drains (serving every request that arrives meanwhile) while the scorer and the demo provider it
    serves them with still answer."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _demo_config(source: Path, port: int, workdir: Path) -> Path:
    """``source`` (the demo configuration, or the one given with ``--demo``), its models that point at the demo
    provider's default port pointed at ``port``."""
    if port == DEMO_PORT:
        return source
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return source  # load_config says what is wrong with it
    for model in models.values():
        if isinstance(model, dict) and isinstance(model.get("base_url"), str):
            model["base_url"] = model["base_url"].replace(f":{DEMO_PORT}/", f":{port}/")
    path = workdir / source.name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ferryman-up-") as workdir:
        return _run(args, Path(workdir))


def _run(args: argparse.Namespace, workdir: Path) -> int:
    demo_port = DEMO_PORT + args.port_offset if args.demo_port is None else args.demo_port
    if args.demo:  # the demo's configuration, or the one given (was: --config was ignored with --demo)
        if args.config is not None:
            print(f"ferryman up: demo mode with --config {args.config}", flush=True)
        args.config = args.config or DEMO_CONFIG
        with contextlib.suppress(OSError, yaml.YAMLError):  # load_config below says what is wrong with the file
            args.config = _demo_config(args.config, demo_port, workdir)
    elif args.config is None:
        args.config = default_config_path()
    try:  # fail here, with the config's own message, before starting anything
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ferryman up: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    addr = addresses(args, config.server.grpc_port, config.server.http_port, config.admin.port)
    ports = addr.ports() + ([("demo provider", demo_port)] if args.demo else [])
    wrong = [f"{what} {port}" for what, port in ports if not 0 < port <= MAX_PORT]
    if wrong:  # e.g. --port-offset 99999; gRPC would bind such a port modulo 65536
        print(f"ferryman up: not a port number (1 to {MAX_PORT}): {', '.join(wrong)}", file=sys.stderr, flush=True)
        return 2
    taken = _check_ports(ports, addr.host)
    if taken:
        print(taken, file=sys.stderr, flush=True)
        return 2
    try:
        gateway_env = _gateway_env(config, demo=args.demo)
    except ConfigError as exc:  # the client keys: auth.keys_file missing or not a list of keys
        print(f"ferryman up: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    ferryman = [sys.executable, "-m", "ferryman"]
    scorer_cmd = [*ferryman, "scorer", "--routers-dir", str(args.routers_dir), "--encoder-dir", str(args.encoder_dir)]
    scorer_cmd += ["--host", addr.host, "--port", str(addr.scorer_port)]
    scorer_cmd += ["--metrics-port", str(addr.scorer_metrics_port)]
    gateway_cmd = [*ferryman, "gateway", "--config", str(args.config), "--host", addr.host]
    gateway_cmd += ["--scorer", f"dns:///{addr.dial_host}:{addr.scorer_port}"]
    gateway_cmd += ["--grpc-port", str(addr.grpc_port), "--http-port", str(addr.http_port)]
    gateway_cmd += ["--admin-port", str(addr.admin_port)]

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = os.getppid()
    hook = _die_with_parent_hook()
    print(f"ferryman up: starting on {addr.host}: " + "; ".join(addr.describe()), flush=True)
    names: list[str] = []
    children: list[subprocess.Popen[bytes]] = []
    if args.demo:  # first, so that the gateway's first requests find it
        demo_cmd = [*ferryman, "demo-provider", "--host", addr.dial_host, "--port", str(demo_port)]
        children.append(subprocess.Popen(demo_cmd, preexec_fn=_without_ctrl_c(hook)))
        names.append("demo provider")
    children.append(subprocess.Popen(scorer_cmd, preexec_fn=_without_ctrl_c(hook)))
    names.append("scorer")
    status = 0
    gateway_started = ready = False
    try:
        while not stopping:
            if os.getppid() != parent:
                print(f"ferryman up: parent process exited; stopping {' and '.join(names)}", flush=True)
                break
            exited = [(n, c.returncode) for n, c in zip(names, children, strict=True) if c.poll() is not None]
            if exited:
                name, status = exited[0]
                others = " and ".join(n for n in names if n != name)  # the gateway starts only once the scorer serves
                print(
                    f"ferryman up: {name} exited with status {status}" + (f"; stopping {others}" if others else ""),
                    flush=True,
                )
                break
            if not gateway_started:
                # The gateway starts against a serving scorer, so that what only the scorer can tell (a policy's
                # router that cannot route the configured tiers) stops start-up, as `ferryman gateway` does.
                if _scorer_serving(addr):
                    children.append(subprocess.Popen(gateway_cmd, env=gateway_env, preexec_fn=hook))
                    names.append("gateway")
                    gateway_started = True
            elif not ready and _gateway_ready(addr):
                ready = True
                lines = addr.describe()
                if args.demo:
                    lines.append(f"demo provider http://{addr.dial_host}:{demo_port}/v1 (canned answers, no keys)")
                print("ferryman up: ready", *(f"  {line}" for line in lines), sep="\n", flush=True)
            time.sleep(0.2)
    finally:
        _stop(children)
    return status
