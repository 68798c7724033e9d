"""Routing metrics of the RouteLLM paper, computed exactly over every threshold.

A router gives each prompt a score; sending the top-``n`` scored prompts to the
strong model and the rest to the weak one, for ``n = 0..N``, traces the quality
versus strong-call-% curve. Prompts with equal scores cannot be separated by a
threshold, so within a block of ties the curve is the straight line between the
block's ends — the expected quality over any order of the tied prompts. That
makes a constant router exactly the random router and the result independent
of input order.

With ``weak``/``strong`` the qualities of always calling one model (the curve's
ends), as in RouteLLM's ``evaluate.py``:

- ``AUC``: area under the curve over strong-call share in [0, 1];
- ``APGR = (AUC - weak) / (strong - weak)``: the share of the weak-to-strong
  area recovered (0.5 for the random router, higher is better);
- ``CPT(x%)``: the smallest strong-call % at which the curve reaches
  ``weak + x (strong - weak)`` (first crossing, interpolated between points;
  RouteLLM interpolates on its 10-bin curve, which for a non-monotone curve can
  differ slightly). ``None`` when the curve never gets there.

The oracle sends the prompts with the largest positive gain to the strong model
first and never pays for a call that does not help (RouteLLM's "optimal").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lab.data.benchmarks import LabeledPrompt

CPT_LEVELS: tuple[float, ...] = (0.2, 0.5, 0.8)


@dataclass(frozen=True)
class Curve:
    """Quality at each strong-call share (``share`` ascending from 0 to 1)."""

    share: np.ndarray
    quality: np.ndarray

    def __post_init__(self) -> None:
        if self.share.shape != self.quality.shape or self.share.ndim != 1 or len(self.share) < 2:
            raise ValueError("a curve needs matching 1-d share and quality arrays with at least 2 points")


@dataclass(frozen=True)
class Metrics:
    """Summary of one curve against the weak-only and strong-only qualities."""

    auc: float
    apgr: float
    cpt: dict[float, float | None]  # level (0.2, 0.5, 0.8) -> strong-call % or None


def _arrays(strong: Sequence[float] | np.ndarray, weak: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(strong, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    if s.ndim != 1 or s.shape != w.shape or len(s) == 0:
        raise ValueError(f"strong and weak quality must be equal-length non-empty vectors, got {s.shape}, {w.shape}")
    if not (np.isfinite(s).all() and np.isfinite(w).all()):
        raise ValueError("quality values must be finite")
    return s, w


def routing_curve(
    scores: Sequence[float] | np.ndarray, strong: Sequence[float] | np.ndarray, weak: Sequence[float] | np.ndarray
) -> Curve:
    """Curve of a router with per-prompt ``scores`` (higher = more likely sent strong)."""
    s, w = _arrays(strong, weak)
    sc = np.asarray(scores, dtype=np.float64)
    if sc.shape != s.shape:
        raise ValueError(f"{len(sc)} scores for {len(s)} prompts")
    if not np.isfinite(sc).all():
        raise ValueError("scores must be finite")
    n = len(s)
    order = np.argsort(-sc, kind="stable")
    ranked = sc[order]
    cum = np.concatenate([[0.0], np.cumsum((s - w)[order])])
    # Block ends: positions where the next score differs (and the ends of the list).
    edges = np.concatenate([[0], np.nonzero(np.diff(ranked) != 0)[0] + 1, [n]])
    positions = np.arange(n + 1, dtype=np.float64)
    gained = np.interp(positions, edges.astype(np.float64), cum[edges])
    return Curve(positions / n, (w.sum() + gained) / n)


def oracle_curve(strong: Sequence[float] | np.ndarray, weak: Sequence[float] | np.ndarray) -> Curve:
    """Best achievable curve: positive gains first, largest first, then no more paid calls."""
    s, w = _arrays(strong, weak)
    n = len(s)
    gains = np.sort(np.clip(s - w, 0.0, None))[::-1]
    cum = np.concatenate([[0.0], np.cumsum(gains)])
    return Curve(np.arange(n + 1) / n, (w.sum() + cum) / n)


def random_curve(
    strong: Sequence[float] | np.ndarray, weak: Sequence[float] | np.ndarray, seeds: Sequence[int] = tuple(range(10))
) -> Curve:
    """The random router's curve averaged over ``seeds`` (uniform scores per seed)."""
    s, w = _arrays(strong, weak)
    if not seeds:
        raise ValueError("need at least one seed")
    curves = [routing_curve(np.random.default_rng(seed).random(len(s)), s, w) for seed in seeds]
    return average_curves(curves)


def average_curves(curves: Sequence[Curve]) -> Curve:
    """Pointwise mean of curves over the same shares."""
    if not curves:
        raise ValueError("need at least one curve")
    share = curves[0].share
    if any(c.share.shape != share.shape or not np.allclose(c.share, share) for c in curves):
        raise ValueError("curves must share their strong-call shares")
    return Curve(share, np.mean([c.quality for c in curves], axis=0))


def endpoints(strong: Sequence[float] | np.ndarray, weak: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """``(weak-only quality, strong-only quality)``: mean quality of always calling one model."""
    s, w = _arrays(strong, weak)
    return float(w.mean()), float(s.mean())


def auc(curve: Curve) -> float:
    """Area under the curve over strong-call share (trapezoids)."""
    return float(np.trapezoid(curve.quality, curve.share))


def apgr(curve: Curve, weak_quality: float, strong_quality: float) -> float:
    """Average performance gap recovered: ``(AUC - weak area) / (strong area - weak area)``."""
    width = float(curve.share[-1] - curve.share[0])
    gap = (strong_quality - weak_quality) * width
    if gap == 0:
        raise ValueError("strong and weak quality are equal: APGR is undefined")
    return (auc(curve) - weak_quality * width) / gap


def cpt(curve: Curve, level: float, weak_quality: float, strong_quality: float) -> float | None:
    """Strong-call % needed to first reach ``level`` (e.g. 0.5) of the weak-to-strong gap."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"level must be in [0, 1], got {level}")
    target = weak_quality + level * (strong_quality - weak_quality)
    reached = np.nonzero(curve.quality >= target - 1e-12)[0]
    if len(reached) == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return float(100 * curve.share[0])
    q0, q1 = curve.quality[i - 1], curve.quality[i]
    x0, x1 = curve.share[i - 1], curve.share[i]
    frac = 0.0 if q1 == q0 else (target - q0) / (q1 - q0)
    return float(100 * (x0 + frac * (x1 - x0)))


def summarize(
    curve: Curve, weak_quality: float, strong_quality: float, levels: Sequence[float] = CPT_LEVELS
) -> Metrics:
    """AUC, APGR and CPT at ``levels`` for one curve."""
    return Metrics(
        auc=auc(curve),
        apgr=apgr(curve, weak_quality, strong_quality),
        cpt={lv: cpt(curve, lv, weak_quality, strong_quality) for lv in levels},
    )


def apgr_by_benchmark(items: Sequence[LabeledPrompt], scores: np.ndarray) -> dict[str, float]:
    """APGR of ``scores`` per benchmark of ``items`` (in order of first appearance)."""
    out = {}
    for name in dict.fromkeys(it.benchmark for it in items):
        rows = [i for i, it in enumerate(items) if it.benchmark == name]
        s = np.array([items[i].strong for i in rows])
        w = np.array([items[i].weak for i in rows])
        weak_q, strong_q = endpoints(s, w)
        out[name] = apgr(routing_curve(scores[rows], s, w), weak_q, strong_q)
    return out


def ranks_within(scores: Sequence[float] | np.ndarray, groups: Sequence[object] | np.ndarray) -> np.ndarray:
    """Scores replaced by their rank share (0..1, ties averaged) within each group.

    A threshold on these is each group's own strong-call share: it is what
    calibrating every cross-fitted fold artifact to the same share would do, and
    removes the fold-to-fold score offsets that one production router does not have.
    """
    sc = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(groups)
    if labels.shape != sc.shape:
        raise ValueError(f"{len(labels)} group labels for {len(sc)} scores")
    out = np.zeros(len(sc))
    for g in np.unique(labels):
        idx = np.nonzero(labels == g)[0]
        values, inverse = np.unique(sc[idx], return_inverse=True)
        order = np.argsort(sc[idx], kind="stable")
        rank = np.empty(len(idx))
        rank[order] = np.arange(len(idx), dtype=np.float64)
        mean_rank = np.bincount(inverse, weights=rank, minlength=len(values)) / np.bincount(inverse)
        out[idx] = (mean_rank[inverse] + 0.5) / len(idx)
    return out


def decile_curve(
    scores: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
    weak: Sequence[float] | np.ndarray,
    bins: int = 10,
) -> Curve:
    """RouteLLM's coarse curve: thresholds at the score quantiles (``pd.qcut`` edges), ``>=`` each edge.

    Kept to show how close the exact curve's APGR is to the paper's procedure.
    """
    s, w = _arrays(strong, weak)
    sc = np.asarray(scores, dtype=np.float64)
    edges = np.quantile(sc, np.linspace(0.0, 1.0, bins + 1))
    shares, quality = [], []
    for i, cut in enumerate(edges):
        go_strong = sc > cut if i == len(edges) - 1 else sc >= cut
        shares.append(go_strong.mean())
        quality.append(np.where(go_strong, s, w).mean())
    order = np.argsort(shares, kind="stable")
    return Curve(np.asarray(shares)[order], np.asarray(quality)[order])


@dataclass(frozen=True)
class OrientedBattles:
    """Decisive battles, each oriented stronger-vs-weaker model, for :func:`battle_auc`.

    ``prompt[i]`` indexes the scored prompts; ``stronger_won[i]`` is 1 when the model rated
    stronger won battle ``i``. Ties (``tie`` and ``tie (bothbad)``) say nothing about which
    side a prompt favours and are left out (counted in ``ties``).
    """

    prompt: np.ndarray
    stronger_won: np.ndarray
    ties: int
    models: int


def orient_battles(
    prompt_index: Sequence[int], model_a: Sequence[str], model_b: Sequence[str], winner: Sequence[str]
) -> OrientedBattles:
    """Orient each decisive battle by leave-one-battle-out Bradley-Terry ratings of its own source.

    A battle's two models are ordered by ratings fitted to every *other* battle of the set (plus
    a tie of weight 1/M against every other model, so a model seen once stays finite), so no
    battle decides its own orientation. ``winner`` holds ``model_a``, ``model_b`` or ``tie``.
    """
    from scorer.routers.sw import fit_bradley_terry  # the scorer's BT fit (SW's)

    names = sorted(set(model_a) | set(model_b))
    index = {m: i for i, m in enumerate(names)}
    m = len(names)
    a = np.array([index[x] for x in model_a])
    b = np.array([index[x] for x in model_b])
    w = np.asarray(winner)
    cells = np.zeros((len(a), m, m))
    rows = np.arange(len(a))
    cells[rows[w == "model_a"], a[w == "model_a"], b[w == "model_a"]] = 1.0
    cells[rows[w == "model_b"], b[w == "model_b"], a[w == "model_b"]] = 1.0
    tie = w == "tie"
    cells[rows[tie], a[tie], b[tie]] = 0.5
    cells[rows[tie], b[tie], a[tie]] = 0.5
    prior = 0.5 * (np.ones((m, m)) - np.eye(m)) / m
    theta = fit_bradley_terry(cells.sum(axis=0)[None] - cells + prior)
    decisive = ~tie & (theta[rows, a] != theta[rows, b])
    a_stronger = theta[rows, a] > theta[rows, b]
    won = np.where(w == "model_a", a_stronger, ~a_stronger)
    return OrientedBattles(np.asarray(prompt_index)[decisive], won[decisive].astype(np.int64), int(tie.sum()), m)


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney; equal scores count half)."""
    sc = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("AUC needs both outcomes among the labels")
    values, inverse = np.unique(sc, return_inverse=True)
    order = np.argsort(sc, kind="stable")
    rank = np.empty(len(sc))
    rank[order] = np.arange(1, len(sc) + 1, dtype=np.float64)
    mean_rank = np.bincount(inverse, weights=rank, minlength=len(values)) / np.bincount(inverse)
    return float((mean_rank[inverse][y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def battle_auc(scores: Sequence[float] | np.ndarray, battles: OrientedBattles) -> float:
    """AUC of per-prompt router scores for "the stronger model won" over decisive battles.

    A router's score for a prompt is its strong-win rate for the default pair (GPT-4-1106 vs
    Mixtral): how much the prompt needs a strong model. On a prompt that needs one, the stronger
    model of any pair should win more often, so the score should rank the battles the stronger
    model won above those it lost (AUC 0.5: no better than chance). Every router kind is scored
    the same way, single-pair BERT included.
    """
    return roc_auc(np.asarray(scores, dtype=np.float64)[battles.prompt], battles.stronger_won)
