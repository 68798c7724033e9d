"""Shadow comparisons: for a sample of answered requests, ask the other tier's model too.

:meth:`Shadower.admit` decides at once, without I/O, whether an answered request is shadowed:
sampled at ``shadow.sample_rate``, then refused when the store is down, when
``shadow.max_concurrent`` jobs are already in flight (dropped, never queued) or when the job's
pessimistic price would pass the day's budget (:class:`Budget`). :meth:`Shadower.run` then, off
the client's path, calls the first model of the *other* tier (the one that did not serve) whose
breaker is not open, once, with ``shadow.timeout_s``, through its own provider pool (its own
connections: a hanging shadow provider cannot hold the connections client requests need, and
shadow failures never touch the breakers), and has the judge compare the two answers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gateway.config import GatewayConfig, TierName
from gateway.cost import cost_usd, estimate_tokens
from gateway.learning.judge import Judge, Judgement
from gateway.learning.metrics import LearningMetrics
from gateway.learning.records import Verdict
from gateway.providers import ProviderError, ProviderPool
from gateway.types import ChatRequest, Completion, Tier, Usage

log = logging.getLogger(__name__)


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class Budget:
    """The day's learning spend against ``daily_budget_usd``: known spend + in-flight reservations.

    ``known`` is this replica's spend of the day, raised to the store's total whenever the store
    reports one (with Redis that total is every replica's), so replicas share one cap; it can be
    passed by at most the in-flight jobs' underestimates.
    """

    def __init__(self, cap_usd: float, clock: Callable[[], float] = time.time) -> None:
        self.cap = cap_usd
        self._clock = clock
        self.day = utc_day(clock())
        self.known = 0.0
        self.reserved = 0.0

    def _roll(self) -> None:
        day = utc_day(self._clock())
        if day != self.day:
            self.day, self.known = day, 0.0

    def reserve(self, estimate: float) -> bool:
        self._roll()
        if self.known + self.reserved + estimate > self.cap:
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float) -> None:
        """A job that reserved ``estimate`` has spent ``actual``."""
        self._roll()
        self.reserved = max(0.0, self.reserved - estimate)
        self.known += actual

    def observe_total(self, day: str, total: float) -> None:
        """The store's total for ``day`` (all replicas sharing it)."""
        self._roll()
        if day == self.day:
            self.known = max(self.known, total)

    @property
    def spent(self) -> float:
        return self.known


@dataclass(frozen=True)
class ShadowAnswer:
    """What the other tier's model said (``status`` ok, error, timeout or breaker_open)."""

    model: str
    tier: TierName
    status: str
    completion: Completion | None = None
    cost_usd: float = 0.0


class Shadower:
    """Admission (sampling, saturation, budget) and the shadow call itself."""

    def __init__(
        self,
        config: GatewayConfig,
        pool: ProviderPool,
        judge: Judge,
        metrics: LearningMetrics,
        breaker_open: Callable[[str], bool],
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._shadow = config.learning.shadow
        self._pool = pool
        self.judge = judge
        self._metrics = metrics
        self._breaker_open = breaker_open
        self._rng = rng or random.Random()
        self.budget = Budget(self._shadow.daily_budget_usd)
        self.inflight = 0
        metrics.budget_cap.set(self._shadow.daily_budget_usd)

    @staticmethod
    def other_tier(served: Tier) -> TierName:
        return "weak" if served is Tier.STRONG else "strong"

    def estimate_usd(self, request: ChatRequest, served: Completion, served_tier: Tier) -> float:
        """A pessimistic price of one job: the dearest model of the other tier answering as long as the
        served answer did, plus both judge calls answering their ``max_tokens``."""
        usage = served.usage
        if not usage.total_tokens:
            usage = Usage(sum(estimate_tokens(m.content) for m in request.messages), estimate_tokens(served.content))
        models = self._config.tiers[self.other_tier(served_tier)].models
        shadow = max(cost_usd(self._config.models[m], usage) for m in models)
        return shadow + self.judge.estimate_cost_usd(usage.prompt_tokens, 2 * usage.completion_tokens)

    def admit(self, estimate: float, store_usable: bool) -> str:
        """``shadowed`` (a slot and ``estimate`` of budget are now held: call :meth:`done`) or why not."""
        if self._rng.random() >= self._shadow.sample_rate:
            return "not_sampled"
        if not store_usable:
            return "store_down"
        if self.inflight >= self._shadow.max_concurrent:
            return "saturated"
        if not self.budget.reserve(estimate):
            return "over_budget"
        self.inflight += 1
        self._metrics.shadow_inflight.set(self.inflight)
        return "shadowed"

    def done(self, estimate: float, spent: float) -> None:
        """Release a job's slot and settle its budget reservation."""
        self.inflight -= 1
        self._metrics.shadow_inflight.set(self.inflight)
        self.budget.settle(estimate, spent)
        self._metrics.budget_today.set(self.budget.spent)

    async def ask_other(self, request: ChatRequest, served_tier: Tier) -> ShadowAnswer:
        """The other tier's answer (never raises for a provider failure or a hang)."""
        tier = self.other_tier(served_tier)
        chain = self._config.tiers[tier].models
        model = next((m for m in chain if not self._breaker_open(m)), None)
        if model is None:
            self._metrics.shadow_calls.labels(chain[0], "breaker_open").inc()
            return ShadowAnswer(chain[0], tier, "breaker_open")
        status = "ok"
        completion: Completion | None = None
        try:
            async with asyncio.timeout(self._shadow.timeout_s):
                completion = await self._pool[model].complete(replace(request, model=model))
        except TimeoutError:
            status = "timeout"
        except ProviderError as exc:
            status = "error"
            log.debug("shadow call to %s failed: %s", model, exc)
        self._metrics.shadow_calls.labels(model, status).inc()
        if completion is None:
            return ShadowAnswer(model, tier, status)
        usage = completion.usage
        if not usage.total_tokens:
            usage = Usage(
                sum(estimate_tokens(m.content) for m in request.messages), estimate_tokens(completion.content)
            )
        spent = cost_usd(self._config.models[model], usage)
        self._metrics.spend.labels("shadow").inc(spent)
        return ShadowAnswer(model, tier, status, completion, spent)

    async def judge_pair(self, request: ChatRequest, strong: str, weak: str) -> Judgement:
        judgement = await self.judge.compare(request.messages, strong, weak)
        self._metrics.spend.labels("judge").inc(judgement.cost_usd)
        for order in (judgement.strong_first, judgement.weak_first):
            self._metrics.judge_orders.labels(order).inc()
        self._metrics.verdicts.labels(judgement.verdict.value).inc()
        if judgement.verdict is Verdict.INCONSISTENT or (judgement.verdict.is_label and not judgement.consistent):
            self._metrics.inconsistent.inc()
        return judgement
