"""Shadow comparisons: for a sample of answered requests, ask the other tier's model too.

In the gateway, :class:`Admission` decides at once, without I/O, whether an answered request is
shadowed: sampled at ``shadow.sample_rate``, then refused when the store is down, when
``shadow.max_concurrent`` + ``shadow.max_queued`` jobs are already admitted and not done (dropped,
counted ``saturated``) or when the job's pessimistic price would pass the day's budget
(:class:`Budget`, which holds the reservations of waiting jobs too). The learning worker process
(``gateway.learning.worker``) runs ``max_concurrent`` of them at once; the others wait there, in
admission order. :class:`ShadowRunner` then calls the first model of the *partner*
tier (with two tiers the one that did not serve; with more, :func:`partner_tier`) whose breaker was
not open, once, with ``shadow.timeout_s``, through
the worker's own provider pool (its own connections, in its own process: a hanging shadow
provider cannot hold the connections client requests need, and shadow failures never touch the
breakers), and has the judge compare the two answers.
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
from gateway.cost import cost_usd, usage_or_estimate
from gateway.learning.judge import JUDGE_TEMPLATE_TOKENS, Judge, Judgement
from gateway.providers import ProviderError, ProviderPool
from gateway.types import ChatRequest, Completion, Usage

log = logging.getLogger(__name__)


def partner_tier(config: GatewayConfig, served_tier: TierName) -> tuple[TierName, bool]:
    """(the tier a shadow asks, whether it is the more capable of the two).

    With two tiers: the other one. With more: the top tier when a cheaper tier served (the
    question every routing decision asks: would the top tier have done better?), the tier just
    below the top when the top served (the closest call): ``gateway.tiers.Tiers.partner``. The more
    capable tier's answer is the comparison's "strong" side.
    """
    tier, served_is_stronger = config.tiers.partner(served_tier)
    return tier, not served_is_stronger


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
        #: Jobs holding a reservation (reserved, not yet settled).
        self.holders = 0

    def _roll(self) -> None:
        day = utc_day(self._clock())
        if day != self.day:
            self.day, self.known = day, 0.0

    def reserve(self, estimate: float) -> bool:
        self._roll()
        if self.known + self.reserved + estimate > self.cap:
            return False
        self.reserved += estimate
        self.holders += 1
        return True

    def settle(self, estimate: float, actual: float) -> None:
        """A job that reserved ``estimate`` has spent ``actual``."""
        self._roll()
        self.holders = max(0, self.holders - 1)
        # with no job holding one, nothing is reserved (not the rounding left by adding and subtracting floats)
        self.reserved = max(0.0, self.reserved - estimate) if self.holders else 0.0
        self.known += actual

    def observe_total(self, day: str, total: float) -> None:
        """The store's total for ``day`` (all replicas sharing it)."""
        self._roll()
        if day == self.day:
            self.known = max(self.known, total)

    @property
    def spent(self) -> float:
        return self.known


class Admission:
    """Which answered requests are shadowed: sampling, the store's state, free slots, the budget.

    ``inflight`` counts the jobs admitted and not reported done by the worker: running, waiting in the
    worker for one of the ``max_concurrent`` running to end, or on their way to it (the pipe); at most
    ``shadow.max_admitted``, so their memory and budget reservations are bounded, whatever the worker's pace.
    """

    def __init__(self, config: GatewayConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._shadow = config.learning.shadow
        self._judge = config.models[config.learning.judge.model]
        self._judge_max_tokens = config.learning.judge.max_tokens
        self._rng = rng or random.Random()
        self.budget = Budget(self._shadow.daily_budget_usd)

    @property
    def inflight(self) -> int:
        """Jobs admitted and not done: each holds one budget reservation from :meth:`admit` to :meth:`done`."""
        return self.budget.holders

    def estimate_usd(self, request: ChatRequest, served: Completion, served_tier: TierName) -> float:
        """A pessimistic price of one job: the dearest model of the partner tier answering as long as the
        served answer did, plus both judge calls answering their ``max_tokens``."""
        usage = usage_or_estimate(request.messages, served)
        models = self._config.tiers[partner_tier(self._config, served_tier)[0]].models
        shadow = max(cost_usd(self._config.models[m], usage) for m in models)
        judge_prompt = JUDGE_TEMPLATE_TOKENS + usage.prompt_tokens + 2 * usage.completion_tokens
        return shadow + 2 * cost_usd(self._judge, Usage(judge_prompt, self._judge_max_tokens))

    def admit(self, estimate: float, store_usable: bool) -> str:
        """``shadowed`` (a slot and ``estimate`` of budget are now held: call :meth:`done`) or why not."""
        if self._rng.random() >= self._shadow.sample_rate:
            return "not_sampled"
        if not store_usable:
            return "store_down"
        if self.inflight >= self._shadow.max_admitted:
            return "saturated"
        if not self.budget.reserve(estimate):
            return "over_budget"
        return "shadowed"

    def done(self, estimate: float, spent: float) -> None:
        """Release a job's slot: settle its budget reservation."""
        self.budget.settle(estimate, spent)


@dataclass(frozen=True)
class ShadowAnswer:
    """What the partner tier's model said (``status`` ok, error, timeout or breaker_open)."""

    model: str
    tier: TierName
    status: str
    completion: Completion | None = None
    cost_usd: float = 0.0
    #: The partner tier is the more capable of the two (its answer is the comparison's "strong" side).
    stronger: bool = True


class ShadowRunner:
    """The shadow call and the judge (in the learning worker)."""

    def __init__(self, config: GatewayConfig, pool: ProviderPool, judge: Judge) -> None:
        self._config = config
        self._timeout_s = config.learning.shadow.timeout_s
        self._pool = pool
        self.judge = judge

    async def ask_other(self, request: ChatRequest, served_tier: TierName, skip: frozenset[str]) -> ShadowAnswer:
        """The partner tier's answer from its first model not in ``skip`` (open breakers); never raises
        for a provider failure or a hang."""
        tier, stronger = partner_tier(self._config, served_tier)
        chain = self._config.tiers[tier].models
        model = next((m for m in chain if m not in skip), None)
        if model is None:
            return ShadowAnswer(chain[0], tier, "breaker_open", stronger=stronger)
        status = "ok"
        completion: Completion | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                completion = await self._pool[model].complete(replace(request, model=model))
        except TimeoutError:
            status = "timeout"
        except ProviderError as exc:
            status = "error"
            log.debug("shadow call to %s failed: %s", model, exc)
        if completion is None:
            return ShadowAnswer(model, tier, status, stronger=stronger)
        spent = cost_usd(self._config.models[model], usage_or_estimate(request.messages, completion))
        return ShadowAnswer(model, tier, status, completion, spent, stronger)

    async def judge_pair(self, request: ChatRequest, strong: str, weak: str) -> Judgement:
        return await self.judge.compare(request.messages, strong, weak)
