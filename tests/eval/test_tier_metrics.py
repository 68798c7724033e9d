"""N-tier curves and their baselines (lab.eval.tier_metrics), and the transfer figure (lab.eval.arena)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gateway.tiers import TierRule
from lab.eval.arena import bootstrap_kept, kept_share
from lab.eval.tier_metrics import (
    log_grid,
    margin_over,
    mixing_hull,
    oracle_curve,
    policy_curve,
    random_at_shares,
    ratios,
    tiers_of,
    upper_hull,
)

COST = np.array([0.01, 0.1, 1.0])


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    quality = np.clip(rng.normal([4, 6.5, 8.5], 2.0, size=(n, 3)), 1, 10)
    scores = rng.random((n, 2))
    return scores, quality


@pytest.mark.parametrize("kind", ["cheapest", "cost_aware"])
def test_the_rules_are_the_gateways(kind):
    scores, _ = _data()
    rule = TierRule.build(kind, tuple(COST))
    r = ratios(COST, kind)
    assert r.tolist() == pytest.approx(list(rule.ratios))
    for threshold in (-0.5, 0.0, 0.2, 0.5, 0.6, 0.8, 1.1, 3.0):
        want = [rule.choose(tuple(row), rule.thresholds(threshold)) for row in scores]
        assert tiers_of(scores, threshold, r, kind).tolist() == want


@pytest.mark.parametrize("kind", ["cheapest", "cost_aware"])
def test_policy_curve_spans_all_top_to_all_cheapest(kind):
    scores, quality = _data()
    curve = policy_curve(scores, quality, COST, kind)
    assert curve.cost[0] == pytest.approx(COST[0]) and curve.quality[0] == pytest.approx(quality[:, 0].mean())
    assert curve.cost[-1] == pytest.approx(COST[2]) and curve.quality[-1] == pytest.approx(quality[:, 2].mean())
    assert np.all(np.diff(curve.cost) > 0)
    assert np.allclose(curve.shares.sum(axis=1), 1.0)
    # the cost of a point is its tier shares times the tier costs
    assert np.allclose(curve.shares @ COST, curve.cost)


def test_mixing_hull_and_oracle():
    _, quality = _data()
    hull = mixing_hull(quality, COST)
    means = quality.mean(axis=0)
    assert hull.at(COST[1]) == pytest.approx(means[1])  # the middle model is on the hull here
    oracle = oracle_curve(quality, COST)
    for c in (0.02, 0.1, 0.5, 1.0):
        assert oracle.at(c) >= hull.at(c) - 1e-9
    assert oracle.at(1.0) == pytest.approx(quality.max(axis=1).mean())  # unlimited budget: best model per prompt


def test_upper_hull_drops_points_below_the_chord():
    x, y = upper_hull(np.array([0.0, 0.5, 1.0, 0.4]), np.array([0.0, 0.2, 1.0, 0.9]))
    assert x.tolist() == [0.0, 0.4, 1.0] and y.tolist() == [0.0, 0.9, 1.0]


def test_a_router_that_knows_each_prompts_need_reaches_the_oracle_point():
    """Scores that know the cheapest good-enough tier: some threshold routes every prompt there."""
    rng = np.random.default_rng(1)
    n = 300
    need = rng.integers(0, 3, n)  # the cheapest tier that answers well
    quality = np.where(np.arange(3)[None, :] >= need[:, None], 8.0, 3.0)
    u = rng.random((n, 2)) * 0.4  # spread within "good enough" (< 0.4) and "not good enough" (>= 0.6)
    over_mid = np.where(need > 1, 0.6, 0.0) + u[:, 1]
    # consistent: the top tier beats the cheapest tier at least as surely as it beats the middle one
    over_cheap = np.maximum(np.where(need > 0, 0.6, 0.0) + u[:, 0], over_mid)
    curve = policy_curve(np.stack([over_cheap, over_mid], axis=1), quality, COST)
    ideal = COST[need].mean()
    assert curve.at(ideal) == pytest.approx(8.0) and oracle_curve(quality, COST).at(ideal) == pytest.approx(8.0)
    margin, _ = margin_over(curve, mixing_hull(quality, COST), ideal, COST[-1])
    assert margin > 0  # from that point up, above any random mixing
    assert np.all(curve.quality[1:-1] > random_at_shares(curve, quality)[1:-1])


def test_margin_over_finds_the_smallest_gap_at_a_breakpoint():
    from lab.eval.tier_metrics import CostCurve

    def line(xs: list[float], ys: list[float]) -> CostCurve:
        return CostCurve(np.array(xs), np.array(ys), np.empty((len(xs), 0)), np.empty(len(xs)))

    router = line([0.0, 0.5, 1.0], [1.0, 3.0, 4.0])
    base = line([0.0, 0.2, 1.0], [1.0, 2.9, 4.0])
    margin, where = margin_over(router, base, 0.0, 1.0)
    assert where == pytest.approx(0.2) and margin == pytest.approx(1.0 + 0.2 * 4 - 2.9)


def test_kept_share():
    rng = np.random.default_rng(2)
    s, w = rng.integers(1, 11, 300).astype(float), rng.integers(1, 11, 300).astype(float)
    good = (s - w) + rng.normal(0, 1, 300)
    assert kept_share(good, good, s, w) == pytest.approx(1.0)
    assert kept_share(-good, good, s, w) < 0
    half = kept_share((s - w) + rng.normal(0, 6, 300), good, s, w)
    assert 0 < half < 1
    lo, hi, undefined = bootstrap_kept(good, good, s, w, n=200)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0) and undefined == 0


@pytest.mark.parametrize("kind", ["cheapest", "cost_aware"])
def test_hull_points_span_cheapest_to_top_and_dominate_mixing_where_fitted(kind):
    from lab.eval.tier_metrics import crossfit_points_curve, hull_points

    scores, quality = _data()
    points = hull_points(scores, quality, COST, kind)
    costs = [p.cost for p in points]
    assert costs[0] == pytest.approx(COST[0]) and costs[-1] == pytest.approx(COST[-1])
    assert all(b > a for a, b in itertools.pairwise(costs))
    assert all((p.tier is None) != (p.threshold is None) for p in points)
    # each point is what it says on these prompts
    for p in points:
        chosen = p.chosen(scores, COST, kind)
        assert COST[chosen].mean() == pytest.approx(p.cost)
        assert quality[np.arange(len(quality)), chosen].mean() == pytest.approx(p.quality)
    # used on the prompts they were fitted on (one group), never below random mixing: single tiers are points
    own, _ = crossfit_points_curve(scores, quality, COST, kind, np.zeros(len(quality), dtype=int))
    margin, _ = margin_over(own.curve(), mixing_hull(quality, COST), COST[0], COST[-1])
    assert margin >= -1e-12


def test_halves_are_routed_by_the_other_halfs_points():
    from lab.eval.tier_metrics import crossfit_points_curve, half_of, hull_points

    scores, quality = _data(n=300)
    keys = [f"prompt-{i}" for i in range(300)]
    half = half_of(keys)
    assert half.tolist() == half_of(keys).tolist() and 100 < half.sum() < 200  # fixed and roughly balanced
    curve, fitted = crossfit_points_curve(scores, quality, COST, "cost_aware", half)
    on_other = hull_points(scores[half == 1], quality[half == 1], COST, "cost_aware")
    assert [(p.cost, p.threshold, p.tier) for p in fitted[0]] == [(p.cost, p.threshold, p.tier) for p in on_other]
    # at a target equal to one of half 1's point costs, half 0's prompts are routed by exactly that point
    k = next(i for i, p in enumerate(on_other) if p.threshold is not None)
    targets = np.unique(np.concatenate([[p.cost for p in pts] for pts in fitted.values()]))
    row = int(np.flatnonzero(np.isclose(targets, on_other[k].cost))[0])
    rows = np.flatnonzero(half == 0)
    chosen = on_other[k].chosen(scores[rows], COST, "cost_aware")
    assert curve.cost[row, rows] == pytest.approx(COST[chosen])


def test_bootstrap_interval_brackets_the_margin():
    from lab.eval.tier_metrics import bootstrap_margins, policy_prompt_curve

    scores, quality = _data()
    pc = policy_prompt_curve(scores, quality, COST, "cost_aware")
    at = [0.05, 0.3, 0.9]
    lo, hi = bootstrap_margins(pc, quality, COST, at, n=300)
    hull = mixing_hull(quality, COST)
    point = np.array([pc.curve().at(x) - hull.at(x) for x in at])
    assert np.all(lo <= point + 1e-9) and np.all(point <= hi + 1e-9) and np.all(hi > lo)
    assert bootstrap_margins(pc, quality, COST, at, n=300).tolist() == [lo.tolist(), hi.tolist()]  # seeded


def test_the_mix_and_tier_points_are_the_gateways():
    """The eval's point mixing and tier points route as gateway.tiers.mix / OperatingPoint do."""
    from gateway.tiers import OperatingPoint, mix
    from lab.eval.tier_metrics import HullPoint, _mix_weights

    pts = [HullPoint(0.01, 3.0, tier=0), HullPoint(0.05, 5.0, threshold=0.7), HullPoint(0.2, 6.0, tier=1)]
    pts.append(HullPoint(1.0, 8.0, tier=2))
    gw = [OperatingPoint(p.cost, p.threshold, p.tier) for p in pts]
    targets = np.array([0.01, 0.03, 0.05, 0.1, 0.2, 0.6, 1.0])
    low, weight = _mix_weights(pts, targets)
    for t, i, w in zip(targets.tolist(), low.tolist(), weight.tolist(), strict=True):
        a, b, wg = mix(gw, t)
        assert (gw.index(a), gw.index(b)) == (i, i + 1) and wg == pytest.approx(w)
    scores, _ = _data()
    for kind in ("cheapest", "cost_aware"):
        rule = TierRule.build(kind, tuple(COST))
        for point in (OperatingPoint(0.5, tier=t) for t in range(3)):  # a tier point: that tier, whatever the scores
            assert {rule.choose(tuple(row), point.thresholds(rule)) for row in scores} == {point.tier}
        extremes = [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)]
        for t in range(3):
            th = OperatingPoint(0.5, tier=t).thresholds(rule)
            assert {rule.choose(row, th) for row in extremes} == {t}


def test_log_grid_samples_a_mixing_segment_linearly_in_cost() -> None:
    """Random mixing of the cheapest and the top tier, 3.0 -> 9.0: on a log axis it must be drawn through many
    costs, each at its linear mix (its two ends alone draw a straight segment in log cost, above the truth)."""
    x, y = log_grid([0.01, 1.0], [3.0, 9.0])
    assert len(x) >= 400 and x[0] == 0.01 and x[-1] == 1.0 and np.all(np.diff(x) > 0)
    assert y == pytest.approx(3.0 + 6.0 * (x - 0.01) / 0.99)
    at_tenth = float(np.interp(np.log(0.1), np.log(x), y))  # what the plot draws at cost 0.1
    assert at_tenth == pytest.approx(3.0 + 6.0 * 0.09 / 0.99, abs=0.01)  # 3.55; the two ends alone drew 6.0
    assert log_grid([0.1, 0.3, 1.0], [5.0, 7.0, 8.0])[1][-1] == 8.0  # every vertex kept
