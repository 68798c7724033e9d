"""The promotion gate: is the candidate better than the serving router on held-back judged traffic?

Judged samples in the held-back slice were never trained on. On them both
routers' scores trace a routing curve whose quality is the judge's verdict
(strong answer better: the strong call gains 1; tie: 0; weak better: loses 1),
and APGR is the usual area ratio (:mod:`lab.eval.metrics`), so ``ΔAPGR =
APGR(candidate) - APGR(serving)``.

**Rule** (:class:`GateRule`, the one definition that ``ferryman learn promote``
and the learning-curve simulation both apply). Draw ``resamples`` (2,000)
bootstrap samples of the held-back prompts (with replacement, the same draw for
both routers: a *paired* bootstrap) and take the central ``level`` (95 %)
percentile interval of the difference. Promote only when the whole interval is
above 0 — the improvement is larger than what resampling the held-back traffic
produces by chance — and the slice holds at least ``min_decisive`` (30) non-tie
verdicts.

Why 95 % on a held-back 20 %: chosen on the learning-curve tuning rows by the
rule "no promotion of a candidate that is not better on fresh traffic, then the
most promotions" (``lab.learn.gate_study``). Over 40 random splits (the 10 of the
first study and 30 more; docs/lab-log.md, 2026-12-05 09:11 plan / 09:13 result)
95 % promoted 26 candidates and 99 % (the rule from 2026-12-05 00:00 to 09:13)
9, neither any that was not better; 95 % refused all 13 not-better candidates
the gate could decide on, the closest by a lower end of −0.0007 (GSM8K). The
5-fold cross-fitted gates (90 / 95 / 99 / 99.9 %, and 99 % with the slice's 90 %
interval as a second check) promote more but let a not-better GSM8K candidate
through, or (99.9 %) promoted fewer on the first 10 splits (docs/lab-log.md
2026-12-05 00:00 and 07:12). The price is still power: it promotes only on ~1,000
judged samples, where the slice holds enough verdicts.

The difference resampled is ΔAPGR times the slice's strong-over-weak gap, i.e.
the difference of the two curves' areas above the weak-only line (in verdict
units): it has ΔAPGR's sign wherever APGR is defined, and stays defined on
resamples where the gap is near or below 0, on which APGR's division by the gap
makes ΔAPGR explode or flip. ΔAPGR and its interval (the area interval divided by
the whole slice's gap) are reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.eval.metrics import apgr, auc, endpoints, routing_curve


@dataclass(frozen=True)
class GateRule:
    """The promotion rule's settings; the defaults are the rule (see the module docstring)."""

    resamples: int = 2000
    level: float = 0.95
    min_decisive: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.5 < self.level < 1.0:
            raise ValueError(f"gate level must be in (0.5, 1), is {self.level}")
        if self.resamples < 100:
            raise ValueError(f"gate resamples must be >= 100, is {self.resamples}")
        if self.min_decisive < 1:
            raise ValueError(f"gate min_decisive must be >= 1, is {self.min_decisive}")


@dataclass(frozen=True)
class GateResult:
    """What the gate saw and decided."""

    samples: int
    decisive: int
    apgr_candidate: float
    apgr_serving: float
    low: float
    high: float
    resamples: int
    level: float
    promote: bool
    reason: str
    #: Why the slice's APGRs are NaN ("too few verdicts", "no net strong wins: ..."); "" when they are given.
    apgr_undefined: str = ""

    @property
    def diff(self) -> float:
        """ΔAPGR on the whole held-back slice."""
        return self.apgr_candidate - self.apgr_serving

    def as_dict(self) -> dict[str, float | int | bool | str | None]:
        """For the promotion history and JSON output: an undefined figure is ``null`` (``apgr_undefined`` says
        why), never a bare ``NaN``, which strict JSON readers (``jq``, JavaScript) refuse."""
        return {
            "samples": self.samples,
            "decisive": self.decisive,
            "apgr_candidate": _rounded(self.apgr_candidate),
            "apgr_serving": _rounded(self.apgr_serving),
            "diff": _rounded(self.diff),
            "interval_low": _rounded(self.low),
            "interval_high": _rounded(self.high),
            "resamples": self.resamples,
            "level": self.level,
            "promote": self.promote,
            "reason": self.reason,
            "apgr_undefined": self.apgr_undefined,
        }


def _rounded(x: float) -> float | None:
    return round(x, 5) if np.isfinite(x) else None


def _curve_inputs(verdicts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    v = np.asarray(verdicts)
    strong, weak = (v > 0).astype(np.float64), (v < 0).astype(np.float64)
    weak_q, strong_q = endpoints(strong, weak)
    return strong, weak, weak_q, strong_q


def verdict_area(scores: np.ndarray, verdicts: np.ndarray) -> float:
    """Area between a router's routing curve and the weak-only line, with verdicts as the quality gain."""
    strong, weak, weak_q, _ = _curve_inputs(verdicts)
    return auc(routing_curve(scores, strong, weak)) - weak_q


def verdict_apgr(scores: np.ndarray, verdicts: np.ndarray) -> float:
    """APGR of ``scores`` when the judge's verdicts (+1/0/-1) are the quality gain of the strong call."""
    strong, weak, weak_q, strong_q = _curve_inputs(verdicts)
    if strong_q <= weak_q:
        return float("nan")
    return apgr(routing_curve(scores, strong, weak), weak_q, strong_q)


def area_differences(
    candidate: np.ndarray, serving: np.ndarray, verdicts: np.ndarray, *, resamples: int, seed: int = 0
) -> np.ndarray:
    """``resamples`` paired bootstrap draws of the area difference (candidate − serving)."""
    c, s, v = (np.asarray(a, dtype=np.float64) for a in (candidate, serving, verdicts))
    n = len(v)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for b in range(resamples):
        idx = rng.integers(0, n, n)
        diffs[b] = verdict_area(c[idx], v[idx]) - verdict_area(s[idx], v[idx])
    return diffs


def paired_bootstrap_gate(
    candidate: np.ndarray, serving: np.ndarray, verdicts: np.ndarray, rule: GateRule | None = None
) -> GateResult:
    """Apply ``rule`` (default: :class:`GateRule`'s defaults) to scores of the same held-back samples."""
    rule = rule or GateRule()
    level, resamples, min_decisive = rule.level, rule.resamples, rule.min_decisive
    c, s, v = (np.asarray(a, dtype=np.float64) for a in (candidate, serving, verdicts))
    if not (c.shape == s.shape == v.shape) or c.ndim != 1:
        raise ValueError("candidate scores, serving scores and verdicts must be equal-length vectors")
    n, decisive = len(v), int(np.count_nonzero(v))
    nan = float("nan")
    if n == 0 or decisive < min_decisive:
        reason = f"only {decisive} non-tie verdicts in the held-back slice (need {min_decisive}); judge more traffic"
        return GateResult(n, decisive, nan, nan, nan, nan, 0, level, False, reason, "too few verdicts")
    full_c, full_s = verdict_apgr(c, v), verdict_apgr(s, v)
    diffs = area_differences(c, s, v, resamples=resamples, seed=rule.seed)
    tail = (1.0 - level) / 2
    low_area, high_area = (float(x) for x in np.quantile(diffs, [tail, 1.0 - tail]))
    gap = float(np.mean(v > 0) - np.mean(v < 0))
    # The interval in APGR units (the area's divided by the slice's gap), when APGR is defined.
    low, high = (low_area / gap, high_area / gap) if gap > 0 else (nan, nan)
    promote = low_area > 0
    undefined = "" if gap > 0 else "no net strong wins: the strong model is not better on this slice"
    shown = (
        f"ΔAPGR {full_c - full_s:+.4f}, {level:.0%} interval [{low:+.4f}, {high:+.4f}]"
        if gap > 0
        else f"area difference {level:.0%} interval [{low_area:+.4f}, {high_area:+.4f}]"
    )
    reason = f"{shown} {'excludes' if promote else 'does not exclude'} 0"
    return GateResult(n, decisive, full_c, full_s, low, high, resamples, level, promote, reason, undefined)
