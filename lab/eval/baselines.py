"""Simple cross-fitted baselines that every router design is checked against.

Both are trained on the golden labels (MMLU + GSM8K correctness) with the same
folds as the routers: a prompt in fold ``i`` is scored by a baseline fitted on
the other folds only; prompts outside the folds (MT-Bench) by one fitted on all.

- ``logreg``: multinomial logistic regression on the frozen serving encoder's
  embeddings, three classes (strong wins / tie / weak wins); score =
  P(strong wins) - P(weak wins), the expected gain.
- ``subject-mean``: the mean gain of the prompt's group (MMLU subject, GSM8K)
  in the training folds, else the overall mean gain. It cannot tell prompts of
  one subject apart, and with whole subjects held out it is a constant router.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from lab.data.benchmarks import LabeledPrompt

BASELINES: tuple[str, ...] = ("logreg", "subject-mean")
DESCRIPTIONS = {
    "logreg": "logistic regression (strong/tie/weak) on frozen MiniLM int8 embeddings, MMLU+GSM8K labels",
    "subject-mean": "mean gain of the prompt's subject in the MMLU+GSM8K training labels",
}


def _labels(items: Sequence[LabeledPrompt]) -> np.ndarray:
    gains = np.array([it.gain for it in items])
    return np.sign(gains).astype(np.int64)  # 1 strong wins, 0 tie, -1 weak wins


def _logreg(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression  # eval-only dependency

    model = LogisticRegression(C=c, max_iter=500)
    model.fit(train_x, train_y)
    proba = model.predict_proba(test_x)
    cls = list(model.classes_)
    strong = proba[:, cls.index(1)] if 1 in cls else 0.0
    weak = proba[:, cls.index(-1)] if -1 in cls else 0.0
    return np.asarray(strong - weak, dtype=np.float64)


def _subject_mean(train: Sequence[LabeledPrompt], test: Sequence[LabeledPrompt]) -> np.ndarray:
    sums: dict[str, list[float]] = defaultdict(list)
    for it in train:
        sums[f"{it.benchmark}/{it.group}"].append(it.gain)
    overall = float(np.mean([it.gain for it in train]))
    means = {g: float(np.mean(v)) for g, v in sums.items()}
    return np.array([means.get(f"{it.benchmark}/{it.group}", overall) for it in test])


def crossfit_baseline(
    name: str,
    golden: Sequence[LabeledPrompt],
    golden_folds: np.ndarray,
    golden_emb: np.ndarray,
    test: Sequence[LabeledPrompt],
    test_folds: np.ndarray,
    test_emb: np.ndarray,
    *,
    c: float = 1.0,
) -> np.ndarray:
    """Scores of ``test`` items; ``test_folds[i] = -1`` means "not in any fold" (fit on all golden data)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    if not (len(golden) == len(golden_folds) == len(golden_emb)) or not (len(test) == len(test_folds) == len(test_emb)):
        raise ValueError("items, folds and embeddings must have the same length")
    out = np.zeros(len(test))
    y = _labels(golden)
    for fold in sorted(set(test_folds.tolist())):
        rows = np.nonzero(test_folds == fold)[0]
        keep = golden_folds != fold if fold >= 0 else np.ones(len(golden), dtype=bool)
        train = [golden[i] for i in np.nonzero(keep)[0].tolist()]
        if name == "logreg":
            out[rows] = _logreg(golden_emb[keep], y[keep], test_emb[rows], c)
        else:
            out[rows] = _subject_mean(train, [test[i] for i in rows.tolist()])
    return out
