"""Cross-fitted baselines: no prompt is scored by a fit that saw it; subject means by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lab.data.benchmarks import LabeledPrompt
from lab.eval.baselines import crossfit_baseline
from lab.eval.metrics import apgr, endpoints, routing_curve


def _item(i: int, group: str, strong: float, weak: float) -> LabeledPrompt:
    return LabeledPrompt(f"k{i}", f"prompt {i}", "mmlu", group, strong, weak)


def test_subject_mean_uses_only_the_other_folds() -> None:
    items = [_item(0, "a", 1, 0), _item(1, "a", 0, 0), _item(2, "a", 1, 0), _item(3, "b", 0, 1)]
    folds = np.array([0, 0, 1, 1])
    emb = np.zeros((4, 3))
    scores = crossfit_baseline("subject-mean", items, folds, emb, items, folds, emb)
    # fold 0 is scored from fold 1 only: group a mean = 1 (item 2); fold 1 from fold 0: a = 0.5, b unseen -> overall 0.5
    assert scores.tolist() == [1.0, 1.0, 0.5, 0.5]
    unseen = [_item(9, "c", 1, 1)]
    assert crossfit_baseline("subject-mean", items, folds, emb, unseen, np.array([-1]), np.zeros((1, 3))).tolist() == [
        pytest.approx(0.25)
    ]


def test_logreg_learns_a_signal_without_seeing_the_scored_fold() -> None:
    rng = np.random.default_rng(0)
    n = 400
    emb = rng.normal(size=(n, 8))
    gain = np.where(emb[:, 0] > 0.5, 1.0, np.where(emb[:, 0] < -0.5, -1.0, 0.0))
    items = [_item(i, "g", 1.0 if g > 0 else 0.0, 1.0 if g < 0 else 0.0) for i, g in enumerate(gain)]
    folds = np.arange(n) % 4
    scores = crossfit_baseline("logreg", items, folds, emb, items, folds, emb)
    s = np.array([it.strong for it in items])
    w = np.array([it.weak for it in items])
    assert apgr(routing_curve(scores, s, w), *endpoints(s, w)) > 0.8
    # Scoring a fold never depends on its own labels: flipping them leaves its scores unchanged.
    flipped = [
        LabeledPrompt(it.key, it.prompt, it.benchmark, it.group, it.weak, it.strong) if f == 0 else it
        for it, f in zip(items, folds, strict=True)
    ]
    again = crossfit_baseline("logreg", flipped, folds, emb, items, folds, emb)
    assert np.allclose(again[folds == 0], scores[folds == 0])
    assert not np.allclose(again[folds == 1], scores[folds == 1])


def test_bad_arguments() -> None:
    items = [_item(0, "a", 1, 0)]
    with pytest.raises(ValueError, match="unknown baseline 'knn'"):
        crossfit_baseline("knn", items, np.array([0]), np.zeros((1, 2)), items, np.array([0]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="same length"):
        crossfit_baseline("logreg", items, np.array([0, 1]), np.zeros((1, 2)), items, np.array([0]), np.zeros((1, 2)))
