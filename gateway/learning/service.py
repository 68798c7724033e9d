"""Learning from traffic, as the gateway core sees it: ``observe`` an answer, take ``feedback``.

:class:`Learning` composes the store (behind :class:`~gateway.learning.guard.GuardedStore`), the
:class:`~gateway.learning.shadow.Shadower`, the :class:`~gateway.learning.judge.Judge` and the
:class:`~gateway.learning.feedback.Feedback` endpoint logic. The gateway calls
:meth:`Learning.observe` once a client has its whole answer (a stream: after its last event); it
returns at once, never raises and never awaits: records are built (redacted) and written, and
shadow jobs run, in background tasks. Nothing here can fail, slow down or change a client's
request; every way it can fail on its own is counted (see ``gateway.learning.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gateway.config import GatewayConfig
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.learning.config import describe
from gateway.learning.feedback import Feedback, check_response_id, parse_rating
from gateway.learning.guard import GuardedStore
from gateway.learning.judge import Judge, Judgement
from gateway.learning.metrics import LearningMetrics
from gateway.learning.quality import Judged
from gateway.learning.records import Rating, Record
from gateway.learning.redact import Redactor
from gateway.learning.shadow import ShadowAnswer, Shadower, utc_day
from gateway.learning.store import StoreError, open_store
from gateway.providers import ProviderPool
from gateway.types import Accounting, ChatRequest, Completion, Decision, DecisionSource, Tier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answered:
    """A request the gateway has fully answered, with what learning needs to know about it."""

    request: ChatRequest
    response_id: str
    decision: Decision
    accounting: Accounting
    completion: Completion
    created: float


class Learning:
    """Shadowing, judging, recording and feedback for the configured learning policies."""

    def __init__(
        self,
        config: GatewayConfig,
        registry: CollectorRegistry,
        environ: Mapping[str, str],
        breaker_open: Callable[[str], bool],
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        lc = config.learning
        self._lc = lc
        self._policies = frozenset(lc.policies)
        self.metrics = LearningMetrics(registry, lc.metrics_window)
        self._redact = Redactor(lc.redact, lc.store.max_text_chars)
        url = (environ.get(lc.store.url_env, "").strip() if lc.store.url_env else "") or lc.store.url
        store = open_store(
            url,
            namespace=lc.store.namespace,
            retention_s=lc.store.retention_days * 86_400,
            timeout_s=lc.store.timeout_s,
        )
        self.store = GuardedStore(store, lc.store, self.metrics)
        self.feedback = Feedback(self.store, self.metrics)
        # shadow and judge calls use connections of their own (see gateway.learning.shadow)
        self._pool = ProviderPool(config.models, environ, config.limits.max_response_bytes)
        self.shadower: Shadower | None = None
        if lc.shadow.sample_rate > 0:
            judge_model = config.models[lc.judge.model]
            judge = Judge(self._pool[judge_model.name], judge_model, lc.judge, lc.shadow.timeout_s)
            self.shadower = Shadower(config, self._pool, judge, self.metrics, breaker_open, rng)
        self._jobs: set[asyncio.Task[None]] = set()
        self._maintenance: asyncio.Task[None] | None = None

    @classmethod
    def create(
        cls,
        config: GatewayConfig,
        registry: CollectorRegistry,
        environ: Mapping[str, str],
        breaker_open: Callable[[str], bool],
    ) -> Learning | None:
        """A :class:`Learning`, or None when the configuration leaves learning off."""
        return cls(config, registry, environ, breaker_open) if config.learning.enabled else None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store (a failure is logged and counted; the gateway serves regardless)."""
        log.warning(
            "learning from traffic is ON: prompts and answers of policies %s are stored in a %s store (%s)",
            ", ".join(self._lc.policies),
            self.store.store.kind,
            json.dumps(describe(self._lc)),
        )
        with contextlib.suppress(StoreError):
            await self.store.call("open", self.store.store.open)
            await self._sync_spend()
        self._maintenance = asyncio.create_task(self._maintain())

    async def close(self, grace_s: float = 5.0) -> None:
        """Let shadow jobs finish for ``grace_s`` (then cancel them), flush writes, close the store."""
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        if self._jobs:
            _, late = await asyncio.wait(set(self._jobs), timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.store.flush(self._lc.store.timeout_s)
        await self.store.store.close()
        await self._pool.aclose()

    async def quiesce(self, timeout_s: float) -> bool:
        """Wait until no shadow job runs and no write is pending (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._jobs or self.store.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.wait({*self._jobs, *self.store.pending.values()}, timeout=remaining)
        return True

    async def _sync_spend(self) -> None:
        if self.shadower is None:
            return
        day = utc_day(time.time())
        total = await self.store.call("spend", lambda: self.store.store.spend(day))
        self.shadower.budget.observe_total(day, total)
        self.metrics.budget_today.set(self.shadower.budget.spent)

    async def _maintain(self) -> None:
        """Retention and size cap, and the day's spend of every replica, every ``prune_interval_s``."""
        cfg = self._lc.store
        while True:
            await asyncio.sleep(cfg.prune_interval_s)
            if not self.store.usable():
                continue
            with contextlib.suppress(StoreError):
                deleted = await self.store.call("prune", self._prune)
                if deleted:
                    log.info("learning store: %d records past retention or the size cap deleted", deleted)
                await self._sync_spend()

    def _prune(self) -> Awaitable[int]:
        cfg = self._lc.store
        return self.store.store.prune(time.time() - cfg.retention_days * 86_400, cfg.max_records)

    # ------------------------------------------------------------------ the request path

    def observe(self, answered: Answered) -> None:
        """Called once the client has its whole answer; returns at once and never raises."""
        try:
            self._observe(answered)
        except Exception:  # learning must never turn into a client error
            log.exception("learning: observing an answer failed")

    def _observe(self, a: Answered) -> None:
        policy = a.decision.policy
        if policy not in self._policies:
            return
        samples = self.metrics.samples
        if a.request.tenant in self._lc.shadow.opt_out_tenants:
            samples.labels(policy, "opted_out").inc()
            return
        if a.accounting.served_tier not in (Tier.STRONG, Tier.WEAK):
            samples.labels(policy, "unsuitable").inc()
            return
        usable = self.store.usable()
        if self._lc.feedback.enabled:
            if usable:
                self.store.write(a.response_id, lambda: self._record(a))
            else:
                self.metrics.store_ops.labels("put", "skipped_down").inc()
        if self.shadower is None:
            return
        estimate = self.shadower.estimate_usd(a.request, a.completion, a.accounting.served_tier)
        outcome = self.shadower.admit(estimate, usable)
        samples.labels(policy, outcome).inc()
        if outcome == "shadowed":
            job = asyncio.create_task(self._shadow(a, estimate))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _shadow(self, a: Answered, estimate: float) -> None:
        assert self.shadower is not None
        spent = 0.0
        answer: ShadowAnswer | None = None
        try:
            answer = await self.shadower.ask_other(a.request, a.accounting.served_tier)
            spent = answer.cost_usd
            judgement: Judgement | None = None
            if answer.completion is not None:
                strong, weak = (
                    (a.completion.content, answer.completion.content)
                    if answer.tier == "weak"
                    else (answer.completion.content, a.completion.content)
                )
                judgement = await self.shadower.judge_pair(a.request, strong, weak)
                spent += judgement.cost_usd
            if answer.completion is not None or self._lc.feedback.enabled:
                shadow = answer
                self.store.write(a.response_id, lambda: self._record(a, shadow, judgement))
            if judgement is not None and judgement.verdict.is_label:
                strong_cost, weak_cost = (
                    (a.accounting.cost_usd, answer.cost_usd)
                    if answer.tier == "weak"
                    else (answer.cost_usd, a.accounting.cost_usd)
                )
                judged = Judged(
                    judgement.verdict, a.accounting.served_tier.value, _score(a.decision), strong_cost, weak_cost
                )
                self.metrics.add_judged(a.decision.policy, judged)
        except asyncio.CancelledError:
            model = answer.model if answer is not None else "none"
            self.metrics.shadow_calls.labels(model, "cancelled").inc()
            raise
        except Exception:
            log.exception("learning: a shadow job failed")
        finally:
            self.shadower.done(estimate, spent)
            if spent > 0:
                day = utc_day(time.time())
                with contextlib.suppress(StoreError):
                    total = await self.store.call("spend", lambda: self.store.store.add_spend(day, spent))
                    self.shadower.budget.observe_total(day, total)

    def _record(self, a: Answered, shadow: ShadowAnswer | None = None, judgement: Judgement | None = None) -> Record:
        """The record of an answer (redacted here, in a background task, never on the request path)."""
        red = self._redact
        tiers = self._config.tiers
        served_tier = a.accounting.served_tier.value
        messages = [{"role": m.role, "content": red(m.content)} for m in a.request.messages]
        record = Record(
            id=a.response_id,
            created_at=a.created,
            tenant=a.request.tenant,
            policy=a.decision.policy,
            messages_json=json.dumps(messages, ensure_ascii=False),
            router=a.decision.router,
            router_version=a.decision.router_version,
            score=_score(a.decision),
            threshold=a.decision.threshold,
            decision_source=a.decision.source.value,
            routed_tier=a.decision.tier.value,
            served_model=a.accounting.served_model,
            served_tier=served_tier,
            served_router_model=tiers[served_tier].router_model,  # type: ignore[index]
            served_answer=red(a.completion.content),
            served_cost_usd=a.accounting.cost_usd,
        )
        # the other tier's model: the one asked, or (not shadowed) the one that would have been
        other = Shadower.other_tier(a.accounting.served_tier)
        record.shadow_model = shadow.model if shadow is not None else tiers[other].models[0]
        record.shadow_tier = other
        record.shadow_router_model = tiers[other].router_model
        if shadow is not None:
            record.shadow_status = shadow.status
            record.shadow_cost_usd = shadow.cost_usd
            if shadow.completion is not None:
                record.shadow_answer = red(shadow.completion.content)
        if judgement is not None and self.shadower is not None:
            record.judge_model = self.shadower.judge.model
            record.judge_strong_first = judgement.strong_first
            record.judge_weak_first = judgement.weak_first
            record.verdict = judgement.verdict.value
            record.judge_cost_usd = judgement.cost_usd
        return record

    # ------------------------------------------------------------------ feedback

    async def submit_feedback(self, tenant: str, response_id: object, rating: object) -> tuple[str, Rating]:
        """Validate and record a rating; (response id, rating) or a GatewayError for the client."""
        if not self._lc.feedback.enabled:
            raise NotFoundError("feedback is not enabled on this gateway (learning.feedback.enabled)")
        try:
            rid, value = check_response_id(response_id), parse_rating(rating)
        except InvalidRequestError:
            self.metrics.feedback.labels("invalid").inc()
            raise
        await self.feedback.submit(tenant, rid, value)
        return rid, value


def _score(decision: Decision) -> float | None:
    return decision.score if decision.source is DecisionSource.SCORED else None
