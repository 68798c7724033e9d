"""The mixed rows' between/within-kind study: its kind labels and the kind-only reference ranking."""

from __future__ import annotations

import numpy as np

from lab.learn.mix_study import kind_of, kind_only_scores


def test_kind_comes_from_the_converted_rows_id() -> None:
    assert kind_of("gsm8k-0a1b") == "gsm8k" and kind_of("mmlu-ff-ee") == "mmlu"


def test_kind_only_puts_the_kind_needing_the_strong_model_first_and_keeps_the_prior_within_a_kind() -> None:
    kinds = np.array(["a", "a", "b", "b", "b"])
    shipped = np.array([0.9, 0.1, 0.2, 0.8, 0.5])
    verdicts = np.array([-1, 0, 1, 1, 0])
    scores = kind_only_scores(kinds, shipped, np.array([0, 1, 2, 3]), verdicts)
    assert scores[kinds == "b"].min() > scores[kinds == "a"].max()  # b's judged mean (+1) above a's (-0.5)
    assert list(np.argsort(scores[kinds == "b"])) == list(np.argsort(shipped[kinds == "b"]))
    assert scores[0] > scores[1]  # the prior's order within a
    unseen = kind_only_scores(np.array(["a", "c"]), np.array([0.5, 0.9]), np.array([0]), np.array([1, 1]))
    assert unseen[1] < unseen[0]  # a kind without judged samples ranks last
