"""The learning loop's degradations that the operator must act on, said once in the log.

Shadowing and judging never touch a client's request, so when they stop producing labels nothing
else tells the operator: the counters (``gateway.learning.metrics``) say how many, and these
WARNING lines say that it started, why, and what to check. Each condition is logged when it starts
and once when it clears, never per request:

- the **judge** gave no usable verdict (``invalid``: no single ``[[A]]``/``[[B]]``/``[[C]]``, e.g.
  a model that does not follow the judge prompt; ``error``: its calls fail or time out)
  :data:`IN_A_ROW` comparisons in a row: every comparison is paid for and none is labelled;
- **shadow calls** to a model failed or timed out :data:`IN_A_ROW` times in a row: no comparison
  with it is made (a model whose breaker is open is skipped, and its breaker already logs);
- the **daily budget** refused a sample: no more shadowing until 00:00 UTC (once per UTC day).

The store being down is logged by :class:`gateway.learning.guard.GuardedStore`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.learning.records import Verdict
from gateway.learning.shadow import Budget

log = logging.getLogger(__name__)

#: Consecutive failures of one kind before the alarm is logged: one bad answer of a real judge or
#: provider is noise (counted, not logged); this many in a row is a judge or a model that does not work.
IN_A_ROW = 5

_WHY = {
    Verdict.INVALID: "its answers did not hold exactly one verdict ([[A]], [[B]] or [[C]]): is "
    "learning.judge.model a model that follows the judge prompt?",
    Verdict.ERROR: "its calls failed or timed out",
}


@dataclass
class _Streak:
    """Consecutive failures of one thing, and whether its alarm has been logged."""

    failures: int = 0
    raised: bool = False

    def failed(self) -> bool:
        """One more failure; True when this one raises the alarm."""
        self.failures += 1
        if self.raised or self.failures < IN_A_ROW:
            return False
        self.raised = True
        return True

    def worked(self) -> int:
        """A success; the failures before it when it clears a raised alarm, else 0."""
        cleared = self.failures if self.raised else 0
        self.failures, self.raised = 0, False
        return cleared


class LearningAlarms:
    """Watches what the learning worker reports and admission refuses; logs each condition above once."""

    def __init__(self, judge_model: str) -> None:
        self._judge_model = judge_model
        self._judge = _Streak()
        self._shadow: dict[str, _Streak] = {}
        self._budget_day = ""

    def shadow_call(self, model: str, status: str) -> None:
        """A shadow call's outcome: ok, error, timeout or breaker_open (not the shadow's fault: ignored)."""
        if status == "breaker_open":
            return
        streak = self._shadow.setdefault(model, _Streak())
        if status == "ok":
            if failures := streak.worked():
                log.warning("learning: shadow calls to %s answer again (after %d failures)", model, failures)
        elif streak.failed():
            log.warning(
                "learning: shadow calls to %s failed %d times in a row (last: %s): no comparisons with it until it "
                "answers; clients are not affected (ferryman_learning_shadow_calls_total)",
                model,
                streak.failures,
                status,
            )

    def judged(self, verdict: Verdict) -> None:
        """A comparison's combined verdict."""
        if verdict not in _WHY:
            if failures := self._judge.worked():
                log.warning(
                    "learning: the judge %s gives verdicts again (after %d comparisons without)",
                    self._judge_model,
                    failures,
                )
        elif self._judge.failed():
            log.warning(
                "learning: the judge %s gave no usable verdict for %d comparisons in a row (last: %s; %s); they "
                "are paid for and stored without a label (`ferryman learn judge` judges them again)",
                self._judge_model,
                self._judge.failures,
                verdict.value,
                _WHY[verdict],
            )

    def over_budget(self, budget: Budget) -> None:
        """Admission refused a sample for the budget (logged once per UTC day)."""
        if budget.day == self._budget_day:
            return
        self._budget_day = budget.day
        log.warning(
            "learning: the daily shadow budget is used up ($%.4f spent and $%.4f reserved by jobs in flight, of "
            "learning.shadow.daily_budget_usd $%g): no more shadow comparisons until 00:00 UTC",
            budget.spent,
            budget.reserved,
            budget.cap,
        )
