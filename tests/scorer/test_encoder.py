"""The ONNX encoder: truncation keeps the end, embeddings are unit vectors and faithful across precisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scorer.artifacts import EncoderSpec
from scorer.encoder import Encoder, truncate_ids
from scorer.errors import ArtifactError

ENCODER_DIR = Path("build/encoder")


def test_truncate_keeps_head_and_tail() -> None:
    ids = list(range(1000))
    out = truncate_ids(ids, max_tokens=10, head_tokens=3)
    assert out == [0, 1, 2, 995, 996, 997, 998, 999]
    assert truncate_ids([1, 2], 10, 3) == [1, 2]


@pytest.fixture(scope="module")
def encoders() -> dict[str, Encoder]:
    return {p: Encoder(ENCODER_DIR, precision=p) for p in ("fp32", "int8")}  # type: ignore[misc]


def test_unit_norm_and_int8_faithful(encoders: dict[str, Encoder]) -> None:
    texts = ["What is 2 + 2?", "Write a haiku about autumn leaves.", "Explain TCP slow start."]
    fp32 = encoders["fp32"].encode(texts)
    int8 = encoders["int8"].encode(texts)
    assert fp32.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)
    assert float((fp32 * int8).sum(axis=1).min()) > 0.95


def test_long_prompt_end_changes_embedding(encoders: dict[str, Encoder]) -> None:
    # Few-shot prompts exceed the window; the question at the end must still matter.
    context = "Example question and answer about history. " * 200
    a, b = encoders["fp32"].encode([context + "What is the capital of France?", context + "Integrate x^2 dx."])
    assert float(a @ b) < 0.99


def test_encode_order_independent(encoders: dict[str, Encoder]) -> None:
    texts = ["short", "a much longer prompt about databases and indexes", "mid length text"]
    enc = encoders["fp32"]
    together = enc.encode(texts, rows_per_run=2)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_spec_window_respected() -> None:
    enc = Encoder(ENCODER_DIR, precision="fp32", spec=EncoderSpec(max_tokens=16, head_tokens=4))
    ids = enc.tokenizer.ids(["word " * 100])[0]
    assert len(ids) == 16


def _encoder_dir_with(tmp_path: Path, graphs: dict[str, str]) -> Path:
    """An encoder directory linking the built files, with ``graphs`` mapping file names to built graphs."""
    out = tmp_path / "encoder"
    out.mkdir()
    for name in ("encoder.json", "tokenizer.json", "model.fp32.onnx", "model.int8.onnx"):
        (out / name).symlink_to((ENCODER_DIR / name).resolve())
    for name, target in graphs.items():
        (out / name).symlink_to((ENCODER_DIR / target).resolve())
    return out


def test_unpadded_graph_gives_the_masked_graphs_embeddings(encoders: dict[str, Encoder], tmp_path: Path) -> None:
    """int8 runs one sequence per call on the mask-free graph; its embeddings equal the masked graph's."""
    int8 = encoders["int8"]
    assert int8.has_unpadded_graph  # `ferryman build encoder` writes it
    masked = Encoder(_encoder_dir_with(tmp_path, {}), precision="int8")
    assert not masked.has_unpadded_graph  # an encoder built before it existed still serves, on the masked graph
    texts = ["What is 2 + 2?", "Write a haiku about autumn leaves.", "Explain TCP slow start. " * 60]
    np.testing.assert_allclose(int8.encode(texts), masked.encode(texts), atol=1e-6)
    # A padded batch cannot use the mask-free graph: it runs on the masked one.
    padded = int8.tokenizer.batch(texts[:2])
    assert not padded.attention_mask.all()
    np.testing.assert_array_equal(int8.run(padded), masked.run(padded))


def test_unpadded_graph_that_takes_a_mask_is_refused(tmp_path: Path) -> None:
    bad = _encoder_dir_with(tmp_path, {"model.int8.unpadded.onnx": "model.int8.onnx"})
    with pytest.raises(ArtifactError, match=r"model\.int8\.unpadded\.onnx: must take input_ids and no attention_mask"):
        Encoder(bad, precision="int8")
