"""Versioned router directories: immutable versions, an atomic pointer, history and rollback targets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.scorer import build_test_routers
from scorer import versions
from scorer.artifacts import discover_artifacts
from scorer.errors import ArtifactError


@pytest.fixture
def router_dir(test_routers_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "routers" / "mf"
    shutil.copytree(test_routers_dir / "mf", dest)
    return dest


def _add_version(router_dir: Path) -> str:
    with versions.new_version(router_dir) as (version, tmp):
        for f in ("manifest.json", "weights.npz"):
            shutil.copy(router_dir / f, tmp / f)
    return version


def test_an_unversioned_directory_serves_its_base(router_dir: Path) -> None:
    resolved = versions.resolve(router_dir)
    assert resolved.version == versions.BASE and resolved.path == router_dir
    assert resolved.artifact_version.startswith("base@") and len(resolved.artifact_version) == len("base@") + 12
    assert versions.list_versions(router_dir) == ["base"]
    assert discover_artifacts(router_dir.parent) == [router_dir]


def test_new_versions_are_numbered_and_the_pointer_moves_atomically(router_dir: Path) -> None:
    v1, v2 = _add_version(router_dir), _add_version(router_dir)
    assert (v1, v2) == ("v0001", "v0002")
    assert not [p for p in (router_dir / "versions").iterdir() if p.name.startswith(".tmp")]
    assert versions.current_version(router_dir) == "base"  # writing a version never serves it
    assert versions.set_current(router_dir, v1, action="promote") == "base"
    assert versions.set_current(router_dir, v2, action="promote", evidence={"diff": 0.1}) == v1
    resolved = versions.resolve(router_dir)
    assert resolved.version == v2 and resolved.path == router_dir / "versions" / v2
    assert [h["to"] for h in versions.history(router_dir)] == [v1, v2]
    assert versions.history(router_dir)[-1]["evidence"] == {"diff": 0.1}
    assert versions.list_versions(router_dir) == ["base", v1, v2]


def test_rollback_walks_back_through_promotions(router_dir: Path) -> None:
    v1, v2 = _add_version(router_dir), _add_version(router_dir)
    with pytest.raises(ArtifactError, match="nothing earlier"):
        versions.previous_version(router_dir)
    versions.set_current(router_dir, v1, action="promote")
    versions.set_current(router_dir, v2, action="promote")
    assert versions.previous_version(router_dir) == v1
    versions.set_current(router_dir, v1, action="rollback")
    assert versions.previous_version(router_dir) == "base"  # the rollback itself is not a promotion
    versions.set_current(router_dir, "base", action="rollback")
    with pytest.raises(ArtifactError):
        versions.previous_version(router_dir)


def test_a_failed_write_leaves_nothing_and_bad_pointers_are_named(router_dir: Path) -> None:
    with pytest.raises(RuntimeError), versions.new_version(router_dir) as (_, tmp):
        (tmp / "half.npz").write_bytes(b"x")
        raise RuntimeError("training crashed")
    assert versions.list_versions(router_dir) == ["base"] and not list((router_dir / "versions").iterdir())
    with pytest.raises(ArtifactError, match="does not exist"):
        versions.set_current(router_dir, "v0009", action="promote")
    (router_dir / versions.POINTER).write_text("../../etc\n")
    with pytest.raises(ArtifactError, match="bad version id"):
        versions.resolve(router_dir)
    (router_dir / versions.POINTER).write_text("v0007\n")
    with pytest.raises(ArtifactError, match="v0007"):
        versions.resolve(router_dir)


def test_a_directory_with_only_versions_is_a_router(tmp_path: Path) -> None:
    routers = build_test_routers(tmp_path / "src")
    only = tmp_path / "routers" / "mf"
    only.mkdir(parents=True)
    with versions.new_version(only) as (version, tmp):
        for f in ("manifest.json", "weights.npz"):
            shutil.copy(routers / "mf" / f, tmp / f)
    versions.set_current(only, version, action="promote")
    assert versions.is_router_dir(only) and versions.list_versions(only) == [version]
    assert versions.resolve(only).path == only / "versions" / version
