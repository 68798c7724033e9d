"""Artifact manifest validation: bad manifests are start-up errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferryman import paths
from scorer.artifacts import (
    FORMAT_VERSIONS,
    HEAD_PRECISION_FORMAT_VERSION,
    MANIFEST_NAME,
    ArtifactFile,
    Manifest,
    load_artifact,
    parse_manifest,
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


def test_rewriting_a_manifest_never_shows_a_reader_a_partial_file(tmp_path: Path) -> None:
    """``ferryman calibrate`` rewrites manifests in place while a hot-reloading scorer may read them."""
    import threading

    big = _manifest(provenance={"note": "x" * 200_000})
    write_manifest(tmp_path, big)
    with (tmp_path / "manifest.json").open(encoding="utf-8") as before:  # a reader that opened it earlier
        write_manifest(tmp_path, _manifest())
        assert json.loads(before.read()) == big.to_json()  # still reads the whole old file: replaced, not rewritten
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
            except ValueError as exc:
                seen.append(str(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(100):
            write_manifest(tmp_path, _manifest(provenance={"note": str(i) * 200_000}))
    finally:
        stop.set()
        reader.join()
    assert seen == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary file left


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


HEAD = {"beta": 0.3, "mean": 5.78, "std": 0.76}


def test_format_version_follows_the_length_head(tmp_path: Path) -> None:
    """A headed artifact is written as format_version 2 (older scorers refuse it); one without stays 1."""
    plain, headed = tmp_path / "plain", tmp_path / "headed"
    write_manifest(plain, _manifest())
    write_manifest(headed, _manifest(params={"length_head": HEAD, "k": 1}))
    assert json.loads((plain / "manifest.json").read_text())["format_version"] == 1
    assert json.loads((headed / "manifest.json").read_text())["format_version"] == 2
    assert load_artifact(plain).manifest.format_version == 1
    loaded = load_artifact(headed).manifest
    assert loaded.format_version == 2 and loaded.params["length_head"] == HEAD


#: The message for a manifest written between 65bbbf2 (params.head_precision) and format_version 4.
FP32_HEAD_AT_2 = (
    r"params\.head_precision 'fp32' needs format_version 4, is 2 \(written before format_version 4 marked the "
    r"head's precision: set format_version 4, then `ferryman build routers --routers-dir \S+` rebuilds"
)


def test_format_version_follows_the_head_precision(tmp_path: Path) -> None:
    """An fp32 BERT head is format_version 4: a reader that ignored params.head_precision (a builder older than
    65bbbf2) would quantise the head and serve other probabilities, so it must refuse the manifest instead
    ("unsupported format_version 4 (expected 1 or 2 or 3)"). The default int8 head keeps the version."""
    cases = {
        "fp32": ({"head_precision": "fp32"}, 4),
        "fp32-headed": ({"head_precision": "fp32", "length_head": HEAD}, 4),
        "int8": ({"head_precision": "int8", "length_head": HEAD}, 2),
        "default": ({"length_head": HEAD}, 2),
    }
    for name, (params, version) in cases.items():
        write_manifest(tmp_path / name, _manifest(kind="bert", params=params))
        assert json.loads((tmp_path / name / "manifest.json").read_text())["format_version"] == version, name
        assert load_artifact(tmp_path / name).manifest.params == params
    assert HEAD_PRECISION_FORMAT_VERSION == 4 and max(FORMAT_VERSIONS) == 4


def test_the_shipped_bert_manifest_is_format_version_4_and_loads() -> None:
    raw = json.loads((paths.routers_dir() / "bert" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert (raw["params"]["head_precision"], raw["format_version"]) == ("fp32", HEAD_PRECISION_FORMAT_VERSION)
    assert parse_manifest(raw, Path("manifest.json")).format_version == 4


@pytest.mark.parametrize(
    ("fmt", "params", "message"),
    [
        (1, {"length_head": HEAD}, r"manifest\.json: params\.length_head needs format_version 2, is 1"),
        (2, {}, r"manifest\.json: format_version 2 is for an artifact with params\.length_head"),
        (3, {"length_head": HEAD}, r"params\.length_head needs format_version 2, is 3"),
        (3, {}, r"format_version 3 is for an artifact with params\.length_head, a truncated encoder"),
        (4, {}, r"format_version 4 is for an artifact with .* or an fp32 BERT head \(params\.head_precision\)"),
        (4, {"length_head": HEAD}, r"params\.length_head needs format_version 2, is 4"),
        (4, {"head_precision": "int8"}, r"expected format_version 1"),  # int8 is the default: every builder's
        (2, {"length_head": HEAD, "head_precision": "fp32"}, FP32_HEAD_AT_2),
        (3, {"head_precision": "fp32"}, r"params\.head_precision 'fp32' needs format_version 4, is 3"),
        (5, {"length_head": HEAD}, r"unsupported format_version 5 \(expected 1 or 2 or 3 or 4\)"),
        ("2", {"length_head": HEAD}, r"unsupported format_version '2'"),
        (True, {}, r"unsupported format_version True"),
    ],
)
def test_format_version_must_match_the_content(tmp_path: Path, fmt: object, params: object, message: str) -> None:
    raw = _manifest().to_json() | {"format_version": fmt, "params": params}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path)
