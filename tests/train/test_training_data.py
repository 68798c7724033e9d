"""Training-data rules: golden outcomes, exclusions, BERT labels and row sampling (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from lab.data.benchmarks import STRONG, WEAK, LabeledPrompt
from lab.train.bert import bert_labels, select_rows
from lab.train.data import A_WINS, B_WINS, TIE, Pair, TrainingData, golden_pairs, parse_golden


def _item(key: str, strong: float, weak: float) -> LabeledPrompt:
    return LabeledPrompt(key=key, prompt=f"q {key}", benchmark="mmlu", group="g", strong=strong, weak=weak)


def test_golden_labels_become_strong_weak_or_tie() -> None:
    pairs = golden_pairs([_item("a", 1, 0), _item("b", 0, 1), _item("c", 1, 1), _item("d", 0, 0)])
    assert [p.outcome for p in pairs] == [A_WINS, B_WINS, TIE, TIE]
    assert {(p.model_a, p.model_b) for p in pairs} == {(STRONG, WEAK)}
    assert [p.key for p in pairs] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("spec", ["mt-bench", "mmlu,mt_bench", "MTBench"])
def test_mt_bench_is_never_training_data(spec: str) -> None:
    with pytest.raises(ValueError, match="evaluation only"):
        parse_golden(spec)


def test_unknown_or_repeated_golden_names_are_errors() -> None:
    assert parse_golden(" mmlu , gsm8k ") == ["mmlu", "gsm8k"]
    with pytest.raises(ValueError, match="unknown golden benchmark 'hellaswag'"):
        parse_golden("mmlu,hellaswag")
    with pytest.raises(ValueError, match="twice"):
        parse_golden("mmlu,mmlu")


def test_without_drops_only_the_held_out_golden_prompts() -> None:
    battle = Pair("arena prompt", "m1", "m2", A_WINS, "arena-bench-v1")
    data = TrainingData([battle, *golden_pairs([_item("a", 1, 0), _item("b", 1, 1)])], ["arena-bench-v1", "mmlu"])
    kept = data.without({"a", "not-there"})
    assert [p.prompt for p in kept.pairs] == ["arena prompt", "q b"]
    assert kept.excluded == 1 and kept.counts == {"arena-bench-v1": 1, "mmlu": 1}
    assert kept.provenance()["excluded_heldout_prompts"] == "1"
    with pytest.raises(ValueError, match="empty"):
        TrainingData(golden_pairs([_item("a", 1, 0)]), ["mmlu"]).without({"a"})


def test_bert_labels_orient_every_pair_to_strong_tie_weak() -> None:
    pairs = [
        Pair("p1", STRONG, WEAK, A_WINS, "x"),
        Pair("p2", WEAK, STRONG, A_WINS, "x"),  # the weak model won, listed first
        Pair("p3", WEAK, STRONG, TIE, "x"),
        Pair("p4", "other", WEAK, A_WINS, "x"),  # not the pair BERT scores
    ]
    prompts, labels = bert_labels(TrainingData(pairs, ["x"]), STRONG, WEAK)
    assert prompts == ["p1", "p2", "p3"] and labels.tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="no training pairs"):
        bert_labels(TrainingData(pairs[3:], ["x"]), STRONG, WEAK)


def test_select_rows_balances_decisive_and_tie_rows_deterministically() -> None:
    labels = np.array([1] * 80 + [0] * 15 + [2] * 5)
    assert select_rows(labels, 0, seed=0).tolist() == list(range(100))
    assert select_rows(labels, 100, seed=0).tolist() == list(range(100))
    rows = select_rows(labels, 30, seed=1)
    assert len(rows) == 30 and len(set(rows.tolist())) == 30
    assert int((labels[rows] != 1).sum()) == 15  # half decisive (of 20 available)
    assert rows.tolist() == select_rows(labels, 30, seed=1).tolist()
    few_decisive = select_rows(labels, 60, seed=0)
    assert int((labels[few_decisive] != 1).sum()) == 20  # every decisive row, ties fill the rest
