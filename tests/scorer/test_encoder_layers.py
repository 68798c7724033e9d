"""A truncated MiniLM (``EncoderSpec.layers``): built, recorded in manifests and caches, served at its depth.

A router trained on the first N layers' embeddings must never be scored with another depth's
embeddings: the depth is part of the manifest's encoder spec (format_version 3, so an older
scorer refuses it), of the graph file names, of ``Encoder.fingerprint`` and of the embedding
cache's file name; the scorer serves each router with the depth its manifest names, or refuses it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from harness.scorer import DEFAULT_ENCODER_DIR, copy_full_encoder
from scorer.artifacts import (
    FULL_LAYERS,
    LAYERS_FORMAT_VERSION,
    EncoderSpec,
    encoder_label,
    load_artifact,
    parse_manifest,
    write_manifest,
)
from scorer.core import ScoreQuery, ScorerCore
from scorer.encoder import ENCODER_META, Encoder, model_file
from scorer.errors import ArtifactError
from scorer.graphs.build import build_encoder, depths_named

PROMPTS = ("hi, how are you?", "Prove that for every prime p > 3, p^2 - 1 is divisible by 24. " * 3)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full encoder (copied from the set-up one) plus the 3-layer graphs, built here."""
    root = copy_full_encoder(tmp_path_factory.mktemp("layers") / "encoder")
    build_encoder(root, layers=[3])
    return root


def _truncated(src: Path, dest: Path, layers: int) -> Path:
    """A copy of an artifact whose manifest names an encoder of ``layers`` layers."""
    shutil.copytree(src, dest)
    manifest = load_artifact(dest).manifest
    encoder = dataclasses.replace(manifest.encoder or EncoderSpec(), layers=layers)
    write_manifest(dest, dataclasses.replace(manifest, encoder=encoder))
    return dest


def test_build_writes_each_depth_and_lists_it(encoder_dir: Path) -> None:
    meta = json.loads((encoder_dir / ENCODER_META).read_text())
    assert meta["layers"] == [FULL_LAYERS, 3]
    assert set(meta["sha256"]) >= {model_file("int8", unpadded=True, layers=3), model_file("fp32", layers=3)}
    graph = onnx.load(str(encoder_dir / model_file("fp32", layers=3)))
    assert sum(n.op_type == "Softmax" for n in graph.graph.node) == 3  # one attention per layer kept
    full = onnx.load(str(encoder_dir / model_file("fp32")))
    assert sum(n.op_type == "Softmax" for n in full.graph.node) == FULL_LAYERS
    # the full encoder's graphs were kept, not rebuilt: byte-identical to the set-up ones
    served = model_file("int8", unpadded=True)
    assert (encoder_dir / served).read_bytes() == (DEFAULT_ENCODER_DIR / served).read_bytes()


def test_a_truncated_encoder_has_its_own_numbers_and_fingerprint(encoder_dir: Path) -> None:
    full = Encoder(encoder_dir)
    three = Encoder(encoder_dir, spec=EncoderSpec(layers=3))
    a, b = full.encode(list(PROMPTS)), three.encode(list(PROMPTS))
    assert a.shape == b.shape == (2, 384)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float(np.abs(a - b).max()) > 0.01  # other embeddings
    assert full.fingerprint != three.fingerprint
    assert full.fingerprint == Encoder(DEFAULT_ENCODER_DIR).fingerprint  # the full depth's digest is unchanged


def test_a_missing_depth_is_refused_naming_the_build_command(tmp_path: Path) -> None:
    bare = copy_full_encoder(tmp_path / "enc")
    with pytest.raises(ArtifactError, match=r"keeps 4 of 6 layers.*ferryman build encoder --layers 4"):
        Encoder(bare, spec=EncoderSpec(layers=4))


def test_manifest_records_the_depth_and_needs_format_version_3(test_routers_dir: Path, tmp_path: Path) -> None:
    dest = _truncated(test_routers_dir / "mf", tmp_path / "mf", 3)
    raw = json.loads((dest / "manifest.json").read_text())
    assert raw["encoder"]["layers"] == 3
    assert raw["format_version"] == LAYERS_FORMAT_VERSION
    assert load_artifact(dest).manifest.encoder == EncoderSpec(layers=3)
    # the full depth is not written: such a manifest reads as before depths existed
    full = json.loads((test_routers_dir / "mf" / "manifest.json").read_text())
    assert "layers" not in full["encoder"] and full["format_version"] < LAYERS_FORMAT_VERSION
    # a truncated encoder under an older format_version (a reader that would ignore the field) is refused
    with pytest.raises(ArtifactError, match=r"encoder\.layers 3 needs format_version 3, is 2"):
        parse_manifest({**raw, "format_version": 2}, dest / "manifest.json")
    for bad in (0, 7, "3"):
        with pytest.raises(ArtifactError, match=r"encoder\.layers"):
            parse_manifest({**raw, "encoder": {**raw["encoder"], "layers": bad}}, dest / "manifest.json")


def test_the_scorer_serves_each_router_at_its_manifests_depth(
    test_routers_dir: Path, encoder_dir: Path, tmp_path: Path
) -> None:
    routers = tmp_path / "routers"
    shutil.copytree(test_routers_dir / "mf", routers / "mf")
    _truncated(test_routers_dir / "mf", routers / "mf3", 3)
    raw = json.loads((routers / "mf3" / "manifest.json").read_text())
    (routers / "mf3" / "manifest.json").write_text(json.dumps({**raw, "name": "mf3"}))
    assert depths_named(routers) == {FULL_LAYERS, 3}
    core = ScorerCore.load(routers, encoder_dir)
    assert {spec.layers for spec in core.encoders} == {FULL_LAYERS, 3}
    got = {r: [x.strong_win_rate for x in core.score([ScoreQuery(r, p) for p in PROMPTS])] for r in ("mf", "mf3")}
    # the same weights on another depth's embeddings: the truncated router's scores are its own
    router = core.routers["mf3"]
    emb = Encoder(encoder_dir, spec=EncoderSpec(layers=3)).encode(list(PROMPTS))
    m = router.manifest
    s, w = router.model_index(m.default_strong), router.model_index(m.default_weak)
    want = router.score(list(PROMPTS), emb, np.full(2, s), np.full(2, w))
    assert np.allclose(got["mf3"], want, atol=1e-6)
    assert not np.allclose(got["mf"], got["mf3"], atol=1e-4)
    # a directory without the 3-layer graphs refuses the router at load, naming what to build
    bare = copy_full_encoder(tmp_path / "bare")
    with pytest.raises(ArtifactError, match="--layers 3"):
        ScorerCore.load(routers, bare, only=["mf3"])


def test_a_bert_artifact_naming_a_truncated_encoder_is_refused(
    test_routers_dir: Path, encoder_dir: Path, tmp_path: Path
) -> None:
    """A BERT router runs its own full-depth graph: its manifest's encoder.layers could only be untrue (was: loaded,
    served at full depth, and ListRouters said 'first 3 of 6 layers')."""
    _truncated(test_routers_dir / "bert", tmp_path / "routers" / "bert", 3)
    with pytest.raises(ArtifactError, match=r"encoder.layers 3: a bert router cannot use a truncated encoder"):
        ScorerCore.load(tmp_path / "routers", encoder_dir)


def test_list_routers_names_a_truncated_encoders_depth() -> None:
    assert encoder_label(EncoderSpec()) == "all-MiniLM-L6-v2"
    assert encoder_label(EncoderSpec(layers=4)) == "all-MiniLM-L6-v2 (first 4 of 6 layers)"
