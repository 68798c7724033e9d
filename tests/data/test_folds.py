"""Cross-fitting folds: near-duplicates stay together, subjects are held out whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab.data import DataError
from lab.data.benchmarks import LabeledPrompt
from lab.data.folds import FoldAssignment, assign_folds, duplicate_clusters
from lab.data.keys import prompt_key


def _item(i: int, group: str = "g", benchmark: str = "mmlu", prompt: str | None = None) -> LabeledPrompt:
    text = prompt if prompt is not None else f"prompt number {i}"
    return LabeledPrompt(f"{prompt_key(text)}-{i}", text, benchmark, group, 1.0, 0.0)


def test_prompt_key_normalises_whitespace_only() -> None:
    assert prompt_key("a  b\n c ") == prompt_key("a b c")
    assert prompt_key("a b c") != prompt_key("a b C")
    assert len(prompt_key("x")) == 40


def test_duplicate_clusters_by_text_and_embedding() -> None:
    texts = ["alpha", "beta", "alpha ", "gamma", "delta"]
    emb = np.eye(5, dtype=np.float32)
    emb[4] = emb[3] * 0.99 + emb[0] * 0.141  # ~cos 0.99 with "gamma"
    emb[4] /= np.linalg.norm(emb[4])
    assert duplicate_clusters(texts).tolist() == [0, 1, 0, 3, 4]
    assert duplicate_clusters(texts, emb, 0.95, block=2).tolist() == [0, 1, 0, 3, 3]
    with pytest.raises(ValueError, match="embeddings must have shape"):
        duplicate_clusters(texts, emb[:3])


def test_prompt_scheme_is_balanced_deterministic_and_keeps_duplicates_together() -> None:
    items = [_item(i) for i in range(100)] + [_item(100 + i, prompt="prompt number 7") for i in range(3)]
    folds = assign_folds(items, 5, scheme="prompt", seed=3)
    assert folds.tolist() == assign_folds(items, 5, scheme="prompt", seed=3).tolist()
    assert folds.tolist() != assign_folds(items, 5, scheme="prompt", seed=4).tolist()
    assert set(folds[[7, 100, 101, 102]].tolist()) == {int(folds[7])}
    assert sorted(np.bincount(folds, minlength=5).tolist()) == [20, 20, 21, 21, 21]


def test_subject_scheme_holds_out_whole_subjects_and_chunks_gsm8k() -> None:
    items = [_item(i, group=f"s{i % 6}") for i in range(60)]
    items += [_item(60 + i, group="gsm8k", benchmark="gsm8k") for i in range(30)]
    folds = assign_folds(items, 3, scheme="subject")
    for s in range(6):
        assert len({int(f) for it, f in zip(items, folds, strict=True) if it.group == f"s{s}"}) == 1
    gsm_folds = [int(f) for it, f in zip(items, folds, strict=True) if it.group == "gsm8k"]
    assert np.bincount(gsm_folds, minlength=3).tolist() == [10, 10, 10]
    assert np.bincount(folds, minlength=3).tolist() == [30, 30, 30]


def test_subject_scheme_moves_cross_subject_copies_into_one_fold() -> None:
    items = [_item(i, group=f"s{i % 4}") for i in range(40)]
    items.append(_item(99, group="s1", prompt=items[0].prompt))  # copy of an s0 prompt filed under s1
    folds = assign_folds(items, 4, scheme="subject")
    assert folds[0] != folds[1]  # s0 and s1 are in different folds ...
    assert folds[40] == folds[0]  # ... but the copy follows the majority of its cluster


def test_bad_arguments() -> None:
    items = [_item(i) for i in range(4)]
    with pytest.raises(ValueError, match="k must be at least 2"):
        assign_folds(items, 1, scheme="prompt")
    with pytest.raises(ValueError, match="unknown fold scheme"):
        assign_folds(items, 2, scheme="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot split 4 items into 5 folds"):
        assign_folds(items, 5, scheme="prompt")


def test_fold_assignment_roundtrip_and_validation(tmp_path: Path) -> None:
    items = [_item(i) for i in range(10)]
    folds = assign_folds(items, 2, scheme="prompt")
    fa = FoldAssignment.from_items(items, folds, scheme="prompt", seed=0)
    fa.save(tmp_path / "f" / "folds.json")
    back = FoldAssignment.load(tmp_path / "f" / "folds.json")
    assert back == fa and back.k == 2
    assert back.fold_of(items[3].key) == int(folds[3])
    with pytest.raises(KeyError, match="not in the fold assignment"):
        back.fold_of("unknown")
    (tmp_path / "bad.json").write_text('{"scheme": "prompt", "k": 2, "assignments": {"a": 5}}', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: fold 5 out of range for k=2"):
        FoldAssignment.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="fold assignment not found"):
        FoldAssignment.load(tmp_path / "absent.json")
    (tmp_path / "junk.json").write_text("[1]", encoding="utf-8")
    with pytest.raises(DataError, match="not a valid fold assignment"):
        FoldAssignment.load(tmp_path / "junk.json")
