"""Retries, circuit breakers and fallback around provider calls.

For each model of the decision's chain (the chosen tier's models, then, when configured, the
other tier's): skip it at once if its breaker is open; otherwise call it, retrying provider
faults (429, 5xx, connect errors, provider timeouts, malformed answers) with exponential
backoff and jitter, honouring ``Retry-After``, but never past the request's deadline. A full
local connection pool (``pool_timeout_s``) moves on to the next model at once, blaming no one.
A non-retryable 4xx stops everything (the request is at fault) except 401/403 and a missing
key, which are the operator's problem and move on to the next model. Streams fall back only
until their first event; see :class:`StreamHandle`.

The caller bounds the whole call with :meth:`gateway.lifecycle.Lifecycle.bound` (deadline and
shutdown); here the deadline only decides whether a retry's backoff still fits.

Breaker outcomes (see :mod:`gateway.breakers`): one per request per model, settled once the
request's fate is known — a model that failed the request is blamed (``FAILURE``) when another
model then serves it, and only ``UNATTRIBUTED`` when no model does (a poison request, or a
total outage). When every model of the chain is skipped for an open breaker, the first one is
tried once anyway (a probe, as Envoy's panic threshold does), so breakers alone never turn
every request away. Anything unexpected an adapter raises is logged and handled as a
malformed answer: a provider can never cause a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from gateway.breakers import Breaker, BreakerRegistry, Outcome
from gateway.config import GatewayConfig, RetryConfig
from gateway.errors import ProviderRejectedError, StreamInterruptedError, StreamStalledError, UpstreamUnavailableError
from gateway.lifecycle import Lifecycle, now
from gateway.metrics import BREAKER_STATE_VALUE, Metrics
from gateway.providers import (
    LocalSaturationError,
    MalformedAnswerError,
    MissingKeyError,
    Provider,
    ProviderClientError,
    ProviderPool,
    ProviderTimeoutError,
    StreamEvent,
    TransientProviderError,
)
from gateway.types import Accounting, Attempt, AttemptOutcome, ChatRequest, Completion, Decision, Tier

log = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_delay(retry: int, cfg: RetryConfig, retry_after_s: float | None, rng: random.Random) -> float:
    """Delay before retry number ``retry`` (0-based): exponential with equal jitter, at least Retry-After."""
    cap = min(cfg.max_delay_s, cfg.base_delay_s * (2**retry))
    delay = cap / 2 + rng.uniform(0, cap / 2)
    return max(delay, retry_after_s or 0.0)


def fingerprint(request: ChatRequest) -> str:
    """Identifies a request by what it asks (a client retrying the same request gives the same one)."""
    messages = [(m.role, m.content, m.name) for m in request.messages]
    parts = [request.model, messages, request.temperature, request.top_p, request.max_tokens, list(request.stop)]
    return hashlib.blake2b(json.dumps(parts).encode("utf-8", "replace"), digest_size=12).hexdigest()


def _attempts_text(attempts: list[Attempt]) -> str:
    """The log's account of the models a request gave up: "gpt-4o: transient_error, 2 retries (HTTP 503 ...)"
    each (the errors are those a client may read: sanitised, no prompt)."""

    def one(a: Attempt) -> str:
        retries = f", {a.retries} retr{'y' if a.retries == 1 else 'ies'}" if a.retries else ""
        return f"{a.model}: {a.outcome.value}{retries}" + (f" ({a.error})" if a.error else "")

    return "; ".join(one(a) for a in attempts)


class _GiveUp(Exception):
    """This model is done for this request; try the next one."""

    def __init__(self, attempt: Attempt, provider_fault: bool) -> None:
        self.attempt = attempt
        self.provider_fault = provider_fault


@dataclass
class _Blame:
    """The breakers one request has failed on so far, until its fate says whose fault it was."""

    request: ChatRequest
    record: Callable[[Breaker, Outcome, str], None]
    failed: list[Breaker] = field(default_factory=list)

    @cached_property
    def key(self) -> str:
        return fingerprint(self.request)

    def served(self) -> None:
        """Another model served the request: the earlier failures were the models' own."""
        for breaker in self.failed:
            self.record(breaker, Outcome.FAILURE, self.key_for(breaker, Outcome.FAILURE))
        self.failed.clear()

    def key_for(self, breaker: Breaker, outcome: Outcome) -> str:
        """The request's fingerprint to record with ``outcome`` on ``breaker``: always for a failure; for a
        success only while the breaker keeps failed ones (``Breaker.record``; computing it is not free)."""
        return self.key if outcome is not Outcome.SUCCESS or breaker.remembers_failures() else ""

    def settle(self) -> None:
        """No model served it (or it was cancelled). If a model it failed on serves other requests,
        the request is poison and blames no one; else each model it failed on gets an unattributed failure."""
        if not self.failed:
            return
        if any(breaker.serving() for breaker in self.failed):
            for breaker in self.failed:
                self.record(breaker, Outcome.POISON, "")
        else:
            for breaker in self.failed:
                self.record(breaker, Outcome.UNATTRIBUTED, self.key)
        self.failed.clear()


@dataclass
class StreamHandle:
    """A stream whose first event has arrived; from here on there is no fallback.

    Later events are awaited one at a time inside ``lifecycle.bound(deadline, idle)``: the
    request deadline, the idle timeout between chunks and the shutdown drain end the stream
    with a typed error. A provider fault or a stall now is the model's failure (it had accepted
    the request); the gateway's own deadline, shutdown or a client leaving blames no one.
    """

    model: str
    accounting: Accounting
    first: StreamEvent
    rest: AsyncGenerator[StreamEvent, None]
    breaker: Breaker
    record: Callable[[Breaker, Outcome, str], None]
    lifecycle: Lifecycle
    deadline: float
    idle_s: float
    #: The request's fingerprint to record with an outcome on a breaker (``_Blame.key_for``).
    key_for: Callable[[Breaker, Outcome], str] = lambda breaker, outcome: ""
    _settled: bool = field(default=False, init=False)

    async def events(self) -> AsyncIterator[StreamEvent]:
        outcome: Outcome | None = None
        try:
            yield self.first
            while True:
                async with self.lifecycle.bound(self.deadline, now() + self.idle_s):
                    event = await _next_event(self.rest, self.model)
                if event is None:
                    break
                yield event
            outcome = Outcome.SUCCESS
        except TransientProviderError as exc:
            outcome = Outcome.FAILURE
            raise StreamInterruptedError(f"{self.model}: {exc} after the stream started") from exc
        except StreamStalledError:
            outcome = Outcome.FAILURE
            raise
        finally:
            self._settled = True
            if outcome is None:
                self.breaker.release()
            else:
                self.record(self.breaker, outcome, self.key_for(self.breaker, outcome))

    async def aclose(self) -> None:
        """Close the provider stream (an unread stream blames no one)."""
        if not self._settled:
            self._settled = True
            self.breaker.release()
        await self.rest.aclose()


async def _next_event(stream: AsyncGenerator[StreamEvent, None], model: str) -> StreamEvent | None:
    """The stream's next event (None at its end); an unexpected adapter error is a malformed answer."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None
    except (TransientProviderError, asyncio.CancelledError):
        raise
    except Exception as exc:
        log.exception("provider adapter for %s failed on a stream event", model)
        raise MalformedAnswerError("provider answer could not be processed") from exc


class Resilience:
    """Runs a chat request against a decision's chain with retries, breakers and fallback."""

    def __init__(
        self,
        config: GatewayConfig,
        providers: ProviderPool,
        metrics: Metrics,
        lifecycle: Lifecycle,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._providers = providers
        self._metrics = metrics
        self._lifecycle = lifecycle
        self._rng = rng or random.Random()
        self._listeners: list[Callable[[Breaker, str, str], None]] = []
        self.breakers = BreakerRegistry(config.models, config.breaker, self._on_breaker_state)
        for breaker in self.breakers.breakers:
            self._show_state(breaker, breaker.state)
        self._last_probe_log = 0.0

    def on_breaker_change(self, listener: Callable[[Breaker, str, str], None]) -> None:
        """Call ``listener(breaker, state, origin)`` on every state change (origin: local, remote)."""
        self._listeners.append(listener)

    def _on_breaker_state(self, breaker: Breaker, state: str, origin: str) -> None:
        self._show_state(breaker, state)
        for listener in self._listeners:
            listener(breaker, state, origin)

    def _show_state(self, breaker: Breaker, state: str) -> None:
        for model in breaker.models:
            self._metrics.breaker_state.labels(model).set(BREAKER_STATE_VALUE.get(state, -1.0))

    def _record(self, breaker: Breaker, outcome: Outcome, key: str) -> None:
        self._metrics.breaker_outcomes.labels(breaker.name, outcome.value).inc()
        breaker.record(outcome, key)

    def _tier(self, model: str, decision: Decision) -> Tier:
        if decision.tier is Tier.PASSTHROUGH:
            return Tier.PASSTHROUGH
        tier = self._config.tier_of(model)
        return self._config.tiers.kind(tier) if tier else Tier.PASSTHROUGH

    async def _with_retries(
        self, model: str, tier: Tier, call: Callable[[Provider], Awaitable[T]], deadline: float, probe: bool
    ) -> tuple[T, Attempt]:
        """Call one model until success; raises _GiveUp (next model) or a terminal GatewayError.

        On success the breaker's outcome is the caller's to record; on any other exit this
        releases the model's half-open trial, if this request held it.
        """
        breaker = self.breakers[model]
        started = time.monotonic()
        attempt = Attempt(model, tier, AttemptOutcome.SUCCESS)

        def finish(outcome: AttemptOutcome, error: str = "") -> Attempt:
            attempt.outcome, attempt.error = outcome, error
            attempt.latency_ms = (time.monotonic() - started) * 1000
            return attempt

        if not breaker.allow(probe=probe):
            raise _GiveUp(finish(AttemptOutcome.BREAKER_OPEN, "circuit breaker open"), provider_fault=False)
        if probe:
            self._metrics.breaker_probes.labels(model).inc()
        try:
            while True:
                try:
                    return await _call(call, self._providers[model]), finish(AttemptOutcome.SUCCESS)
                except MissingKeyError as exc:
                    raise _GiveUp(finish(AttemptOutcome.CLIENT_ERROR, str(exc)), provider_fault=False) from exc
                except LocalSaturationError as exc:
                    raise _GiveUp(finish(AttemptOutcome.SATURATED, str(exc)), provider_fault=False) from exc
                except ProviderClientError as exc:
                    finish(AttemptOutcome.CLIENT_ERROR, str(exc))
                    if exc.status in (401, 403):
                        raise _GiveUp(attempt, provider_fault=False) from exc
                    raise ProviderRejectedError(str(exc)) from exc
                except TransientProviderError as exc:
                    await self._before_retry(exc, attempt, finish, deadline, probe)
        except _GiveUp as give_up:
            if not give_up.provider_fault:
                breaker.release()
            raise
        except BaseException:
            breaker.release()
            raise

    async def _before_retry(
        self,
        exc: TransientProviderError,
        attempt: Attempt,
        finish: Callable[[AttemptOutcome, str], Attempt],
        deadline: float,
        probe: bool,
    ) -> None:
        """Back off before the next try of the same model, or give the model up."""
        retry_after = exc.retry_after_s
        cfg = self._config.retry
        too_long = retry_after is not None and retry_after > cfg.max_retry_after_s
        hung = isinstance(exc, ProviderTimeoutError) and not cfg.retry_read_timeouts
        if probe or attempt.retries >= cfg.max_retries or too_long or hung:
            raise _GiveUp(finish(AttemptOutcome.TRANSIENT_ERROR, str(exc)), provider_fault=True) from exc
        delay = backoff_delay(attempt.retries, cfg, retry_after, self._rng)
        if now() + delay >= deadline:
            raise _GiveUp(finish(AttemptOutcome.TRANSIENT_ERROR, f"{exc}; no time left to retry"), provider_fault=True)
        attempt.retries += 1
        self._metrics.retries.labels(attempt.model).inc()
        await asyncio.sleep(delay)

    async def _run_chain(
        self,
        decision: Decision,
        call: Callable[[Provider], Awaitable[T]],
        deadline: float,
        accounting: Accounting,
        blame: _Blame,
    ) -> tuple[str, T]:
        models = [(model, False) for model in decision.chain]
        i = 0
        while i < len(models):
            model, probe = models[i]
            i += 1
            tier = self._tier(model, decision)
            try:
                result, attempt = await self._with_retries(model, tier, call, deadline, probe)
            except _GiveUp as give_up:
                accounting.attempts.append(give_up.attempt)
                if give_up.provider_fault:
                    blame.failed.append(self.breakers[model])
                self._metrics.fallbacks.labels(model, give_up.attempt.outcome.value).inc()
                if i == len(models) and all(a.outcome is AttemptOutcome.BREAKER_OPEN for a in accounting.attempts):
                    models.append((decision.chain[0], True))
                    self._log_probe(decision.chain[0])
                continue
            accounting.attempts.append(attempt)
            accounting.served_model, accounting.served_tier = model, tier
            accounting.served_tier_name = (self._config.tier_of(model) or "") if tier is not Tier.PASSTHROUGH else ""
            accounting.degraded = model != decision.chain[0]
            blame.served()
            if len(accounting.attempts) > 1:
                tier_name = accounting.served_tier_name or tier.value
                log.info("served by %s (tier %s) after %s", model, tier_name, _attempts_text(accounting.attempts[:-1]))
            return model, result
        log.warning("no model could serve a request (%s)", _attempts_text(accounting.attempts))
        summary = "; ".join(f"{a.model}: {a.error}" for a in accounting.attempts)
        raise UpstreamUnavailableError(f"no model could serve the request ({summary})")

    def _log_probe(self, model: str) -> None:
        if time.monotonic() - self._last_probe_log > 10:
            self._last_probe_log = time.monotonic()
            log.warning("every model of a chain has an open breaker; probing %s with the request", model)

    async def complete(
        self, request: ChatRequest, decision: Decision, deadline: float
    ) -> tuple[Completion, Accounting]:
        """The whole answer from the first model of the chain that gives one."""
        accounting = Accounting()
        blame = _Blame(request, self._record)

        async def call(provider: Provider) -> Completion:
            return await provider.complete(request)

        try:
            model, completion = await self._run_chain(decision, call, deadline, accounting, blame)
        finally:
            blame.settle()
        breaker = self.breakers[model]
        self._record(breaker, Outcome.SUCCESS, blame.key_for(breaker, Outcome.SUCCESS))
        return completion, accounting

    async def open_stream(self, request: ChatRequest, decision: Decision, deadline: float) -> StreamHandle:
        """Start a stream, falling back until some model yields its first event."""
        accounting = Accounting()
        blame = _Blame(request, self._record)

        async def call(provider: Provider) -> tuple[StreamEvent, AsyncGenerator[StreamEvent, None]]:
            stream = provider.stream(request)
            try:
                first = await anext(stream)
            except StopAsyncIteration as exc:
                raise MalformedAnswerError("provider stream was empty") from exc
            except BaseException:
                await stream.aclose()
                raise
            return first, stream

        try:
            model, (first, rest) = await self._run_chain(decision, call, deadline, accounting, blame)
        finally:
            blame.settle()
        return StreamHandle(
            model,
            accounting,
            first,
            rest,
            self.breakers[model],
            self._record,
            self._lifecycle,
            deadline,
            self._config.server.stream_idle_timeout_s,
            blame.key_for,
        )


async def _call(call: Callable[[Provider], Awaitable[T]], provider: Provider) -> T:
    """One provider call; anything but a provider error or a cancellation is a malformed answer."""
    try:
        return await call(provider)
    except (TransientProviderError, LocalSaturationError, ProviderClientError, MissingKeyError):
        raise
    except Exception as exc:
        log.exception("provider adapter for %s failed", provider.config.name)
        raise MalformedAnswerError("provider answer could not be processed") from exc
