"""Static checks of docker/*.Dockerfile and docker/requirements.py (the images themselves are built
and run by ``make image-smoke``: tests/deploy/test_images.py).

Multi-stage with pinned bases; the runtime stage is non-root (the manifests' user) and has no torch;
each runtime virtualenv gets its service's part of the serving dependencies, and the service's
modules import with nothing else installed; the entrypoint is the ``ferryman`` console script the
build stage installs, and its arguments parse with the real subcommand parser and equal the k8s
container args.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

from harness.cli_args import parse_ferryman_args

from .dockerfile import Stage, parse
from .k8s import ROOT, one, render

SERVICES = ("scorer", "gateway")
IMAGES = (*SERVICES, "fake-provider")
VENV = "/opt/venv"


def stages(service: str) -> list[Stage]:
    return parse(ROOT / "docker" / f"{service}.Dockerfile")


@cache
def requirements_py() -> ModuleType:
    """docker/requirements.py, the script the build stages run."""
    spec = importlib.util.spec_from_file_location("docker_requirements", ROOT / "docker" / "requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    # numeric, so that the cluster's runAsNonRoot can check it, and the user the manifests name
    pod = one(render("prod"), "Deployment", service)["spec"]["template"]["spec"]["securityContext"]
    assert final.all("USER")[-1] == f"{pod['runAsUser']}:{pod['runAsGroup']}"


@pytest.mark.parametrize("service", SERVICES)
def test_no_torch_in_any_stage_and_the_runtime_venv_gets_the_services_part(service: str) -> None:
    *build, final = stages(service)
    for stage in (*build, final):
        for kw, arg in stage.instructions:
            assert "torch" not in arg.split("&& !")[0] and "[lab]" not in arg, f"{kw} {arg}"
    copied = [arg.split()[1] for arg in final.all("COPY") if arg.startswith("--from=")]
    assert VENV in copied
    runs = " && ".join(r for s in build for r in s.all("RUN"))
    # The runtime virtualenv has no pip of its own: another one installs into it, only from the lists
    # docker/requirements.py writes for this service, and the project's wheel without dependencies.
    assert f"python3 -m venv --without-pip {VENV}" in runs
    installs = re.findall(rf"--python {VENV}/bin/python install (.*?)(?: &&|$)", runs)
    assert installs and all(
        re.fullmatch(r"-q (--no-deps )?(-r /tmp/[\w-]+\.txt|/tmp/wheel/\*\.whl)", i) for i in installs
    )
    lists = dict(re.findall(r"requirements\.py ((?:--no-deps )?[\w ]+?) > (/tmp/[\w-]+\.txt)", runs))
    for args in (a for a in lists if lists[a] in " ".join(installs)):
        assert args.removeprefix("--no-deps ").split() == [service], f"{VENV} gets the {service} part only"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if re.match(r"torch\b", d)]


def test_requirement_parts_cover_the_serving_dependencies() -> None:
    req = requirements_py()
    deps = req.dependencies()
    named = {req.canonical(n) for names in req.PARTS.values() for n in names}
    assert named == set(deps), "every serving dependency is in some image's part, and only those"
    for name in req.NO_DEPS:
        assert req.canonical(name) in deps
    gateway = set(req.requirements(["gateway"]))
    assert not {d for d in gateway if re.match(r"(onnx|numpy|tokenizers|safetensors)", d)}
    assert set(req.requirements(["scorer"], no_deps=False)) | set(req.requirements(["scorer"], no_deps=True)) == {
        deps[req.canonical(n)] for n in req.PARTS["scorer"]
    }
    out = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "requirements.py"), "gateway"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split("\n")[:-1] == req.requirements(["gateway"])
    bad = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "requirements.py"), "lab"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown part(s) lab" in bad.stderr


def _closure(names: list[str], no_deps: dict[str, str]) -> set[str]:
    """Installed distributions ``names`` pull in (their requirements, transitively; not those of NO_DEPS)."""
    req = requirements_py()
    seen: set[str] = set()
    todo = [req.canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in {req.canonical(n) for n in no_deps}:
            continue
        for spec in md.requires(name) or []:
            r = Requirement(spec)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(req.canonical(r.name))
    return seen


# Imports every module of the service (and of the ferryman command it runs) with every other
# installed distribution and project package made unimportable, as in its image.
_IMPORT_ALL = """
import importlib, importlib.abc, json, pkgutil, sys
blocked, packages, skip = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError("not in the image: " + name, name=name)
sys.meta_path.insert(0, Block())
for package in packages:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if not any(info.name == s or info.name.startswith(s + ".") for s in skip):
            importlib.import_module(info.name)
"""

# Modules that are not the service: the other commands of the ferryman package, and the scorer's
# graph builder (build stage only).
_NOT_SERVED = {
    "scorer": ["ferryman.__main__", "scorer.graphs", "ferryman.up", "ferryman.learn", "ferryman.gateway"],
    "gateway": ["ferryman.__main__", "ferryman.up", "ferryman.scorer"],
}


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_imports_with_only_its_part_installed(service: str) -> None:
    req = requirements_py()
    allowed = _closure(list(req.PARTS[service]), req.NO_DEPS)
    project = {"ferryman", "scorer", "gateway", "lab", "harness", "bench"}
    blocked = sorted(
        {m for m, dists in md.packages_distributions().items() if not {req.canonical(d) for d in dists} & allowed}
        - project
        | (project - {"ferryman", service})
    )
    assert "torch" in blocked or importlib.util.find_spec("torch") is None
    args = [json.dumps(blocked), json.dumps(["ferryman", service]), json.dumps(_NOT_SERVED[service])]
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_scorer_build_stage_builds_graphs_without_torch_and_ships_artifacts() -> None:
    *build, final = stages("scorer")
    runs = [r for s in build for r in s.all("RUN")]
    assert any("/opt/build/bin/python -m ferryman build all" in r for r in runs), "the build venv writes the graphs"
    assert any("requirements.py graphs > /tmp/graphs.txt" in r and "-r /tmp/graphs.txt" in r for r in runs)
    assert any("ferryman-runtime.pth" in r for r in runs), "the build venv sees the runtime venv's packages"
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
    runs = " && ".join(r for s in build for r in s.all("RUN"))
    assert f"python3 -m venv --without-pip {VENV}" in runs
    assert re.search(rf"pip --python {VENV}/bin/python install -q --no-deps /tmp/wheel/\*\.whl", runs), "the project"
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
def test_healthcheck_asks_the_port_the_probes_use(service: str) -> None:
    final = stages(service)[-1]
    (check,) = final.all("HEALTHCHECK")
    argv = json.loads(check.split("CMD", 1)[1])
    assert argv[:3] == [f"{VENV}/bin/ferryman", "health", argv[2]]
    (c,) = one(render("prod"), "Deployment", service)["spec"]["template"]["spec"]["containers"]
    assert argv[2] == f"127.0.0.1:{c['readinessProbe']['grpc']['port']}"
    assert final.all("STOPSIGNAL") == ["SIGTERM"]


def test_fake_provider_image_is_the_gateway_image_plus_the_fake() -> None:
    (stage,) = stages("fake-provider")
    (c,) = one(render("prod"), "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    assert stage.image == c["image"], "built FROM the gateway image the manifests run"
    assert [a.split()[:-1] for a in stage.all("COPY")] == [["harness/__init__.py", "harness/fake_provider.py"]]


@pytest.mark.parametrize("service", IMAGES)
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
