"""Static checks of docker/*.Dockerfile (no Docker engine runs here or in CI).

Multi-stage with pinned bases; the runtime stage is non-root and has no torch; the entrypoint
is the ``ferryman`` console script the build stage installs, and its arguments parse with the
real subcommand parser and equal the k8s container args.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.cli_args import parse_ferryman_args

from .dockerfile import Stage, parse
from .k8s import ROOT, one, render

SERVICES = ("scorer", "gateway")
VENV = "/opt/venv"


def stages(service: str) -> list[Stage]:
    return parse(ROOT / "docker" / f"{service}.Dockerfile")


def _pinned(image: str) -> bool:
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    _, _, tag = image.rpartition(":")
    return re.match(r"^\d+\.\d+\.\d+", tag) is not None  # an exact release, never latest or a major


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_with_pinned_bases(service: str) -> None:
    st = stages(service)
    assert len(st) >= 2, "build and runtime stages"
    names = {s.name for s in st if s.name}
    for s in st:
        assert s.image in names or _pinned(s.image), f"base image not pinned: {s.image}"


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_stage_runs_as_a_created_non_root_user(service: str) -> None:
    final = stages(service)[-1]
    user = final.all("USER")[-1].split(":")[0]
    assert user not in ("0", "root")
    assert any(f"--uid {user}" in run for run in final.all("RUN")), "the user is created in this stage"


@pytest.mark.parametrize("service", SERVICES)
def test_no_torch_in_the_runtime_stage(service: str) -> None:
    *build, final = stages(service)
    for kw, arg in final.instructions:
        assert "torch" not in arg and "[lab]" not in arg, f"runtime stage: {kw} {arg}"
    copied = [arg.split()[1] for arg in final.all("COPY") if arg.startswith("--from=")]
    assert VENV in copied
    assert all(not src.startswith("/opt/train") for src in copied)
    # The copied virtualenv gets the project's serving dependencies only, and torch is not one.
    venv_runs = [r for s in build for r in s.all("RUN") if f"{VENV}/bin/pip install" in r]
    assert venv_runs and all("torch" not in r.split("&& !")[0] and "[lab]" not in r for r in venv_runs)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if re.match(r"torch\b", d)]


def test_scorer_build_stage_builds_graphs_without_torch_and_ships_artifacts() -> None:
    *build, final = stages("scorer")
    runs = [r for s in build for r in s.all("RUN")]
    assert any(f"{VENV}/bin/ferryman build all" in r for r in runs), "the serving virtualenv builds the graphs"
    assert all("torch" not in r.split("&& !")[0] and "[lab]" not in r for r in runs)
    _, ns = parse_ferryman_args(final.last_exec_form("CMD"))
    targets = {arg.split()[-1] for arg in final.all("COPY") if arg.startswith("--from=")}
    assert {str(ns.routers_dir), str(ns.encoder_dir)} <= targets


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_the_installed_console_script(service: str) -> None:
    *build, final = stages(service)
    entry = final.last_exec_form("ENTRYPOINT")
    assert entry == [f"{VENV}/bin/ferryman"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ferryman"] == "ferryman.cli:main"
    assert any(f"python -m venv {VENV}" in r and f"{VENV}/bin/pip install ." in r for s in build for r in s.all("RUN"))
    command, _ = parse_ferryman_args(final.last_exec_form("CMD"))
    assert command == service


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_runs_the_image_command_on_its_exposed_ports(service: str) -> None:
    final = stages(service)[-1]
    dep = one(render("prod"), "Deployment", service)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"].split(":")[0] == f"ferryman/{service}"
    cmd = final.last_exec_form("CMD")
    assert c["args"][: len(cmd)] == cmd, "the cluster runs the image's command (plus cluster-only flags)"
    exposed = {int(p) for arg in final.all("EXPOSE") for p in arg.split()}
    assert exposed == {p["containerPort"] for p in c["ports"]}


@pytest.mark.parametrize("service", SERVICES)
def test_dockerignore_admits_every_copied_path(service: str) -> None:
    ignore = (ROOT / "docker" / f"{service}.Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "allow-list: everything else stays out of the build context"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for stage in stages(service):
        for arg in stage.all("COPY"):
            if arg.startswith("--from="):
                continue
            *sources, _dest = arg.split()
            for src in sources:
                assert src in allowed, f"COPY {src} is excluded by the .dockerignore"
                assert (ROOT / src).exists(), f"COPY {src}: no such path"


def test_gateway_image_carries_no_models() -> None:
    for stage in stages("gateway"):
        for arg in stage.all("COPY"):
            assert not {"routers", "scorer", "build"} & set(arg.split()), arg


def test_dockerfiles_are_read_correctly(tmp_path: Path) -> None:
    """The reader itself: continuations joined, comments skipped, ARG defaults substituted."""
    path = tmp_path / "Dockerfile"
    path.write_text('ARG BASE=python:3.11.7-slim\n# c\nFROM ${BASE} AS b\nRUN a \\\n  && b\nFROM b\nCMD ["x"]\n')
    st = parse(path)
    assert [(s.image, s.name) for s in st] == [("python:3.11.7-slim", "b"), ("b", None)]
    assert st[0].all("RUN") == ["a && b"]
    assert st[1].last_exec_form("CMD") == ["x"]


def test_gateway_runs_without_the_scorer_package() -> None:
    """The gateway image has no scorer/: `ferryman gateway` must not import it."""
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('scorer', 'torch'):\n"
        "            raise ImportError('not in the gateway image: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from ferryman.cli import COMMANDS\n"
        "import importlib; importlib.import_module(COMMANDS['gateway'][0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
