"""Test helpers for every part of Ferryman: small valid router artifacts and a real in-process scorer.

``build_test_routers(dest)`` writes artifacts for mf, sw, bert and random that follow
``docs/artifacts.md`` exactly (manifests with hashes and a calibration table), with
untrained but deterministic weights. ``scorer_in_thread(routers_dir)`` starts a real scorer on
127.0.0.1 (port 0) in a background thread with its own event loop and yields its address (it
wraps ``scorer.server.serving_in_thread``, the scorer's embedded runner; async code uses
``scorer.server.serving`` directly).
Only tests and benchmarks use this module; the BERT graph is built with the ``onnx`` package
(train extra), imported lazily.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from scorer.artifacts import (
    ArtifactFile,
    Calibration,
    CalibrationPoint,
    EncoderSpec,
    Manifest,
    RouterKind,
    load_artifact,
    sha256_of,
    write_manifest,
)
from scorer.config import ScorerConfig
from scorer.encoder import Encoder
from scorer.server import serving_in_thread

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENCODER_DIR = REPO_ROOT / "build" / "encoder"
STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
TEST_MODELS = (STRONG, WEAK, "claude-2.1", "gpt-3.5-turbo-1106")
TEST_ROUTERS = ("bert", "mf", "random", "sw")
VOCAB_SIZE = 30522  # all-MiniLM-L6-v2's wordpiece vocabulary

_TOPICS = {
    # topic -> how much the strong model tends to win (SW battles are drawn from this)
    "prove this theorem about prime numbers": 0.85,
    "write a Python function that merges two sorted lists": 0.8,
    "debug this SQL query that joins three tables": 0.75,
    "derive the gradient of the softmax cross-entropy loss": 0.8,
    "summarise this paragraph about the French revolution": 0.45,
    "write a short poem about autumn leaves": 0.35,
    "say hello to my friend in Spanish": 0.2,
    "suggest a name for my new puppy": 0.25,
    "what is the capital of Australia": 0.15,
    "plan a three-day trip to Rome on a budget": 0.4,
}
_STYLES = ("Please {t}.", "Can you {t}?", "I need help: {t}.", "Quickly {t}, thanks.", "{t} — explain step by step.")
SAMPLE_PROMPTS: tuple[str, ...] = tuple(s.format(t=t) for t, s in itertools.product(_TOPICS, _STYLES))


def _write(dest: Path, manifest: Manifest, files: dict[str, str]) -> Path:
    hashed = {role: ArtifactFile(path, sha256_of(dest / path)) for role, path in files.items()}
    write_manifest(dest, replace(manifest, files=hashed))
    return dest


def _manifest(name: RouterKind, models: Sequence[str], **kw: object) -> Manifest:
    return Manifest(
        name=name,
        kind=name,
        version="test-1",
        models=tuple(models),
        default_strong=STRONG,
        default_weak=WEAK,
        encoder=None if name == "random" else EncoderSpec(),
        provenance={"data": "synthetic test artifact (untrained)", "builder": "harness.scorer"},
        **kw,  # type: ignore[arg-type]
    )


def _build_mf(dest: Path, rng: np.random.Generator) -> Path:
    d = 16
    np.savez(
        dest / "weights.npz",
        text_proj=rng.normal(0, 1.0, (d, 384)).astype(np.float32),
        model_emb=rng.normal(0, 1.0, (len(TEST_MODELS), d)).astype(np.float32),
        classifier=rng.normal(0, 0.3, d).astype(np.float32),
        model_bias=np.linspace(0.5, -0.5, len(TEST_MODELS)).astype(np.float32),
    )
    return _write(dest, _manifest("mf", TEST_MODELS), {"weights": "weights.npz"})


def _build_sw(dest: Path, rng: np.random.Generator, encoder: Encoder) -> Path:
    prompts = list(SAMPLE_PROMPTS)
    emb = encoder.encode(prompts)
    np.save(dest / "embeddings.npy", emb.astype(np.float16))
    strong_rate = np.repeat(np.array(list(_TOPICS.values())), len(_STYLES))
    rows = []
    for p, pair in itertools.product(range(len(prompts)), itertools.combinations(range(len(TEST_MODELS)), 2)):
        a, b = pair
        # Lower index = stronger model; topics decide how often strength shows.
        u = rng.random()
        edge = strong_rate[p] * (1.0 - 0.15 * (b - a - 1))
        outcome = 0 if u < edge * 0.8 else (2 if u < edge * 0.8 + 0.15 else 1)
        rows.append((p, a, b, outcome) if rng.random() < 0.5 else (p, b, a, {0: 1, 1: 0, 2: 2}[outcome]))
    arr = np.array(rows)
    np.savez(
        dest / "battles.npz",
        prompt_idx=arr[:, 0].astype(np.int32),
        model_a=arr[:, 1].astype(np.int16),
        model_b=arr[:, 2].astype(np.int16),
        outcome=arr[:, 3].astype(np.int8),
    )
    params = {"scale": 400, "base": 10, "init_rating": 1000}
    return _write(
        dest, _manifest("sw", TEST_MODELS, params=params), {"embeddings": "embeddings.npy", "battles": "battles.npz"}
    )


def _build_bert(dest: Path, rng: np.random.Generator) -> Path:
    """A tiny classifier with the real interface: embedding bag → masked mean → linear → 3 logits.

    Like a built BERT artifact it also has the mask-free twin (``files.onnx_unpadded``: a plain
    mean, no ``attention_mask`` input) that runs every batch without padding.
    """
    width = 8
    weights = {
        "table": rng.normal(0, 1.0, (VOCAB_SIZE, width)).astype(np.float32),
        "head": rng.normal(0, 1.0, (width, 3)).astype(np.float32),
        "bias": np.array([0.2, -0.4, 0.0], dtype=np.float32),
    }
    _save_tiny_bert(dest / "model.onnx", weights, masked=True)
    _save_tiny_bert(dest / "model.unpadded.onnx", weights, masked=False)
    params = {"labels": ["strong", "tie", "weak"], "tie_weight": 0.5}
    files = {"onnx": "model.onnx", "onnx_unpadded": "model.unpadded.onnx"}
    return _write(dest, _manifest("bert", (STRONG, WEAK), params=params), files)


def _save_tiny_bert(path: Path, weights: dict[str, np.ndarray], *, masked: bool) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if masked:
        pool = [
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
            helper.make_node("Max", ["count", "one"], ["safe"]),
            helper.make_node("Div", ["summed", "safe"], ["mean"]),
        ]
    else:
        pool = [helper.make_node("ReduceMean", ["tok"], ["mean"], axes=[1], keepdims=0)]  # opset 17: axes attribute
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tok"]),
        *pool,
        helper.make_node("Mul", ["mean", "gain"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "head"], ["proj"]),
        helper.make_node("Add", ["proj", "bias"], ["logits"]),
        # token_type_ids is part of the interface but unused by this tiny graph.
        helper.make_node("Shape", ["token_type_ids"], ["unused"]),
    ]
    constants: dict[str, np.ndarray] = {
        "axis2": np.array([2], dtype=np.int64),
        "axis1": np.array([1], dtype=np.int64),
        "one": np.array([1.0], dtype=np.float32),
        "gain": np.array([4.0], dtype=np.float32),
    }
    inits = [numpy_helper.from_array(v, k) for k, v in (weights | constants).items()]
    names = ("input_ids", "attention_mask", "token_type_ids") if masked else ("input_ids", "token_type_ids")
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names]
    out = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])]
    graph = helper.make_graph(nodes, "tiny_bert_router", ids, out, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _calibrate(dest: Path, encoder_dir: Path) -> None:
    """Fill each manifest's calibration table from its scores on ``SAMPLE_PROMPTS``."""
    from scorer.core import ScoreQuery, ScorerCore

    core = ScorerCore.load(dest, encoder_dir)
    shares = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    for name in core.routers:
        scores = np.array([r.strong_win_rate for r in core.score([ScoreQuery(name, p) for p in SAMPLE_PROMPTS])])
        # Share s goes strong when score >= the (1 - s) quantile; share 0 needs a threshold above every score.
        points = tuple(
            CalibrationPoint(s, float(np.nextafter(scores.max(), 2.0)) if s == 0 else float(np.quantile(scores, 1 - s)))
            for s in shares
        )
        artifact = load_artifact(dest / name)
        cal = Calibration(reference="harness.scorer.SAMPLE_PROMPTS", points=points)
        write_manifest(dest / name, replace(artifact.manifest, calibration=cal))


def build_test_routers(
    dest: Path, encoder: Encoder | None = None, *, encoder_dir: Path = DEFAULT_ENCODER_DIR, seed: int = 7
) -> Path:
    """Write small valid artifacts ``dest/{mf,sw,bert,random}`` and return ``dest``.

    ``encoder`` embeds the SW training prompts (default: the int8 encoder in ``encoder_dir``,
    which must be built: ``ferryman build encoder``). Deterministic for a given seed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    encoder = encoder or Encoder(encoder_dir)
    rng = np.random.default_rng(seed)
    for name in TEST_ROUTERS:
        (dest / name).mkdir(exist_ok=True)
    _build_mf(dest / "mf", rng)
    _build_sw(dest / "sw", rng, encoder)
    _build_bert(dest / "bert", rng)
    _write(dest / "random", _manifest("random", TEST_MODELS, params={"seed": seed}), {})
    _calibrate(dest, encoder_dir)
    return dest


def config_for_tests(routers_dir: Path, encoder_dir: Path = DEFAULT_ENCODER_DIR, **overrides: object) -> ScorerConfig:
    """A ``ScorerConfig`` for tests: loopback, port 0, no metrics endpoint."""
    base: dict[str, object] = {
        "routers_dir": routers_dir,
        "encoder_dir": encoder_dir,
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "grace_s": 5.0,
    }
    base.update(overrides)
    return ScorerConfig(**base)  # type: ignore[arg-type]


@contextmanager
def scorer_in_thread(routers_dir: Path, encoder_dir: Path = DEFAULT_ENCODER_DIR, **overrides: object) -> Iterator[str]:
    """Run a real scorer on its own event loop in a daemon thread; yields ``"127.0.0.1:PORT"``."""
    with serving_in_thread(config_for_tests(routers_dir, encoder_dir, **overrides)) as address:
        yield address
