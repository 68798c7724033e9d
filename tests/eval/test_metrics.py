"""Routing metrics on hand-computable examples."""

from __future__ import annotations

import numpy as np
import pytest

from lab.eval.metrics import (
    Curve,
    apgr,
    auc,
    cpt,
    decile_curve,
    endpoints,
    oracle_curve,
    random_curve,
    ranks_within,
    routing_curve,
    summarize,
)

# Four prompts: gains +1, 0, +1, -1 (strong right / both right / strong right / only weak right).
STRONG = [1.0, 1.0, 1.0, 0.0]
WEAK = [0.0, 1.0, 0.0, 1.0]


def test_curve_points_by_hand() -> None:
    curve = routing_curve([0.9, 0.5, 0.8, 0.1], STRONG, WEAK)  # order 0, 2, 1, 3: gains 1, 1, 0, -1
    assert curve.share.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.quality.tolist() == [0.5, 0.75, 1.0, 1.0, 0.75]
    assert endpoints(STRONG, WEAK) == (0.5, 0.75)
    # Trapezoids: 0.25 * (0.625 + 0.875 + 1.0 + 0.875) = 0.84375
    assert auc(curve) == pytest.approx(0.84375)
    assert apgr(curve, 0.5, 0.75) == pytest.approx((0.84375 - 0.5) / 0.25)
    # 50 % of the gap = quality 0.625, reached halfway to the first point: 12.5 % strong calls.
    assert cpt(curve, 0.5, 0.5, 0.75) == pytest.approx(12.5)
    assert cpt(curve, 0.0, 0.5, 0.75) == 0.0


def test_perfect_router_reaches_the_oracle() -> None:
    gains = np.array(STRONG) - np.array(WEAK)
    perfect = routing_curve(gains, STRONG, WEAK)
    oracle = oracle_curve(STRONG, WEAK)
    assert oracle.quality.tolist() == [0.5, 0.75, 1.0, 1.0, 1.0]  # never pays for the -1 prompt
    assert apgr(perfect, 0.5, 0.75) == pytest.approx(1.375)
    assert apgr(oracle, 0.5, 0.75) == pytest.approx(1.5)
    # Over the shares where the perfect router still gains, it matches the oracle exactly.
    assert perfect.quality[:4].tolist() == oracle.quality[:4].tolist()
    # A router without harmful prompts reaches the oracle everywhere.
    s, w = [1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]
    assert routing_curve([3, 0, 1, 2], s, w).quality.tolist() == oracle_curve(s, w).quality.tolist()


def test_worst_router_and_endpoints() -> None:
    rng = np.random.default_rng(0)
    s = rng.integers(0, 2, 200).astype(float)
    w = rng.integers(0, 2, 200).astype(float)
    scores = rng.random(200)
    curve = routing_curve(scores, s, w)
    weak_q, strong_q = endpoints(s, w)
    assert curve.quality[0] == pytest.approx(weak_q) and curve.quality[-1] == pytest.approx(strong_q)
    inverted = routing_curve(-(s - w), s, w)
    assert apgr(inverted, weak_q, strong_q) < 0.5 < apgr(routing_curve(s - w, s, w), weak_q, strong_q)


def test_constant_router_equals_the_random_expectation_and_ignores_order() -> None:
    curve = routing_curve([0.3] * 4, STRONG, WEAK)
    assert curve.quality.tolist() == pytest.approx([0.5, 0.5625, 0.625, 0.6875, 0.75])
    assert apgr(curve, 0.5, 0.75) == pytest.approx(0.5)
    # Ties are blocks: permuting the input does not change the curve.
    scores = [0.2, 0.7, 0.7, 0.2]
    perm = [3, 1, 0, 2]
    a = routing_curve(scores, STRONG, WEAK)
    b = routing_curve([scores[i] for i in perm], [STRONG[i] for i in perm], [WEAK[i] for i in perm])
    assert a.quality.tolist() == b.quality.tolist()


def test_random_router_averaged_over_seeds_is_about_half() -> None:
    rng = np.random.default_rng(12345)  # not one of the router's seeds 0..9
    s = (rng.random(2000) < 0.8).astype(float)
    w = (rng.random(2000) < 0.65).astype(float)
    weak_q, strong_q = endpoints(s, w)
    m = summarize(random_curve(s, w, seeds=range(10)), weak_q, strong_q)
    assert m.apgr == pytest.approx(0.5, abs=0.02)
    assert m.cpt[0.5] == pytest.approx(50.0, abs=4.0)
    with pytest.raises(ValueError, match="at least one seed"):
        random_curve(s, w, seeds=())


def test_cpt_unreachable_and_graded_quality() -> None:
    curve = Curve(np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.2, 1.4]))
    assert cpt(curve, 0.8, 1.0, 2.0) is None
    # MT-Bench-like grades: gains 4, 1, -2 -> oracle stops after the positive gains.
    oracle = oracle_curve([9.0, 7.0, 5.0], [5.0, 6.0, 7.0])
    assert oracle.quality.tolist() == pytest.approx([6.0, 6 + 4 / 3, 6 + 5 / 3, 6 + 5 / 3])


def test_decile_curve_matches_the_exact_curve_at_its_points() -> None:
    rng = np.random.default_rng(2)
    s = rng.integers(0, 2, 100).astype(float)
    w = rng.integers(0, 2, 100).astype(float)
    scores = rng.random(100)
    coarse = decile_curve(scores, s, w)
    exact = routing_curve(scores, s, w)
    assert coarse.share[0] == 0.0 and coarse.share[-1] == 1.0 and len(coarse.share) == 11
    idx = np.rint(coarse.share * 100).astype(int)
    assert coarse.quality.tolist() == pytest.approx(exact.quality[idx].tolist())


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="3 scores for 4 prompts"):
        routing_curve([1, 2, 3], STRONG, WEAK)
    with pytest.raises(ValueError, match="scores must be finite"):
        routing_curve([1, 2, float("nan"), 3], STRONG, WEAK)
    with pytest.raises(ValueError, match="equal-length"):
        oracle_curve([1.0], [])
    with pytest.raises(ValueError, match="APGR is undefined"):
        apgr(routing_curve([1, 2], [1, 1], [1, 1]), 1.0, 1.0)


def test_ranks_within_groups_remove_group_offsets() -> None:
    scores = np.array([0.1, 0.3, 0.2, 10.0, 30.0, 20.0, 20.0])
    groups = ["a", "a", "a", "b", "b", "b", "b"]
    ranks = ranks_within(scores, groups)
    assert ranks[:3].tolist() == pytest.approx([1 / 6, 5 / 6, 3 / 6])
    assert ranks[3:].tolist() == pytest.approx([1 / 8, 7 / 8, 4 / 8, 4 / 8])  # ties share their mean rank
    # A router that is perfect within each fold but has a bad offset between folds:
    s, w = [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]
    offset = np.array([0.9, 0.8, 0.2, 0.1])  # fold a scores all above fold b
    folds = ["a", "a", "b", "b"]
    raw = apgr(routing_curve(offset, s, w), 0.0, 0.5)
    calibrated = apgr(routing_curve(ranks_within(offset, folds), s, w), 0.0, 0.5)
    assert calibrated > raw
    with pytest.raises(ValueError, match="2 group labels for 4 scores"):
        ranks_within(offset, ["a", "b"])
