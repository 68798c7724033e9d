"""Quality-vs-cost curves of N-tier routing, and what they are compared with (pure NumPy).

Per prompt ``j`` the router gives ``scores[j, i]``, the predicted probability that the top tier's
model beats tier ``i``'s (``i`` < T-1, cheapest first), and the data gives every tier's quality
``quality[j, t]``; ``cost[t]`` is a tier's price per request relative to the top tier's. The
gateway's rules (``gateway.tiers.TierRule``, mirrored here in NumPy and checked against it in the
tests) turn one policy threshold ``θ`` into a tier per prompt: ``cheapest`` (the cheapest tier with
``scores[j, i] < θ``, else the top) or ``cost_aware`` (lower tier ``i``'s threshold
``0.5 + (θ - 0.5) r_i`` grows with its saving ``r_i``; the tier furthest below its threshold).
Sweeping ``θ`` gives the router's curve of (mean cost, mean quality) points, from all-top to
all-cheapest.

Baselines at the same mean cost:
- **random mixing**: sending each request to a tier at random, with fixed probabilities. The best
  mixture at a cost lies on the upper concave hull of the single models' (cost, quality) points
  (:func:`mixing_hull`); that is the baseline the router must beat, at every cost.
- **random with the router's shares**: the router's own tier shares at each θ, assigned at random.
- **oracle**: knows every tier's quality on every prompt; the upper hull of the Lagrangian choices
  ``argmax_t quality[j, t] - λ cost[t]`` (:func:`oracle_curve`).

Calibrated operating points (the gateway's ``operating_points``): :func:`hull_points` fits the
upper concave hull of the rule's points and the single tiers on calibration prompts;
:func:`crossfit_points_curve` routes each group of prompts by the points fitted on the others (a
cost target: the two points around it mixed at random). Curves are kept per prompt
(:class:`PromptCurve`), so :func:`bootstrap_margins` gives paired bootstrap intervals over prompts
of the margin over random mixing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Tier costs relative to the top tier's, cheapest first.
Costs = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class CostCurve:
    """Points (mean relative cost, mean quality), sorted by cost; ``shares[k]`` are the tier shares of point k."""

    cost: np.ndarray
    quality: np.ndarray
    shares: np.ndarray
    thresholds: np.ndarray

    def at(self, cost: float) -> float:
        """Quality at ``cost`` on the curve (linear between neighbouring points: a mix of two thresholds)."""
        return float(np.interp(cost, self.cost, self.quality))


def ratios(cost: Costs, kind: str) -> np.ndarray:
    """Each lower tier's saving against the top relative to the cheapest tier's (``cost_aware``), or ones."""
    c = np.asarray(cost, dtype=np.float64)
    if kind == "cheapest" or len(c) == 2:
        return np.ones(len(c) - 1)
    saving = 1.0 - c[:-1] / c[-1]
    return np.asarray(saving / saving[0])


def tiers_of(scores: np.ndarray, threshold: float, r: np.ndarray | None = None, kind: str = "cheapest") -> np.ndarray:
    """The gateway's rule for every prompt at policy threshold ``threshold`` (``r``: :func:`ratios`)."""
    s = np.asarray(scores, dtype=np.float64)
    r = np.ones(s.shape[1]) if r is None else r
    margins = s - (0.5 + (threshold - 0.5) * r)[None, :]
    if kind == "cheapest":
        below = margins < 0
        return np.where(below.any(axis=1), np.argmax(below, axis=1), s.shape[1])
    # cost_aware: the most negative margin; the top counts 0 and wins ties; lower ties: the cheaper
    best = np.argmin(margins, axis=1)
    return np.where(margins[np.arange(len(s)), best] < 0, best, s.shape[1])


def _check(scores: np.ndarray, quality: np.ndarray, cost: Costs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    if q.ndim != 2 or s.shape != (q.shape[0], q.shape[1] - 1) or c.shape != (q.shape[1],):
        raise ValueError(f"shapes: scores {s.shape}, quality {q.shape}, cost {c.shape}")
    if not (np.isfinite(s).all() and np.isfinite(q).all()):
        raise ValueError("scores and quality must be finite")
    if np.any(np.diff(c) <= 0):
        raise ValueError("tiers must be ordered by cost, cheapest first")
    return s, q, c


def _breakpoints(s: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Every policy threshold at which some prompt's tier can change: a margin crossing 0, two margins crossing."""
    points = [0.5 + (s - 0.5) / r[None, :]]
    for i in range(s.shape[1]):
        for k in range(i + 1, s.shape[1]):
            if r[i] != r[k]:
                points.append((0.5 + (s[:, i] - s[:, k]) / (r[i] - r[k]))[:, None])
    return np.unique(np.concatenate([p.ravel() for p in points]))


@dataclass(frozen=True)
class PromptCurve:
    """A curve kept per prompt: vertex ``k`` costs ``cost[k] @ w``, worth ``quality[k] @ w`` (prompt weights ``w``).

    With equal weights it is the curve on the prompts; with resampled weights, a bootstrap replicate.
    ``shares[k]`` are vertex k's tier shares and ``thresholds[k]`` its policy threshold (NaN: none).
    """

    cost: np.ndarray
    quality: np.ndarray
    shares: np.ndarray
    thresholds: np.ndarray

    def curve(self, weights: np.ndarray | None = None) -> CostCurve:
        """The (cost, quality) curve, sorted by cost, the best quality at each cost kept."""
        if weights is None:
            cost, quality = self.cost.mean(axis=1), self.quality.mean(axis=1)
        else:
            cost, quality = self.cost @ weights, self.quality @ weights
        order = np.lexsort((-quality, cost))
        keep = np.concatenate([[True], np.diff(cost[order]) > 0])
        idx = order[keep]
        return CostCurve(cost[idx], quality[idx], self.shares[idx], self.thresholds[idx])


def _per_prompt(chosen: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt cost and quality of tier choices ``chosen`` (K x n)."""
    return cost[chosen], quality[np.arange(quality.shape[0])[None, :], chosen]


def sweep(scores: np.ndarray, cost: Costs, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct decision set of the rule over all policy thresholds: (thresholds, chosen tiers K x n)."""
    s = np.asarray(scores, dtype=np.float64)
    r = ratios(cost, kind)
    cuts = _breakpoints(s, r)
    mids = (cuts[:-1] + cuts[1:]) / 2
    thresholds = np.concatenate([[cuts[0] - 1.0], cuts, mids, [cuts[-1] + 1.0]])
    return thresholds, np.stack([tiers_of(s, float(t), r, kind) for t in thresholds])


def policy_prompt_curve(scores: np.ndarray, quality: np.ndarray, cost: Costs, kind: str) -> PromptCurve:
    """The rule's operating points over all thresholds, kept per prompt."""
    s, q, c = _check(scores, quality, cost)
    thresholds, chosen = sweep(s, c, kind)
    pc, pq = _per_prompt(chosen, q, c)
    shares = np.stack([np.bincount(row, minlength=q.shape[1]) for row in chosen]) / q.shape[0]
    return PromptCurve(pc, pq, shares, thresholds)


def policy_curve(scores: np.ndarray, quality: np.ndarray, cost: Costs, kind: str = "cheapest") -> CostCurve:
    """The router's curve under rule ``kind``: one point per distinct decision set over all thresholds."""
    return policy_prompt_curve(scores, quality, cost, kind).curve()


# ---------------------------------------------------------------- calibrated operating points


@dataclass(frozen=True)
class HullPoint:
    """A vertex of a router's upper hull on calibration prompts: the gateway's ``OperatingPoint``
    (``gateway.tiers``; a policy's ``operating_points`` entry) plus its quality on those prompts."""

    cost: float
    quality: float
    threshold: float | None = None
    tier: int | None = None

    def chosen(self, scores: np.ndarray, cost: Costs, kind: str) -> np.ndarray:
        """The tier of every prompt at this point."""
        s = np.asarray(scores, dtype=np.float64)
        if self.tier is not None:
            return np.full(len(s), self.tier)
        assert self.threshold is not None
        return tiers_of(s, self.threshold, ratios(cost, kind), kind)


def hull_points(scores: np.ndarray, quality: np.ndarray, cost: Costs, kind: str) -> list[HullPoint]:
    """The upper concave hull of the rule's operating points and the single tiers on these (calibration) prompts.

    Cheapest first; at equal cost and quality a single tier is preferred. Ends at the top tier
    (beyond the hull's best point more cost buys nothing on these prompts, but a target up to the
    top tier's cost stays reachable).
    """
    s, q, c = _check(scores, quality, cost)
    thresholds, chosen = sweep(s, c, kind)
    pc, pq = _per_prompt(chosen, q, c)
    candidates = [HullPoint(float(c[t]), float(q[:, t].mean()), tier=t) for t in range(len(c))]
    candidates += [
        HullPoint(float(x), float(y), threshold=float(th))
        for x, y, th in zip(pc.mean(axis=1), pq.mean(axis=1), thresholds, strict=True)
    ]
    hx, hy = upper_hull(np.array([p.cost for p in candidates]), np.array([p.quality for p in candidates]))
    points = []
    for x, y in zip(hx.tolist(), hy.tolist(), strict=True):
        points.append(next(p for p in candidates if p.cost == x and p.quality == y))
    if points[-1].cost < c[-1]:
        points.append(candidates[len(c) - 1])
    return points


def _mix_weights(points: Sequence[HullPoint], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per target cost: the cheaper neighbouring point's index and the costlier one's weight (``gateway.tiers.mix``)."""
    xs = np.array([p.cost for p in points])
    t = np.clip(targets, xs[0], xs[-1])
    low = np.clip(np.searchsorted(xs, t, side="left") - 1, 0, len(xs) - 2)
    return low, (t - xs[low]) / (xs[low + 1] - xs[low])


def crossfit_points_curve(
    scores: np.ndarray, quality: np.ndarray, cost: Costs, kind: str, groups: np.ndarray
) -> tuple[PromptCurve, dict[int, list[HullPoint]]]:
    """Operating points fitted on every group but ``g`` and used on ``g``, for every group, kept per prompt.

    Vertex k targets one calibrated cost (every group's points' costs are targets); each prompt
    takes its own group's mix of the two points around it, so with one group it is that group's
    points used on itself, and with two halves each half is routed by the other half's points.
    """
    s, q, c = _check(scores, quality, cost)
    fitted: dict[int, list[HullPoint]] = {}
    for g in np.unique(groups).tolist():
        train = groups != g if len(np.unique(groups)) > 1 else groups == g
        fitted[g] = hull_points(s[train], q[train], c, kind)
    targets = np.unique(np.concatenate([[p.cost for p in pts] for pts in fitted.values()]))
    pc = np.zeros((len(targets), len(q)))
    pq = np.zeros_like(pc)
    shares = np.zeros((len(targets), q.shape[1]))
    for g, pts in fitted.items():
        rows = np.flatnonzero(groups == g)
        per_point = [p.chosen(s[rows], c, kind) for p in pts]
        low, w = _mix_weights(pts, targets)
        for k, (i, wk) in enumerate(zip(low.tolist(), w.tolist(), strict=True)):
            for j, weight in ((i, 1.0 - wk), (i + 1, wk)):
                ch = per_point[j]
                pc[k, rows] += weight * c[ch]
                pq[k, rows] += weight * q[rows, ch]
                shares[k] += weight * np.bincount(ch, minlength=q.shape[1]) / len(q)
    return PromptCurve(pc, pq, shares, np.full(len(targets), np.nan)), fitted


def half_of(keys: Sequence[str], salt: str = "tiers-select:") -> np.ndarray:
    """0 (the selection half) or 1 (the report half) for each prompt key, by a fixed hash (lab log, 2026-12-04)."""
    return np.array([int(hashlib.sha256((salt + k).encode()).hexdigest(), 16) % 2 for k in keys])


def bootstrap_margins(
    curve: PromptCurve, quality: np.ndarray, cost: Costs, at: Sequence[float], n: int = 2000, seed: int = 0
) -> np.ndarray:
    """Paired bootstrap over prompts of the margin over random mixing at each cost of ``at``: (5th, 95th) x len(at).

    Each resample recomputes the curve (same thresholds / points) and the mixing hull from its own
    prompt weights.
    """
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    rng = np.random.default_rng(seed)
    x = np.asarray(at, dtype=np.float64)
    out = np.empty((n, len(x)))
    m = q.shape[0]
    for b in range(n):
        w = rng.multinomial(m, np.full(m, 1.0 / m)) / m
        cur = curve.curve(w)
        hx, hy = upper_hull(c, w @ q)
        out[b] = np.interp(x, cur.cost, cur.quality) - np.interp(x, hx, hy)
    return np.percentile(out, [5, 95], axis=0)


def upper_hull(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper concave hull of points (what mixing them at random can reach), sorted by cost."""
    order = np.lexsort((-quality, cost))
    hull: list[tuple[float, float]] = []
    for x, y in zip(cost[order].tolist(), quality[order].tolist(), strict=True):
        if hull and x == hull[-1][0]:
            continue
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (x - x1) <= (y - y1) * (x2 - x1):  # the middle point is not above the chord
                hull.pop()
            else:
                break
        hull.append((x, y))
    # only the rising part: spending more than the best point buys nothing
    best = int(np.argmax([y for _, y in hull]))
    hull = hull[: best + 1]
    return np.array([x for x, _ in hull]), np.array([y for _, y in hull])


def log_grid(
    cost: Sequence[float] | np.ndarray, quality: Sequence[float] | np.ndarray, n: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """A piecewise-linear cost curve sampled at ``n`` log-spaced costs (and its own), for a plot on a log-cost axis.

    Mixing two points at random is linear in cost: drawn between its two ends alone on a log axis, a segment
    would bend the wrong way (above the curves it lies below on a linear axis).
    """
    x = np.asarray(cost, dtype=np.float64)
    grid = np.unique(np.concatenate([x, np.geomspace(max(float(x[0]), 1e-6), float(x[-1]), n)]))
    return grid, np.interp(grid, x, np.asarray(quality, dtype=np.float64))


def mixing_hull(quality: np.ndarray, cost: Costs) -> CostCurve:
    """Best random mixing of the single models at each cost (upper hull of their mean-quality points)."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    hx, hy = upper_hull(c, q.mean(axis=0))
    return CostCurve(hx, hy, np.empty((len(hx), 0)), np.empty(len(hx)))


def random_at_shares(curve: CostCurve, quality: np.ndarray) -> np.ndarray:
    """Quality of assigning the router's tier shares at random, at each of its points."""
    return np.asarray(curve.shares @ np.asarray(quality, dtype=np.float64).mean(axis=0))


def oracle_curve(quality: np.ndarray, cost: Costs) -> CostCurve:
    """Best achievable cost/quality: each prompt takes ``argmax_t q[j, t] - λ c[t]`` for every λ (upper hull)."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    n, tiers = q.shape
    lambdas = [0.0]
    for a in range(tiers):
        for b in range(a + 1, tiers):
            slope = (q[:, b] - q[:, a]) / (c[b] - c[a])
            lambdas.extend(slope[slope > 0].tolist())
    grid = np.unique(np.array(lambdas))
    grid = np.concatenate([grid, grid * (1 + 1e-9) + 1e-12])
    xs, ys = [], []
    rows = np.arange(n)
    for lam in grid:
        value = q - lam * c[None, :]
        # ties go to the cheaper tier
        chosen = np.argmax(value + 1e-12 * (tiers - np.arange(tiers))[None, :], axis=1)
        xs.append(float(c[chosen].mean()))
        ys.append(float(q[rows, chosen].mean()))
    xs.append(float(c[0]))
    ys.append(float(q[:, 0].mean()))
    hx, hy = upper_hull(np.array(xs), np.array(ys))
    return CostCurve(hx, hy, np.empty((len(hx), 0)), np.empty(len(hx)))


def margin_over(curve: CostCurve, baseline: CostCurve, lo: float, hi: float) -> tuple[float, float]:
    """(smallest quality margin of ``curve`` over ``baseline`` strictly inside (lo, hi), the cost where it is).

    Both are piecewise linear, so the smallest margin is at a breakpoint of one of them.
    """
    xs = np.unique(np.concatenate([curve.cost, baseline.cost]))
    xs = xs[(xs > lo) & (xs < hi)]
    if not len(xs):
        return float("nan"), float("nan")
    diff = np.interp(xs, curve.cost, curve.quality) - np.interp(xs, baseline.cost, baseline.quality)
    k = int(np.argmin(diff))
    return float(diff[k]), float(xs[k])
