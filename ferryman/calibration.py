"""The calibration rule: the score threshold that sends a target share of requests to the strong model.

A router's calibration table (``calibration.points`` of its manifest, served by ListRouters)
lists ``(strong_share, threshold)`` points measured on reference prompts. This module is the one
implementation of how a target share becomes a threshold; the gateway uses it for share-based
policies and ``scorer.artifacts.Calibration.threshold_for`` (used by the lab) delegates to it.
It imports nothing, so both services may import it (the gateway never imports the scorer).

The rule (stated in docs/artifacts.md, checked on shared vectors in tests/test_calibration.py):

1. Points are ordered by ``strong_share`` ascending and, among equal shares, by ``threshold``
   descending (a larger share never needs a larger threshold).
2. A share at or below the first point's gets the first point's threshold; at or above the last
   point's, the last point's.
3. A share equal to one or more points' shares gets the first of them in that order: the highest
   threshold that reaches the share (the fewest strong calls).
4. Otherwise the threshold is interpolated linearly between the neighbouring points
   ``s0 < share < s1``: ``t0 + (t1 - t0) * (share - s0) / (s1 - s0)``.

The share must be a number in [0, 1] and the table must not be empty (``ValueError``).

How a table is made from scores (:func:`share_threshold`, used by ``ferryman calibrate`` on reference
prompts and by the gateway's online calibration on live traffic): with ``N`` scores sorted high to
low and ``n = round(share * N)``, the threshold is above every score for ``n = 0``, the lowest score
for ``n = N``, and otherwise midway between the ``n``-th and ``(n+1)``-th highest score, so that
exactly ``n`` scores are at or above it (fewer only where scores tie).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence

__all__ = ["CalibrationTable", "share_threshold"]


def share_threshold(ranked: Sequence[float], share: float) -> float:
    """The threshold that puts ``share`` of ``ranked`` (scores sorted high to low, at least one) at or above it."""
    if math.isnan(share) or not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    total = len(ranked)
    if total == 0:
        raise ValueError("no scores")
    n = round(share * total)
    if n == 0:
        return math.nextafter(float(ranked[0]), math.inf)
    if n == total:
        return float(ranked[-1])
    return float((ranked[n - 1] + ranked[n]) / 2)


class CalibrationTable:
    """Calibration points in rule order, ready to answer ``threshold_for(share)``."""

    __slots__ = ("_shares", "_thresholds")

    def __init__(self, points: Iterable[tuple[float, float]]) -> None:
        ordered = sorted(((float(s), float(t)) for s, t in points), key=lambda p: (p[0], -p[1]))
        if not ordered:
            raise ValueError("empty calibration table")
        self._shares = [s for s, _ in ordered]
        self._thresholds = [t for _, t in ordered]

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        """``(strong_share, threshold)`` pairs in rule order."""
        return tuple(zip(self._shares, self._thresholds, strict=True))

    def threshold_for(self, share: float) -> float:
        """The threshold for a target strong-call share (the module docstring's rule)."""
        if math.isnan(share) or not 0.0 <= share <= 1.0:
            raise ValueError(f"strong_share must be in [0, 1], got {share}")
        shares, thresholds = self._shares, self._thresholds
        i = bisect_left(shares, share)
        if i == len(shares):
            return thresholds[-1]
        if i == 0 or shares[i] == share:
            return thresholds[i]
        s0, t0, s1, t1 = shares[i - 1], thresholds[i - 1], shares[i], thresholds[i]
        return t0 + (t1 - t0) * (share - s0) / (s1 - s0)
