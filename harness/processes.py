"""Processes, ports and readiness for tests and benchmarks: spawn a server with its output in a log
file, wait until it answers, stop it; a throw-away redis-server; Prometheus scrapes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ferryman import health


def free_port() -> int:
    """A free loopback port (for servers that cannot report the port they bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Any, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout_s:.0f} s")
        time.sleep(0.05)


def grpc_serving(target: str, timeout_s: float = 1.0) -> bool:
    """Whether ``target`` answers grpc.health.v1 Check ("") with SERVING."""
    return health.status(target, timeout_s=timeout_s) == "SERVING"


@dataclass
class Process:
    """One server process of the local cluster, its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    grpc_port: int = 0
    http_port: int = 0
    #: A gateway's admin listener (/metrics, /readyz).
    admin_port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(
    name: str, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Process:
    """Start ``argv`` (in ``cwd`` when given: ``python -m`` then imports that directory's packages), its
    output in ``workdir/NAME.log``."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    return Process(name, proc, log)


def children(pid: int) -> list[int]:
    """Child processes of ``pid``, started from any of its threads (Linux /proc; e.g. the gateway's
    learning worker, which an executor thread starts); [] where the process is gone."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the thread exited meanwhile
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def scrape(port: int, metric: str, **labels: str) -> Counter[str] | None:
    """Samples of one metric on ``127.0.0.1:port/metrics`` matching ``labels``, summed per label
    set (rendered ``k=v,...`` over the labels not filtered on); None when nothing answers."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return None
    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                rest = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in labels)
                totals[rest] += int(sample.value)
    return totals


class RedisServer:
    """A throw-away redis-server on a free loopback port, no persistence."""

    def __init__(self, workdir: Path, *, start_timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (run `make system-deps`)")
        self.port = free_port()
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = spawn("redis", [*argv, "--dir", str(workdir)], workdir)
        try:
            wait_for("redis", lambda: connects(self.port), start_timeout_s, self.process.proc)
        except RuntimeError:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Kill it (SIGKILL: tests use this to make Redis vanish mid-run)."""
        if self.process.proc.poll() is None:
            self.process.proc.kill()
            self.process.proc.wait(10)
