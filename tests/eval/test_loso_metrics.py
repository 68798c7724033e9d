"""Leave-one-source-out metrics: ROC AUC with ties, battle orientation (hand-checked); source names."""

from __future__ import annotations

import numpy as np
import pytest

from lab.data.sources import parse_sources
from lab.eval.metrics import battle_auc, orient_battles, roc_auc


def test_roc_auc_counts_equal_scores_half() -> None:
    assert roc_auc([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.4, 0.3, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    # positives {0.5, 0.9}, negatives {0.5, 0.1}: pairs (0.5,0.5)=1/2, (0.5,0.1)=1, (0.9,*)=1+1 -> 3.5/4
    assert roc_auc([0.5, 0.9, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert roc_auc([1.0, 1.0, 1.0], [1, 0, 1]) == 0.5
    with pytest.raises(ValueError, match="both outcomes"):
        roc_auc([0.1, 0.2], [1, 1])


def test_battles_are_oriented_by_the_other_battles_and_ties_left_out() -> None:
    # "big" beats "small" in three battles and loses one; one tie.
    winners = ["model_a", "model_a", "model_b", "model_a", "tie"]
    a = ["big", "big", "small", "small", "big"]
    b = ["small", "small", "big", "big", "small"]
    oriented = orient_battles(range(5), a, b, winners)
    assert oriented.ties == 1 and oriented.models == 2
    assert oriented.prompt.tolist() == [0, 1, 2, 3]
    # battle 3 (small won): the other battles still rate big higher, so the stronger model lost it
    assert oriented.stronger_won.tolist() == [1, 1, 1, 0]
    # a score that is higher where the stronger model won ranks perfectly
    assert battle_auc(np.array([0.9, 0.8, 0.7, 0.1, 0.5]), oriented) == 1.0
    assert battle_auc(np.array([0.1, 0.2, 0.3, 0.9, 0.5]), oriented) == 0.0


def test_sources_refuse_mt_bench_and_unknown_names() -> None:
    assert parse_sources(["MMLU", "arena-human-1k"]) == ["mmlu", "arena-human-1k"]
    with pytest.raises(ValueError, match="evaluation only"):
        parse_sources(["mt-bench"])
    with pytest.raises(ValueError, match="unknown source"):
        parse_sources(["lmsys-chat"])
    with pytest.raises(ValueError, match="twice"):
        parse_sources(["gsm8k", "gsm8k"])
