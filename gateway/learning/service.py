"""Learning from traffic, as the gateway core sees it: ``observe`` an answer, take ``feedback``.

:class:`Learning` lives in the serving process. :meth:`Learning.observe` is called once a client
has its whole answer (a stream: after its last event); it returns at once and never raises: it
decides whether to record and whether to shadow (:class:`~gateway.learning.shadow.Admission`) and
hands a job to the learning worker process (``gateway.learning.worker``), which makes the shadow
call, asks the judge and writes the store. Reports from the worker update the budget and the
metrics here. Feedback (:class:`~gateway.learning.feedback.Feedback`) reads and rates through the
gateway's own store connection. Nothing here can fail, slow down or change a client's request;
every way it can fail on its own is counted (``gateway.learning.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gateway.config import GatewayConfig
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.learning.alarms import LearningAlarms
from gateway.learning.config import describe
from gateway.learning.feedback import Feedback, FeedbackReader, check_response_id, parse_rating
from gateway.learning.guard import GuardedStore
from gateway.learning.metrics import LearningMetrics
from gateway.learning.records import Answered, Rating, Verdict
from gateway.learning.redact import Redactor
from gateway.learning.shadow import Admission, partner_tier
from gateway.learning.store import StoreError, open_store
from gateway.learning.worker import Job, LearningWorker, Report, ShadowDone
from gateway.types import Tier

log = logging.getLogger(__name__)
#: How often the gateway checks that its learning worker is alive.
_WATCH_S = 0.5


@dataclass
class RestartBackoff:
    """When the gateway starts a new learning worker after one died.

    A worker that ran for ``healthy_s`` or longer is replaced at the next check. A worker that died
    sooner, or a start that failed (``Process.start`` raising: EAGAIN, too many open files), doubles
    the wait before the next start, from ``base_s`` up to ``max_s``; so a worker that cannot start, or
    crashes as it starts, is not restarted (and logged) every check, and a later healthy run resets it.
    """

    base_s: float = 1.0
    max_s: float = 60.0
    healthy_s: float = 30.0
    failures: int = 0
    next_at: float = 0.0

    def died(self, ran_s: float, now: float) -> float:
        """A dead worker noticed, after running ``ran_s``; the seconds until its replacement starts."""
        self.failures = 0 if ran_s >= self.healthy_s else self.failures + 1
        return self._schedule(now)

    def start_failed(self, now: float) -> float:
        """A start raised; the seconds until the next try."""
        self.failures += 1
        return self._schedule(now)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def _schedule(self, now: float) -> float:
        wait = 0.0 if self.failures == 0 else min(self.max_s, self.base_s * 2 ** (self.failures - 1))
        self.next_at = now + wait
        return wait


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
        self._breaker_open = breaker_open
        self.metrics = LearningMetrics(registry, lc.metrics_window)
        self.alarms = LearningAlarms(lc.judge.model)
        Redactor(lc.redact, lc.store.max_text_chars)  # a bad redaction hook fails the start, not the worker
        store = open_store(
            lc.store.resolve_url(environ),
            namespace=lc.store.namespace,
            retention_s=lc.store.retention_days * 86_400,
            timeout_s=lc.store.timeout_s,
        )
        self.store = GuardedStore(store, lc.store, lambda op, outcome: self.metrics.store_ops.labels(op, outcome).inc())
        self.feedback = Feedback(self.store, self.metrics, self._written)
        self.admission = Admission(config, rng) if lc.shadow.sample_rate > 0 else None
        if self.admission is not None:
            self.metrics.budget_cap.set(lc.shadow.daily_budget_usd)
        self.worker = LearningWorker(config, environ, self._on_report)
        #: Records handed to the worker and not yet written (feedback for them waits).
        self._pending: dict[str, asyncio.Future[None]] = {}
        #: Shadow jobs handed to the worker: response id -> budget reserved.
        self._shadows: dict[str, float] = {}
        self._watch: asyncio.Task[None] | None = None
        self._closing = False
        #: Answers observed whose sampling and hand-off have not run yet (``observe``: the next loop turn).
        self._deferred = 0

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
        """Start the worker and open the store (a store failure is logged and counted; serving goes on)."""
        log.warning(
            "learning from traffic is ON: prompts and answers of policies %s are stored in a %s store at %s (%s)",
            ", ".join(self._lc.policies),
            self.store.store.kind,
            self.store.store.where,
            json.dumps(describe(self._lc)),
        )
        await self.worker.start()
        with contextlib.suppress(StoreError):
            await self.store.call("open", self.store.store.open)
        self._watch = asyncio.create_task(self._watch_worker())

    async def close(self, grace_s: float = 5.0) -> None:
        """Let the worker finish its jobs for ``grace_s`` (then cancel them), stop it, close the store."""
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.worker.stop(grace_s, self._lc.store.timeout_s)
        self._forget_in_flight("cancelled")
        await self.store.store.close()

    async def _watch_worker(self) -> None:
        backoff = RestartBackoff()
        replacing = False  # a dead worker noticed, no new one started yet
        while True:
            await asyncio.sleep(_WATCH_S)
            if self.worker.alive() or self._closing:
                continue
            now = time.monotonic()
            if not replacing:
                replacing = True
                ran_s = self.worker.ran_s(now)
                wait = backoff.died(ran_s, now)
                shadows, writes = self._forget_in_flight("lost")
                log.error(
                    "the learning worker exited (code %s) after %.1f s; %d shadow jobs and %d record writes lost; "
                    "restarting it in %.1f s",
                    self.worker.exitcode,
                    ran_s,
                    shadows,
                    writes,
                    max(wait, _WATCH_S),
                )
            if not backoff.due(now):
                continue
            try:
                await self.worker.restart()
                replacing = False
            except Exception:  # tried again later: a watch that ended would never restart it
                wait = backoff.start_failed(time.monotonic())
                log.exception("learning: could not start a new learning worker; trying again in %.1f s", wait)

    def _forget_in_flight(self, outcome: str) -> tuple[int, int]:
        """Jobs the worker will never report: free their slots and budget, count them (shadow calls ``outcome``,
        record writes ``dropped``: was not counted at all); (shadow jobs, record writes) forgotten."""
        shadows, writes = len(self._shadows), len(self._pending)
        for estimate in self._shadows.values():
            self.metrics.shadow_calls.labels("", outcome).inc()
            if self.admission is not None:
                self.admission.done(estimate, 0.0)
        self._shadows.clear()
        self.metrics.shadow_inflight.set(0)
        for future in self._pending.values():
            if not future.done():
                future.set_result(None)
        if writes:
            self.metrics.store_ops.labels("put", "dropped").inc(writes)
        self._pending.clear()
        return shadows, writes

    async def quiesce(self, timeout_s: float) -> bool:
        """Wait until the worker has reported every job handed to it (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._shadows or self._pending or self._deferred:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # ------------------------------------------------------------------ the request path

    def observe(self, answered: Answered) -> None:
        """Called once the client has its whole answer, on the serving loop; returns at once and never raises.

        Sampling and the hand-off to the worker run in the loop's next turn, after the caller has sent its
        response (HTTP: written to the client's socket): pickling and writing a sampled job to the worker's
        pipe cost ~0.1-0.15 ms of the serving process (py-spy, docs/lab-log.md 2026-12-05 11:00), which the
        client of a sampled request waited for. Was: before the response was built.
        """
        try:
            asyncio.get_running_loop().call_soon(self._observe_now, answered)
            self._deferred += 1
        except Exception:  # learning must never turn into a client error
            log.exception("learning: observing an answer failed")

    def _observe_now(self, answered: Answered) -> None:
        self._deferred -= 1
        try:
            self._observe(answered)
        except Exception:  # nor into a failure of the loop's callback
            log.exception("learning: observing an answer failed")

    def _observe(self, a: Answered) -> None:
        policy = a.decision.policy
        if policy not in self._policies or self._closing:
            return
        samples = self.metrics.samples
        if a.request.tenant in self._lc.shadow.opt_out_tenants:
            samples.labels(policy, "opted_out").inc()
            return
        # tool-calling turns are not judged: the judge compares text answers (docs/learning.md)
        if a.accounting.served_tier is Tier.PASSTHROUGH or not a.accounting.served_tier_name or a.request.uses_tools:
            samples.labels(policy, "unsuitable").inc()
            return
        usable = self.store.usable()
        record = False
        if self._lc.feedback.enabled:
            if not usable:
                self.metrics.store_ops.labels("put", "skipped_down").inc()
            elif len(self._pending) >= self._lc.store.max_pending_writes:
                self.metrics.store_ops.labels("put", "dropped").inc()
            else:
                record = True
        shadow, estimate = False, 0.0
        if self.admission is not None:
            estimate = self.admission.estimate_usd(a.request, a.completion, a.accounting.served_tier_name)
            outcome = self.admission.admit(estimate, usable)
            samples.labels(policy, outcome).inc()
            shadow = outcome == "shadowed"
            if outcome == "over_budget":
                self.alarms.over_budget(self.admission.budget)
        if not (record or shadow):
            return
        skip: frozenset[str] = frozenset()
        if shadow:
            chain = self._config.tiers[partner_tier(self._config, a.accounting.served_tier_name)[0]].models
            skip = frozenset(m for m in chain if self._breaker_open(m))
        # handed over first: a job that cannot be (pickling failed, or no worker is reading: it died, or is
        # being replaced) holds no slot, budget or pending write
        try:
            handed = self.worker.submit(Job(a, record, shadow, estimate, skip))
        except Exception:
            self._not_handed(shadow, record, estimate)
            raise
        if not handed:
            self._not_handed(shadow, record, estimate)
            return
        if shadow:
            self._shadows[a.response_id] = estimate
            self.metrics.shadow_inflight.set(len(self._shadows))
        if record:
            self._pending[a.response_id] = asyncio.get_running_loop().create_future()

    def _not_handed(self, shadow: bool, record: bool, estimate: float) -> None:
        """A job the worker never got: its slot and budget back, counted lost / dropped."""
        if shadow and self.admission is not None:
            self.admission.done(estimate, 0.0)
            self.metrics.shadow_calls.labels("", "lost").inc()
        if record:
            self.metrics.store_ops.labels("put", "dropped").inc()

    def _lost(self, response_id: str) -> None:
        """A job the worker got but could not read: it will never report it done."""
        estimate = self._shadows.pop(response_id, None)
        future = self._pending.pop(response_id, None)
        if future is not None and not future.done():
            future.set_result(None)
        self.metrics.shadow_inflight.set(len(self._shadows))
        log.error("learning: the worker could not read the job of %s; counted lost", response_id)
        self._not_handed(estimate is not None, future is not None, estimate or 0.0)

    def _on_report(self, report: Report) -> None:
        """Apply a worker report (on the gateway's loop)."""
        m = self.metrics
        for (op, outcome), n in report.ops.items():
            m.store_ops.labels(op, outcome).inc(n)
        if report.down_for_s > 0:
            self.store.adopt_down(report.down_for_s)
        for rid in report.written:
            future = self._pending.pop(rid, None)
            if future is not None and not future.done():
                future.set_result(None)
        for done in report.shadows:
            self._shadow_done(done)
        for rid in report.lost:
            self._lost(rid)
        # after the jobs' own spend: the store's total already holds it (taking the larger of the two)
        if report.spend is not None and self.admission is not None:
            self.admission.budget.observe_total(*report.spend)
        if self.admission is not None:
            m.budget_today.set(self.admission.budget.spent)

    def _shadow_done(self, done: ShadowDone) -> None:
        m = self.metrics
        if self._shadows.pop(done.response_id, None) is None:
            return  # already counted as lost or cancelled
        m.shadow_inflight.set(len(self._shadows))
        judgement = done.judgement
        judge_cost = judgement.cost_usd if judgement is not None else 0.0
        if self.admission is not None:
            self.admission.done(done.estimate, done.shadow_cost_usd + judge_cost)
        m.shadow_calls.labels(done.model, done.status).inc()
        self.alarms.shadow_call(done.model, done.status)
        m.spend.labels("shadow").inc(done.shadow_cost_usd)
        if judgement is not None:
            self.alarms.judged(judgement.verdict)
            m.spend.labels("judge").inc(judge_cost)
            for order in (judgement.strong_first, judgement.weak_first):
                m.judge_orders.labels(order).inc()
            m.verdicts.labels(judgement.verdict.value).inc()
            if judgement.verdict is Verdict.INCONSISTENT or (judgement.verdict.is_label and not judgement.consistent):
                m.inconsistent.inc()
        if done.judged is not None:
            m.add_judged(done.policy, done.judged)

    def _written(self, response_id: str) -> asyncio.Future[None] | None:
        return self._pending.get(response_id)

    # ------------------------------------------------------------------ feedback

    async def submit_feedback(self, tenant: str, read: FeedbackReader) -> tuple[str, Rating]:
        """Read, validate and record a rating; (response id, rating) or a GatewayError for the client.

        Every request refused as malformed, whatever ``read`` or the checks here refuse, counts once as
        ``invalid``.
        """
        if not self._lc.feedback.enabled:
            raise NotFoundError("feedback is not enabled on this gateway (learning.feedback.enabled)")
        try:
            response_id, rating = read()
            rid, value = check_response_id(response_id), parse_rating(rating)
        except InvalidRequestError:
            self.metrics.feedback.labels("invalid").inc()
            raise
        await self.feedback.submit(tenant, rid, value)
        return rid, value
