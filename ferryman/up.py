"""``ferryman up``: run the scorer and the gateway together as child processes (``make run``).

The scorer listens on loopback; the gateway is pointed at it. SIGINT/SIGTERM are forwarded
to both children, which drain and stop; if either child exits on its own, the other is
stopped too and ``up`` exits with the first child's status. Nothing outlives ``up``: if its own
parent goes away without signalling it (``timeout make run`` signals ``make`` only), ``up`` stops
the children and exits; if ``up`` itself is killed outright (SIGKILL), the kernel sends each child
SIGTERM (Linux ``PR_SET_PDEATHSIG``), so they drain and stop on their own. When gateway auth is enabled
and no client key is configured, a random key is generated for this run and printed, so
``make run`` works on a fresh clone without turning auth off.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from ferryman import paths
from gateway.config import add_config_argument

STOP_TIMEOUT_S = 20.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="router artifacts for the scorer")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder directory")
    parser.add_argument("--scorer-port", type=int, default=50051, help="scorer gRPC port (on 127.0.0.1)")
    parser.add_argument(
        "--grpc-port", type=int, help="override the config's server.grpc_port (50061 in config/gateway.yaml)"
    )
    parser.add_argument(
        "--http-port", type=int, help="override the config's server.http_port (8080 in config/gateway.yaml)"
    )


def _gateway_env(config_path: Path) -> dict[str, str]:
    """The environment for the gateway, with a generated client key when none is configured."""
    from gateway.config import load_config

    env = dict(os.environ)
    config = load_config(config_path)  # fail here, with the config's own message, before starting anything
    auth = config.auth
    if not auth.disabled and not auth.load_keys(env):
        if auth.keys_env is None:
            raise SystemExit("ferryman up: auth is enabled but no client keys are configured")
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


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(args: argparse.Namespace) -> int:
    gateway_env = _gateway_env(args.config)
    ferryman = [sys.executable, "-m", "ferryman"]
    scorer_cmd = [
        *ferryman,
        "scorer",
        "--routers-dir",
        str(args.routers_dir),
        "--encoder-dir",
        str(args.encoder_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.scorer_port),
    ]
    gateway_cmd = [
        *ferryman,
        "gateway",
        "--config",
        str(args.config),
        "--scorer",
        f"dns:///127.0.0.1:{args.scorer_port}",
    ]
    if args.grpc_port is not None:
        gateway_cmd += ["--grpc-port", str(args.grpc_port)]
    if args.http_port is not None:
        gateway_cmd += ["--http-port", str(args.http_port)]

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = os.getppid()
    hook = _die_with_parent_hook()
    children = [
        subprocess.Popen(scorer_cmd, preexec_fn=hook),
        subprocess.Popen(gateway_cmd, env=gateway_env, preexec_fn=hook),
    ]
    names = ("scorer", "gateway")
    status = 0
    try:
        while not stopping:
            if os.getppid() != parent:
                print("ferryman up: parent process exited; stopping scorer and gateway", flush=True)
                break
            exited = [(n, c.returncode) for n, c in zip(names, children, strict=True) if c.poll() is not None]
            if exited:
                name, status = exited[0]
                print(f"ferryman up: {name} exited with status {status}; stopping the other", flush=True)
                break
            time.sleep(0.2)
    finally:
        _stop(children)
    return status
