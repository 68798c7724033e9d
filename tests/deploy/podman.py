"""Containers for the image smoke test (``make image-smoke``): podman as a subprocess.

``Container.start`` runs an image the way a Kubernetes container spec of ``k8s/`` runs it (args,
plain env values, the image's own user, read-only root filesystem with an ``emptyDir`` as a tmpfs,
all capabilities dropped, no privilege escalation, config mounted read-only), on a podman network
where the others reach it by name, with its container ports published on 127.0.0.1 (random host
ports). ``REPORT`` collects the figures the run prints at the end (sizes, start and drain times).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CONTAINERS_CONF = Path(__file__).resolve().parents[2] / "docker" / "containers.conf"

#: Lines printed after the run (tests/deploy/conftest.py's terminal summary).
REPORT: list[str] = []


def available() -> bool:
    return shutil.which("podman") is not None


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``podman ARGS`` with the project's podman settings (docker/containers.conf unless
    ``CONTAINERS_CONF`` names others); raises with podman's own message when ``check`` and it fails."""
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF") or str(CONTAINERS_CONF)}
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and out.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} -> exit {out.returncode}: {out.stderr.strip()[-2000:]}")
    return out


def image_size(image: str) -> int:
    """Uncompressed size in bytes, as ``podman images`` shows it."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def image_exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


@contextmanager
def network(name: str) -> Iterator[str]:
    """A podman bridge network with name resolution between its containers; removed afterwards."""
    podman("network", "rm", "-f", name, check=False)
    podman("network", "create", name)
    try:
        yield name
    finally:
        podman("network", "rm", "-f", name, check=False)


def poll(what: str, check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.05) -> T:
    """``check()`` until it returns something truthy; raises naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout_s:.0f} s")
        time.sleep(interval_s)


@dataclass
class Container:
    """One running container, by name."""

    name: str
    image: str
    ports: dict[str, int] = field(default_factory=dict)  # the spec's port name -> host port on 127.0.0.1
    started_at: float = 0.0  # time.monotonic() just before `podman run`

    @classmethod
    def start(
        cls,
        name: str,
        image: str,
        spec: dict[str, Any],
        *,
        net: str,
        args: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        volumes: dict[str, Path] | None = None,
    ) -> Container:
        """Run ``image`` as the k8s container ``spec`` describes (``args``/``env`` override and add)."""
        podman("rm", "-f", "-t", "0", name, check=False)
        sc = spec.get("securityContext", {})
        flags = ["--name", name, "--network", net, "--network-alias", spec["name"]]
        # The images' HEALTHCHECK is run on demand (`podman healthcheck run`): no systemd timer here.
        flags += ["--health-interval", "disable"]
        if sc.get("readOnlyRootFilesystem"):
            flags += ["--read-only", "--read-only-tmpfs=false"]
        if "ALL" in sc.get("capabilities", {}).get("drop", []):
            flags += ["--cap-drop", "ALL"]
        if sc.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        mounts = {m["name"]: m for m in spec.get("volumeMounts", [])}
        for mount in mounts.values():
            if mount["name"] == "tmp":  # an emptyDir in the manifests
                flags += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777,size=64m"]
        for vol, host_dir in (volumes or {}).items():
            flags += ["-v", f"{host_dir}:{mounts[vol]['mountPath']}:ro"]
        values = {e["name"]: e["value"] for e in spec.get("env", []) if "value" in e}
        for key, value in {**values, **(env or {})}.items():
            flags += ["-e", f"{key}={value}"]
        ports = {p["name"]: int(p["containerPort"]) for p in spec.get("ports", [])}
        for port in ports.values():
            flags += ["-p", f"127.0.0.1::{port}"]
        argv = list(spec.get("args", []) if args is None else args)
        started = time.monotonic()
        podman("run", "-d", *flags, image, *argv)
        container = cls(name, image, started_at=started)
        container.ports = {name: container._host_port(port) for name, port in ports.items()}
        return container

    def _host_port(self, port: int) -> int:
        line = podman("port", self.name, f"{port}/tcp").stdout.strip().splitlines()[0]
        return int(line.rsplit(":", 1)[1])

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *argv, check=False)

    def kill(self, sig: str = "TERM") -> float:
        """Send a signal to PID 1; returns time.monotonic() just before."""
        sent = time.monotonic()
        podman("kill", "--signal", sig, self.name)
        return sent

    def wait(self, timeout_s: float) -> int:
        """Exit status once the container has stopped (raises after ``timeout_s``)."""
        return int(podman("wait", self.name, timeout=timeout_s).stdout.strip())

    def state(self) -> str:
        return podman("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)
