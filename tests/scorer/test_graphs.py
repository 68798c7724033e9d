"""The torch-free graph builder (``scorer.graphs``): deterministic bytes, faithful graphs, clear errors.

Equality with the torch export is proved in ``tests/train/test_graph_equality.py`` (lab extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from ferryman import paths
from harness.scorer import DEFAULT_ENCODER_DIR
from scorer.artifacts import EncoderSpec
from scorer.core import ScoreQuery, ScorerCore
from scorer.encoder import Encoder, GraphPair, model_file
from scorer.errors import ArtifactError
from scorer.graphs.base import BASE_ENCODER_ENV, BaseEncoder, read_base_encoder
from scorer.graphs.bert_graph import build_bert_graph
from scorer.graphs.build import apply_delta, build_bert_graphs, build_encoder, quantize_int8

SHIPPED = paths.routers_dir().resolve()  # the committed routers ($FERRYMAN_ROUTERS_DIR or ./routers)
PROMPTS = (
    "hi, how are you?",
    "What is 2 + 2?",
    "Prove that for every prime p > 3, p^2 - 1 is divisible by 24.",
    "Translate 'good morning, my friend' into French and Spanish.",
    "Write a Rust function that checks whether a number is prime, with tests. " * 6,
)


@pytest.fixture(scope="module")
def base() -> BaseEncoder:
    return read_base_encoder()


@pytest.fixture(scope="module")
def built(base: BaseEncoder, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An encoder directory and a copy of the shipped BERT router, both built here."""
    root = tmp_path_factory.mktemp("graphs")
    build_encoder(root / "encoder", base=base)
    bert = root / "routers" / "bert"
    shutil.copytree(SHIPPED / "bert", bert, ignore=shutil.ignore_patterns("*.onnx"))
    build_bert_graphs(bert, base=base)
    return root / "encoder", root / "routers"


def test_graphs_are_byte_identical_on_every_build(base: BaseEncoder, built: tuple[Path, Path], tmp_path: Path) -> None:
    encoder_dir, _ = built
    meta = json.loads((encoder_dir / "encoder.json").read_text())
    again = tmp_path / "again.onnx"
    model = build_bert_graph(base.weights, base.shape, masked=False)
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    quantize_int8(tmp_path / "fp32.onnx", again)
    served = encoder_dir / model_file("int8", unpadded=True)
    assert again.read_bytes() == served.read_bytes()
    # and the same bytes as `make setup` wrote in an earlier process, when this builder wrote them
    setup_meta = json.loads((DEFAULT_ENCODER_DIR / "encoder.json").read_text())
    if setup_meta.get("built_by") == meta["built_by"] and setup_meta.get("built_with") == meta["built_with"]:
        # (the set-up directory may also hold truncated depths, EncoderSpec.layers: compare the full one)
        assert {name: setup_meta["sha256"].get(name) for name in meta["sha256"]} == meta["sha256"]


def test_built_encoder_is_faithful(built: tuple[Path, Path]) -> None:
    encoder_dir, _ = built
    int8 = Encoder(encoder_dir)
    fp32 = Encoder(encoder_dir, precision="fp32")
    assert int8.has_unpadded_graph
    e8, e32 = int8.encode(PROMPTS), fp32.run(fp32.tokenizer.batch(list(PROMPTS)))  # fp32: one padded batch
    np.testing.assert_allclose(np.linalg.norm(e32, axis=1), 1.0, atol=1e-5)
    assert (np.sum(e8 * e32, axis=1) > 0.98).all()  # int8 keeps the direction
    # fp32 padded batch == one prompt at a time (padding is masked out)
    one_by_one = np.vstack([fp32.encode([p]) for p in PROMPTS])
    np.testing.assert_allclose(e32, one_by_one, atol=1e-5)
    # masked int8 graph == its mask-free twin on unpadded input
    masked_only = GraphPair(encoder_dir / model_file("int8"), None, 1)
    for p in PROMPTS:
        batch = int8.tokenizer.batch([p])
        np.testing.assert_allclose(masked_only.run(batch), int8.run(batch), atol=1e-5)


def test_built_bert_router_serves_and_its_twin_agrees(built: tuple[Path, Path]) -> None:
    encoder_dir, routers = built
    core = ScorerCore.load(routers, encoder_dir, only=["bert"])
    scores = [r.strong_win_rate for r in core.score([ScoreQuery("bert", p) for p in PROMPTS])]
    assert all(0.0 < s < 1.0 for s in scores) and len(set(scores)) == len(scores)
    bert = routers / "bert"
    twin = GraphPair(bert / "model.int8.onnx", bert / "model.int8.unpadded.onnx", 1)
    masked = GraphPair(bert / "model.int8.onnx", None, 1)
    tok = Encoder(encoder_dir).tokenizer  # the same vocabulary and window as the router's manifest
    for p in PROMPTS:
        batch = tok.batch([p])
        np.testing.assert_allclose(twin.run(batch), masked.run(batch), atol=1e-5)


def test_a_fine_tuned_layer_in_the_delta_changes_the_graph(base: BaseEncoder, tmp_path: Path) -> None:
    with np.load(SHIPPED / "bert" / "delta.npz") as npz:
        head = {k: npz[k] for k in npz.files}
    key = "encoder.layer.5.output.dense.bias"
    shift = np.random.default_rng(0).normal(0.0, 0.5, base.weights[key].shape)  # not uniform: LayerNorm follows
    tuned = {**head, f"inner.{key}": (base.weights[key] + shift).astype(np.float16)}
    outputs = []
    tok = Encoder(DEFAULT_ENCODER_DIR).tokenizer
    for delta in (head, tuned):
        weights, h = apply_delta(base, delta)
        path = tmp_path / f"{len(outputs)}.onnx"
        onnx.save(build_bert_graph(weights, base.shape, masked=True, head=h, output_name="logits"), str(path))
        outputs.append(GraphPair(path, None, 1).run(tok.batch(list(PROMPTS))))
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-2
    np.testing.assert_array_equal(base.weights[key], read_base_encoder().weights[key])


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        ({"head.weight": np.zeros((3, 384)), "inner.encoder.layer.9.output.dense.bias": np.zeros(384)}, "not a tensor"),
        ({"head.weight": np.zeros((3, 384)), "head.bias": np.zeros(3), "inner.pooler.x": np.zeros(2)}, "not a tensor"),
        ({"head.weight": np.zeros((3, 384)), "inner.encoder.layer.5.output.dense.bias": np.zeros(3)}, "has shape"),
        ({"inner.encoder.layer.5.output.dense.bias": np.zeros(384)}, "no head"),
        ({"head.weight": np.zeros((3, 100)), "head.bias": np.zeros(3)}, "head has shapes"),
    ],
)
def test_a_delta_that_does_not_fit_is_refused(base: BaseEncoder, delta: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        apply_delta(base, delta)


def test_missing_base_encoder_files_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BASE_ENCODER_ENV, str(tmp_path))
    with pytest.raises(ArtifactError, match=r"config\.json: base encoder file missing"):
        read_base_encoder()
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 384, "hidden_act": "relu"}))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="cannot read the base encoder"):
        read_base_encoder()


def test_encoder_spec_default_matches_the_built_encoder(built: tuple[Path, Path]) -> None:
    encoder_dir, _ = built
    meta = Encoder.read_meta(encoder_dir)
    assert meta["name"] == EncoderSpec().name and meta["dim"] == 384
    assert set(meta["sha256"]) == {model_file("fp32"), model_file("int8"), model_file("int8", unpadded=True)}
