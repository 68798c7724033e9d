"""Artifact manifest validation: bad manifests are start-up errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scorer.artifacts import (
    ArtifactFile,
    Manifest,
    load_artifact,
    sha256_of,
    write_manifest,
)
from scorer.errors import ArtifactError


def _manifest(**kw: object) -> Manifest:
    base: dict[str, object] = dict(
        name="mf", kind="mf", version="1", models=("a", "b"), default_strong="a", default_weak="b"
    )
    base.update(kw)
    return Manifest(**base)  # type: ignore[arg-type]


def test_roundtrip_and_hash_check(tmp_path: Path) -> None:
    (tmp_path / "w.npz").write_bytes(b"weights")
    files = {"weights": ArtifactFile("w.npz", sha256_of(tmp_path / "w.npz"))}
    write_manifest(tmp_path, _manifest(files=files))
    art = load_artifact(tmp_path)
    assert art.manifest.models == ("a", "b")
    assert art.path("weights") == tmp_path / "w.npz"
    (tmp_path / "w.npz").write_bytes(b"corrupt")
    with pytest.raises(ArtifactError, match=r"w\.npz: SHA-256 mismatch"):
        load_artifact(tmp_path)


def test_missing_file_names_it_and_the_build_command(tmp_path: Path) -> None:
    files = {"onnx": ArtifactFile("model.onnx", None, "ferryman build routers")}
    write_manifest(tmp_path, _manifest(files=files))
    with pytest.raises(ArtifactError, match=r"model\.onnx.*ferryman build routers"):
        load_artifact(tmp_path)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"default_strong": "zzz"}, "not in models"),
        ({"models": ["a"]}, "at least two"),
        ({"format_version": 99}, "format_version"),
    ],
)
def test_invalid_manifest(tmp_path: Path, patch: dict[str, object], message: str) -> None:
    raw = _manifest().to_json()
    raw.update(patch)
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path)


def test_not_json(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(ArtifactError, match=r"manifest\.json: not valid JSON"):
        load_artifact(tmp_path)
