"""BERT probe on the served graph's features (``BertConfig.probe_features = "served"``).

The probe alone is a head on the pooled vector of the int8 graph the scorer runs; these tests check
that ``ServedFeatures`` computes exactly that vector, that a router trained on it serves its probe,
and that the option is typed and refuses what it cannot do.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from harness.scorer import DEFAULT_ENCODER_DIR
from lab.data.benchmarks import STRONG, WEAK, LabeledPrompt
from lab.data.embed_cache import cache_path
from lab.eval.metrics import apgr_by_benchmark
from lab.select.bert import Candidate, FeatureSources, Split, evaluate, probe_candidates, probe_scores
from lab.train.bert import (
    SERVED_STEM,
    BertConfig,
    BertTrainer,
    ServedFeatures,
    bert_labels,
    bert_weights,
    load_delta,
    probe_head,
)
from lab.train.data import Pair, TrainingData
from lab.train.jobs import Target, TrainContext
from lab.train.recipe import load_recipe, train_recipe
from scorer.artifacts import MANIFEST_NAME, EncoderSpec, load_artifact
from scorer.encoder import make_session
from scorer.errors import ArtifactError
from scorer.graphs.base import read_base_encoder
from scorer.graphs.bert_graph import Head, build_bert_graph
from scorer.graphs.build import build_bert_graphs, quantize_int8
from scorer.routers import load_router
from scorer.routers.base import LoadContext

SPEC = EncoderSpec(max_tokens=32, head_tokens=8)
PROMPTS = [
    "hi, how are you?",
    "What is 2 + 2?",
    "Prove that for every prime p > 3, p^2 - 1 is divisible by 24.",
    "Translate 'good morning' into French.",
    "Write a Rust function that checks whether a number is prime using a sieve, and explain its cost. " * 3,
    "Summarise the plot of Hamlet in two sentences.",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedFeatures:
    return ServedFeatures(SPEC, tmp_path_factory.mktemp("bert-served-cache"), progress=False)


def _router_graph_head_input(head: Head, tmp: Path) -> tuple[Path, str]:
    """A probe-only router's unpadded graph as ``ferryman build routers`` writes it (int8, whole), with its
    head's input added as a second output, written under ``tmp``; returns (path, that output's name)."""
    base = read_base_encoder()
    model = build_bert_graph(base.weights, base.shape, masked=False, head=head, output_name="logits")
    pooled = next(n for n in model.graph.node if n.op_type == "Gemm").input[0]
    model.graph.output.append(helper.make_tensor_value_info(pooled, TensorProto.FLOAT, ["batch", 384]))
    onnx.save(model, str(tmp / "fp32.onnx"))
    quantize_int8(tmp / "fp32.onnx", tmp / "int8.onnx")
    return tmp / "int8.onnx", pooled


def test_served_features_are_the_served_graphs_head_input_bit_for_bit(served: ServedFeatures, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    head = Head(rng.normal(0, 0.1, (3, 384)).astype(np.float32), np.zeros(3, np.float32))
    path, _ = _router_graph_head_input(head, tmp_path)
    session = make_session(path, 1)
    ids = served.encoder.tokenizer.ids(PROMPTS)
    expected = np.stack(
        [session.run(None, {"input_ids": np.array([s]), "token_type_ids": np.zeros((1, len(s)), np.int64)})[1][0]
         for s in ids]
    )  # fmt: skip
    got = served.features(PROMPTS)
    assert got.dtype == np.float32 and got.shape == (len(PROMPTS), 384)
    np.testing.assert_array_equal(got, expected)
    # not the encoder's unit vectors: the head reads the mean-pooled states as they are
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-2)


def test_served_features_are_cached_in_their_own_file_keyed_by_the_graph(served: ServedFeatures) -> None:
    first = served.features(PROMPTS[:3])
    path = cache_path(served.cache_dir, served.encoder, SERVED_STEM)  # type: ignore[arg-type]
    assert path.is_file() and path.name.startswith("bert-pooled-") and "-32-8" in path.name
    with np.load(path) as data:
        assert str(data["fingerprint"]) == served.encoder.fingerprint and len(data["keys"]) >= 3
    again = ServedFeatures(SPEC, served.cache_dir, progress=False)
    assert again.encoder.fingerprint == served.encoder.fingerprint  # the same graph, rebuilt
    np.testing.assert_array_equal(again.features(PROMPTS[:3]), first)


def _data() -> TrainingData:
    pairs = [Pair(p, STRONG, WEAK, i % 3, "mmlu", f"k{i}") for i, p in enumerate(PROMPTS * 3)]
    return TrainingData(pairs, ["mmlu"], counts={"mmlu": len(pairs)})


@pytest.mark.parametrize(("head", "atol"), [("int8", 0.05), ("fp32", 1e-6)])
def test_a_served_probe_router_is_its_probe_on_the_served_features(
    tmp_path: Path, served: ServedFeatures, head: str, atol: float
) -> None:
    """The router the scorer serves gives the probe's probabilities on the served features: exactly (up to
    float rounding) with an fp32 head, within the int8 head's rounding with the default int8 one."""
    data = _data()
    sets = ["probe_features=served", f"served_head={head}", "probe_c=1.0", "max_tokens=32", "head_tokens=8"]
    recipe = load_recipe("bert", sets)
    assert (recipe.settings.probe_features, recipe.settings.served_head) == ("served", head)
    ctx = TrainContext(DEFAULT_ENCODER_DIR, cache_dir=served.cache_dir, threads=1)
    out = train_recipe(recipe, data, Target(tmp_path / "bert", "bert", STRONG, WEAK), ctx)
    artifact = load_artifact(out)
    assert artifact.manifest.provenance["cfg_probe_features"] == "served"
    assert artifact.manifest.params.get("head_precision", "int8") == head
    delta = load_delta(out / "delta.npz")
    assert sorted(delta) == ["head.bias", "head.weight"]
    prompts, labels = bert_labels(data, STRONG, WEAK)
    feats = served.features(prompts)
    weight, bias = probe_head(feats, labels, prompts, recipe.settings, np.ones(len(labels)))
    np.testing.assert_array_equal(delta["head.weight"], weight.astype(np.float16))
    np.testing.assert_array_equal(delta["head.bias"], bias.astype(np.float16))
    # Served: the graph's logits on those features (an int8 head is quantised: close, not equal).
    router = load_router(artifact, LoadContext(DEFAULT_ENCODER_DIR, "all-MiniLM-L6-v2"))
    logits = served.features(PROMPTS).astype(np.float64) @ delta["head.weight"].T.astype(np.float64)
    logits += delta["head.bias"].astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(router.probabilities(PROMPTS), p, atol=atol)  # type: ignore[attr-defined]


def test_an_unknown_head_precision_is_refused_when_the_graphs_are_built(tmp_path: Path) -> None:
    recipe = load_recipe("bert", ["probe_features=served", "max_tokens=32", "head_tokens=8"])
    ctx = TrainContext(DEFAULT_ENCODER_DIR, cache_dir=None, threads=1, build_onnx=False)
    out = train_recipe(recipe, _data(), Target(tmp_path / "bert", "bert", STRONG, WEAK), ctx)
    path = out / MANIFEST_NAME
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["params"]["head_precision"] = "fp16"
    raw["format_version"] = 4  # a head precision other than int8 needs 4 (else the manifest is refused first)
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ArtifactError, match="head_precision must be one of int8, fp32, got 'fp16'"):
        build_bert_graphs(out)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probe_features": "onnx"}, "probe_features must be one of torch, served"),
        ({"probe_features": "served", "epochs": 1}, "fine-tuning"),
        ({"served_head": "fp16"}, "served_head must be int8 or fp32"),
    ],
)
def test_probe_features_refuses_what_it_cannot_do(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BertConfig(**kwargs)  # type: ignore[arg-type]
    assert (BertConfig().probe_features, BertConfig().served_head) == ("torch", "int8")  # defaults until adopted


def test_selection_fits_and_scores_each_candidate_on_the_recipes_probe_features(
    served: ServedFeatures, tmp_path: Path
) -> None:
    """Was: ``lab.select.bert`` fitted every candidate probe on torch features (``BertTrainer.features``) while
    the recipe trains on the served graph's (``probe_features = "served"``). Now a candidate is the recipe with
    the grid's settings, fitted and scored on the features its config names (``probe_feature_source``)."""
    recipe = load_recipe("bert").settings
    cands = probe_candidates(recipe, [0.1, 1.0], [False, True])
    assert [(c.config.probe_c, c.battles) for c in cands] == [(0.1, False), (0.1, True), (1.0, False), (1.0, True)]
    assert all(c.config == dataclasses.replace(recipe, epochs=0, probe_c=c.config.probe_c) for c in cands)
    assert {c.config.probe_features for c in cands} == {"served"}  # the shipped recipe's
    data = _data()
    val = [LabeledPrompt(f"v{i}", p, "mmlu", "g", float(i % 2), float(i % 3 == 0)) for i, p in enumerate(PROMPTS * 2)]
    split = Split(0, 1, data, data, val)
    sources = FeatureSources(SPEC, [], served.cache_dir)
    config = cands[2].config
    got = evaluate(sources, Candidate(config, False), split, seed=0)
    assert isinstance(sources(config), ServedFeatures) and sources(config) is sources(config)  # one, made once
    prompts, labels = bert_labels(data, STRONG, WEAK)
    weights = bert_weights(data, STRONG, WEAK, config)
    weight, bias = probe_head(served.features(prompts), labels, prompts, config, weights)
    assert got == apgr_by_benchmark(val, probe_scores(served.features([it.prompt for it in val]), weight, bias))
    # the same map gives torch features to a torch recipe (and to fine-tuning)
    assert isinstance(sources(dataclasses.replace(config, probe_features="torch")), BertTrainer)
