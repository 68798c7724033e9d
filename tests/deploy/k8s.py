"""Render the kustomize overlays and look things up in the rendered objects."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")

Obj = dict[str, Any]


def venv_tool(name: str) -> str:
    """A command installed in this virtualenv (dev extra), else on PATH."""
    local = Path(sys.prefix) / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `make setup` (the dev extra installs it)")
    return found


@cache
def render_text(overlay: str) -> str:
    """`kubectl kustomize k8s/overlays/<overlay>` output."""
    out = subprocess.run(
        [venv_tool("kubectl"), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def render(overlay: str) -> list[Obj]:
    """The rendered objects of one overlay (fresh copies; tests may mutate them)."""
    return [d for d in yaml.safe_load_all(render_text(overlay)) if d]


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """Objects of a kind (and name; ConfigMap names carry kustomize's hash suffix)."""
    return [
        o
        for o in objs
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name or _hashed(o, kind, name))
    ]


def _hashed(o: Obj, kind: str, name: str) -> bool:
    return kind == "ConfigMap" and str(o["metadata"]["name"]).startswith(name + "-")


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def containers(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(Deployment, container) for every container, init containers included."""
    for dep in find(objs, "Deployment"):
        spec = dep["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield dep, c


def port_named(container: Obj, name: str) -> int:
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == name))


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects a label set."""
    return all(labels.get(k) == v for k, v in selector.items())
