"""Retries, circuit breakers and fallback around provider calls.

For each model of the decision's chain (the chosen tier's models, then, when configured,
the other tier's): skip it at once if its breaker is open; otherwise call it, retrying
transient errors (429, 5xx, connect errors, timeouts, malformed answers) with
exponential backoff and jitter, honouring ``Retry-After``, but never past the request's
overall deadline. A non-retryable 4xx stops everything (the request is at fault) except
401/403 and a missing key, which are the operator's problem and move on to the next
model. Streams fall back only until their first event; see :class:`StreamHandle`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.breakers import Breaker, BreakerRegistry
from gateway.config import GatewayConfig, RetryConfig
from gateway.errors import (
    DeadlineExceededError,
    ProviderRejectedError,
    StreamInterruptedError,
    UpstreamUnavailableError,
)
from gateway.metrics import BREAKER_STATE_VALUE, Metrics
from gateway.providers import (
    MissingKeyError,
    Provider,
    ProviderClientError,
    ProviderPool,
    StreamEvent,
    TransientProviderError,
)
from gateway.types import Accounting, Attempt, AttemptOutcome, ChatRequest, Completion, Decision, Tier

T = TypeVar("T")


def backoff_delay(retry: int, cfg: RetryConfig, retry_after_s: float | None, rng: random.Random) -> float:
    """Delay before retry number ``retry`` (0-based): exponential with equal jitter, at least Retry-After."""
    cap = min(cfg.max_delay_s, cfg.base_delay_s * (2**retry))
    delay = cap / 2 + rng.uniform(0, cap / 2)
    return max(delay, retry_after_s or 0.0)


class _GiveUp(Exception):
    """This model is done for this request; try the next one."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt


@dataclass
class StreamHandle:
    """A stream whose first event has arrived; from here on there is no fallback."""

    model: str
    accounting: Accounting
    first: StreamEvent
    rest: AsyncGenerator[StreamEvent, None]
    breaker: Breaker

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Every event; a provider failure now ends the stream with StreamInterruptedError."""
        try:
            yield self.first
            async for event in self.rest:
                yield event
        except TransientProviderError as exc:
            self.breaker.failure()
            raise StreamInterruptedError(f"{self.model}: {exc} after the stream started") from exc
        self.breaker.success()

    async def aclose(self) -> None:
        await self.rest.aclose()


class Resilience:
    """Runs a chat request against a decision's chain with retries, breakers and fallback."""

    def __init__(
        self,
        config: GatewayConfig,
        providers: ProviderPool,
        metrics: Metrics,
        redis_url: str | None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._providers = providers
        self._metrics = metrics
        self._rng = rng or random.Random()
        self.breakers = BreakerRegistry(list(config.models), config.breaker, redis_url, self._on_breaker_state)

    def _on_breaker_state(self, model: str, state: str) -> None:
        self._metrics.breaker_state.labels(model).set(BREAKER_STATE_VALUE.get(state, -1.0))

    def _tier(self, model: str, decision: Decision) -> Tier:
        if decision.tier is Tier.PASSTHROUGH:
            return Tier.PASSTHROUGH
        tier = self._config.tier_of(model)
        return Tier(tier) if tier else Tier.PASSTHROUGH

    async def _with_retries(
        self, model: str, tier: Tier, call: Callable[[Provider], Awaitable[T]], deadline: float
    ) -> tuple[T, Attempt]:
        """Call one model until success; raises _GiveUp (next model) or a terminal GatewayError."""
        breaker = self.breakers[model]
        provider = self._providers[model]
        started = time.monotonic()
        attempt = Attempt(model, tier, AttemptOutcome.SUCCESS)

        def finish(outcome: AttemptOutcome, error: str = "") -> Attempt:
            attempt.outcome, attempt.error = outcome, error
            attempt.latency_ms = (time.monotonic() - started) * 1000
            return attempt

        while True:
            if not breaker.allow():
                raise _GiveUp(finish(AttemptOutcome.BREAKER_OPEN, "circuit breaker open"))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError("request deadline passed before a provider answered")
            try:
                async with asyncio.timeout(remaining):
                    result = await call(provider)
            except TimeoutError as exc:
                raise DeadlineExceededError("request deadline passed before a provider answered") from exc
            except MissingKeyError as exc:
                raise _GiveUp(finish(AttemptOutcome.CLIENT_ERROR, str(exc))) from exc
            except ProviderClientError as exc:
                finish(AttemptOutcome.CLIENT_ERROR, str(exc))
                if exc.status in (401, 403):
                    raise _GiveUp(attempt) from exc
                raise ProviderRejectedError(str(exc)) from exc
            except TransientProviderError as exc:
                breaker.failure()
                retry_after = exc.retry_after_s
                if attempt.retries >= self._config.retry.max_retries or (
                    retry_after is not None and retry_after > self._config.retry.max_retry_after_s
                ):
                    raise _GiveUp(finish(AttemptOutcome.TRANSIENT_ERROR, str(exc))) from exc
                delay = backoff_delay(attempt.retries, self._config.retry, retry_after, self._rng)
                if time.monotonic() + delay >= deadline:
                    raise _GiveUp(finish(AttemptOutcome.TRANSIENT_ERROR, f"{exc}; no time left to retry")) from exc
                attempt.retries += 1
                self._metrics.retries.labels(model).inc()
                await asyncio.sleep(delay)
            else:
                return result, finish(AttemptOutcome.SUCCESS)

    async def _run_chain(
        self, decision: Decision, call: Callable[[Provider], Awaitable[T]], deadline: float, accounting: Accounting
    ) -> tuple[str, T]:
        for model in decision.chain:
            tier = self._tier(model, decision)
            try:
                result, attempt = await self._with_retries(model, tier, call, deadline)
            except _GiveUp as give_up:
                accounting.attempts.append(give_up.attempt)
                reason = give_up.attempt.outcome.value
                self._metrics.fallbacks.labels(model, reason).inc()
                continue
            accounting.attempts.append(attempt)
            accounting.served_model, accounting.served_tier = model, tier
            accounting.degraded = model != decision.chain[0]
            return model, result
        summary = "; ".join(f"{a.model}: {a.error}" for a in accounting.attempts)
        raise UpstreamUnavailableError(f"no model could serve the request ({summary})")

    async def complete(
        self, request: ChatRequest, decision: Decision, deadline: float
    ) -> tuple[Completion, Accounting]:
        """The whole answer from the first model of the chain that gives one."""
        accounting = Accounting()

        async def call(provider: Provider) -> Completion:
            return await provider.complete(request)

        model, completion = await self._run_chain(decision, call, deadline, accounting)
        self.breakers[model].success()
        return completion, accounting

    async def open_stream(self, request: ChatRequest, decision: Decision, deadline: float) -> StreamHandle:
        """Start a stream, falling back until some model yields its first event."""
        accounting = Accounting()

        async def call(provider: Provider) -> tuple[StreamEvent, AsyncGenerator[StreamEvent, None]]:
            stream = provider.stream(request)
            try:
                first = await anext(stream)
            except StopAsyncIteration as exc:
                raise TransientProviderError("provider stream was empty") from exc
            except BaseException:
                await stream.aclose()
                raise
            return first, stream

        model, (first, rest) = await self._run_chain(decision, call, deadline, accounting)
        return StreamHandle(model, accounting, first, rest, self.breakers[model])

    def close(self) -> None:
        self.breakers.close()
