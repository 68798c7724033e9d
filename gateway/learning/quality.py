"""What the live policy is getting, estimated on judged traffic (definitions in docs/learning.md).

Each judged comparison gives the strong answer ``q`` = 1 (strong better), ½ (tie) or 0 (weak
better), and the weak answer 1 − ``q``. Over n comparisons:

- ``quality_strong`` / ``quality_weak``: mean quality had every request gone to that tier;
- ``quality_policy``: mean quality of the answers the clients got (the served tier's);
- ``quality_gap`` = quality_strong − quality_policy (what routing gave up, in win-rate points);
- ``pgr`` = (quality_policy − quality_weak) / (quality_strong − quality_weak): the share of the
  strong-over-weak gap the policy recovered at its strong-call share (RouteLLM's PGR);
- ``savings`` = 1 − policy cost / all-strong cost, both from the measured costs of the two answers;
- ``router_apgr``: RouteLLM's APGR of the policy's router on this traffic: PGR averaged over every
  strong-call share from 0 to 1, sending the highest-scored requests to strong (0.5 = random).

PGR and APGR are None (not reported) until the strong answer was better in at least
``MIN_NET_STRONG_WINS`` more comparisons than the weak one.

Shadowing samples requests uniformly, so these estimate the figures on all of the policy's traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from gateway.learning.records import Record, Verdict

_Q = {Verdict.STRONG: 1.0, Verdict.TIE: 0.5, Verdict.WEAK: 0.0}
#: PGR and APGR divide by the strong-over-weak gap, i.e. by (strong-better − weak-better verdicts) / n. Below
#: this many net strong-better verdicts they are not reported (None): over a handful the ratio swings far
#: outside 0..1 (a live APGR of 1.987 was seen on tie-heavy traffic with a net of 2).
MIN_NET_STRONG_WINS = 10


@dataclass(frozen=True)
class Judged:
    """One judged comparison as the quality figures need it."""

    verdict: Verdict
    served_tier: str
    score: float | None
    strong_cost_usd: float
    weak_cost_usd: float

    @classmethod
    def from_record(cls, record: Record) -> Judged | None:
        """The figures' view of a stored record; None unless it has a label and a served tier."""
        try:
            verdict = Verdict(record.verdict)
        except ValueError:
            return None
        if not verdict.is_label or record.served_tier not in ("strong", "weak"):
            return None
        strong, weak = record.costs()
        return cls(verdict, record.served_tier, record.score, strong, weak)


@dataclass(frozen=True)
class QualityReport:
    n: int
    strong_share: float
    strong_win_rate: float
    weak_win_rate: float
    tie_rate: float
    quality_strong: float
    quality_weak: float
    quality_policy: float
    quality_gap: float
    pgr: float | None
    savings: float | None
    #: Comparisons with a router score (the APGR is over these).
    scored: int
    router_apgr: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def router_apgr(items: list[Judged]) -> float | None:
    """APGR over strong-call shares 0..1 (trapezoid over every share k/n), highest score first."""
    scored = sorted((j for j in items if j.score is not None), key=lambda j: -(j.score or 0.0))
    gains = [2 * _Q[j.verdict] - 1 for j in scored]  # +1 strong better, 0 tie, -1 weak better
    total = sum(gains)
    if not scored or total < MIN_NET_STRONG_WINS:
        return None
    running, area = 0.0, 0.0
    for gain in gains[:-1]:
        running += gain
        area += running / total
    return (area + 0.5) / len(gains)


def summarize(items: Iterable[Judged]) -> QualityReport | None:
    """The figures over ``items`` (None when there are none)."""
    items = list(items)
    n = len(items)
    if n == 0:
        return None
    q_strong = sum(_Q[j.verdict] for j in items) / n
    q_weak = 1.0 - q_strong
    q_policy = sum(_Q[j.verdict] if j.served_tier == "strong" else 1 - _Q[j.verdict] for j in items) / n
    gap = q_strong - q_weak
    strong_cost = sum(j.strong_cost_usd for j in items)
    policy_cost = sum(j.strong_cost_usd if j.served_tier == "strong" else j.weak_cost_usd for j in items)
    return QualityReport(
        n=n,
        strong_share=sum(j.served_tier == "strong" for j in items) / n,
        strong_win_rate=sum(j.verdict is Verdict.STRONG for j in items) / n,
        weak_win_rate=sum(j.verdict is Verdict.WEAK for j in items) / n,
        tie_rate=sum(j.verdict is Verdict.TIE for j in items) / n,
        quality_strong=q_strong,
        quality_weak=q_weak,
        quality_policy=q_policy,
        quality_gap=q_strong - q_policy,
        pgr=(q_policy - q_weak) / gap if gap * n >= MIN_NET_STRONG_WINS - 1e-9 else None,
        savings=1 - policy_cost / strong_cost if strong_cost > 0 else None,
        scored=sum(j.score is not None for j in items),
        router_apgr=router_apgr(items),
    )
