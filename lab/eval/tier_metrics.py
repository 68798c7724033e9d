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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


def ratios(cost: Sequence[float] | np.ndarray, kind: str) -> np.ndarray:
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


def _check(scores: np.ndarray, quality: np.ndarray, cost: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def policy_curve(scores: np.ndarray, quality: np.ndarray, cost: Sequence[float], kind: str = "cheapest") -> CostCurve:
    """The router's curve under rule ``kind``: one point per distinct decision set over all thresholds."""
    s, q, c = _check(scores, quality, cost)
    r = ratios(c, kind)
    cuts = _breakpoints(s, r)
    mids = (cuts[:-1] + cuts[1:]) / 2
    thresholds = np.concatenate([[cuts[0] - 1.0], cuts, mids, [cuts[-1] + 1.0]])
    n, tiers = q.shape
    rows = np.arange(n)
    points = []
    for t in thresholds:
        chosen = tiers_of(s, float(t), r, kind)
        shares = np.bincount(chosen, minlength=tiers) / n
        points.append((float(c[chosen].mean()), float(q[rows, chosen].mean()), shares, float(t)))
    points.sort(key=lambda p: (p[0], -p[1]))
    cost_arr = np.array([p[0] for p in points])
    # one point per cost (the best quality reached at it)
    keep = np.concatenate([[True], np.diff(cost_arr) > 0])
    return CostCurve(
        cost_arr[keep],
        np.array([p[1] for p in points])[keep],
        np.stack([p[2] for p in points])[keep],
        np.array([p[3] for p in points])[keep],
    )


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


def mixing_hull(quality: np.ndarray, cost: Sequence[float]) -> CostCurve:
    """Best random mixing of the single models at each cost (upper hull of their mean-quality points)."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    hx, hy = upper_hull(c, q.mean(axis=0))
    return CostCurve(hx, hy, np.empty((len(hx), 0)), np.empty(len(hx)))


def random_at_shares(curve: CostCurve, quality: np.ndarray) -> np.ndarray:
    """Quality of assigning the router's tier shares at random, at each of its points."""
    return np.asarray(curve.shares @ np.asarray(quality, dtype=np.float64).mean(axis=0))


def oracle_curve(quality: np.ndarray, cost: Sequence[float]) -> CostCurve:
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
