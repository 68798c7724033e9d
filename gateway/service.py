"""The gateway core: authenticate, decide, call with resilience, account. No transport here.

``gateway.grpc_server`` and ``gateway.http_app`` are thin adapters over :class:`Gateway`;
both share one instance (one event loop, one set of breakers, clients and metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from gateway.breaker_sync import BreakerSync
from gateway.calibration_online import OnlineCalibration
from gateway.capabilities import narrow
from gateway.config import GatewayConfig
from gateway.cost import cost_usd, estimate_prompt_tokens, estimate_usage
from gateway.cost_target import DollarTargets
from gateway.errors import (
    ConfigError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    StreamInterruptedError,
    UnauthenticatedError,
)
from gateway.learning.feedback import FeedbackReader
from gateway.learning.records import Answered, Rating
from gateway.learning.service import Learning
from gateway.learning.tenants import ANONYMOUS, tenant_id
from gateway.lifecycle import Lifecycle, now
from gateway.metrics import Metrics
from gateway.policy import Policy, parse_spec
from gateway.providers import MalformedAnswerError, ProviderPool
from gateway.resilience import Resilience, StreamHandle
from gateway.routers.llm_judge import LLMRouters
from gateway.scorer_client import ScorerClient
from gateway.scorer_watch import FallbackWatch, routers_in_use, self_check
from gateway.sticky import ConversationTiers
from gateway.streams import Assembler
from gateway.types import (
    Accounting,
    ChatRequest,
    ChatResult,
    Completion,
    Decision,
    StreamDelta,
    StreamEnd,
    ToolCallDelta,
    Usage,
)
from gateway.validation import checked_request

log = logging.getLogger(__name__)

#: How to send the client key, as the missing-key error says it (gRPC metadata and the OpenAI API).
BEARER_HOW = "'Authorization: Bearer <key>'"


@dataclass(frozen=True)
class Runtime:
    """What the gateway reads from the environment, resolved once in ``main()``."""

    redis_url: str | None = None
    client_keys: frozenset[str] = frozenset()
    environ: Mapping[str, str] | None = None


def new_completion_id(prefix: str = "chatcmpl-") -> str:
    """A response id: ``chatcmpl-`` (chat completions) or ``msg_`` (``/v1/messages``) and 24 hex digits."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


@dataclass
class StreamResult:
    """A started stream: routing facts known now, events and final accounting as they come."""

    id: str
    created: int
    decision: Decision
    handle: StreamHandle
    #: The request as validated (what the provider was sent).
    request: ChatRequest
    #: Filled once the stream has ended normally.
    completion: Completion | None = None

    @property
    def accounting(self) -> Accounting:
        return self.handle.accounting


class Gateway:
    """Everything a request needs; create and ``start()`` inside the serving event loop."""

    def __init__(self, config: GatewayConfig, runtime: Runtime) -> None:
        self.config = config
        self.metrics = Metrics()
        self._runtime = runtime
        if not config.auth.disabled and not runtime.client_keys:
            raise ConfigError(
                "auth is enabled but no client API keys are configured "
                f"(set {config.auth.keys_env or 'auth.keys_file'} or auth.disabled: true for local development)"
            )
        self.lifecycle = Lifecycle()
        self.providers = ProviderPool(config.models, runtime.environ, config.limits.max_response_bytes)
        self.resilience = Resilience(config, self.providers, self.metrics, self.lifecycle)
        self.breaker_sync: BreakerSync | None = None
        if runtime.redis_url:
            self.breaker_sync = BreakerSync(self.resilience.breakers, runtime.redis_url, config.breaker)
            self.resilience.on_breaker_change(self.breaker_sync.opened)
        self._scorer: ScorerClient | None = None
        self._policy: Policy | None = None
        registry = self.metrics.registry
        # routing capabilities (each its own module and config section; gateway.policy composes them)
        self.calibration = (
            OnlineCalibration(
                config.calibration,
                config.tiers,
                config.tier_rule(),
                registry,
                runtime.redis_url,
            )
            if config.calibration.online
            else None
        )
        self.dollars = (
            DollarTargets(config.policies, config.tiers, config.models, config.calibration, registry)
            if DollarTargets.wanted(config.policies)
            else None
        )
        self.sticky = (
            ConversationTiers(config.sticky, registry, runtime.redis_url)
            if any(p.sticky for p in config.policies.values())
            else None
        )
        self.llm_routers = (
            LLMRouters(config.llm_routers, config.models, self.providers.__getitem__, self._breaker_open, registry)
            if config.llm_routers
            else None
        )
        self._self_check: asyncio.Task[dict[str, float]] | None = None
        self.learning = Learning.create(
            config,
            self.metrics.registry,
            runtime.environ if runtime.environ is not None else os.environ,
            self._breaker_open,
        )

    def _breaker_open(self, model: str) -> bool:
        return bool(self.resilience.breakers[model].state == "open")

    async def start(self) -> None:
        """Open the scorer channel and start background tasks (inside the event loop that will serve)."""
        self._scorer = ScorerClient(self.config.scorer, self.metrics)
        self._policy = Policy(
            self.config,
            self._scorer,
            FallbackWatch(self.config.scorer, self.metrics),
            calibration=self.calibration,
            sticky=self.sticky,
            llm=self.llm_routers,
            dollars=self.dollars,
        )
        try:
            await self._policy.start()
        except ConfigError:  # a policy's router cannot route these tiers: release what is open, then fail
            await self.close()
            raise
        if self.calibration is not None:
            await self.calibration.start()
        if self.config.scorer.self_check:
            routers = routers_in_use(self.config)
            self._self_check = asyncio.create_task(self_check(self._scorer, routers, self.config.scorer))
        if self.breaker_sync is not None:
            self.breaker_sync.start()
        for note in self.providers.missing_keys():
            log.warning("%s; requests needing it will fall back or fail", note)
        if self.learning is not None:
            await self.learning.start()

    async def close(self) -> None:
        if self._self_check is not None:
            self._self_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._self_check
        if self.learning is not None:
            await self.learning.close(grace_s=min(5.0, self.config.server.drain_s))
        if self._policy is not None:
            await self._policy.close()
        if self.calibration is not None:
            await self.calibration.close()
        if self.sticky is not None:
            await self.sticky.close()
        if self._scorer is not None:
            await self._scorer.close()
        if self.breaker_sync is not None:
            await self.breaker_sync.close()
        await self.providers.aclose()

    # ------------------------------------------------------------------ auth

    def authenticate(self, authorization: str | None, *, how: str = BEARER_HOW) -> str:
        """Check a ``Bearer <key>`` header value against the configured client keys; the tenant id.

        ``how``: the ways the caller's API takes the key, named in the error when there is none.
        """
        if self.config.auth.disabled:
            return ANONYMOUS
        if not authorization:
            raise UnauthenticatedError(f"missing API key: send {how}")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("malformed Authorization header: expected 'Bearer <key>'")
        if not any(hmac.compare_digest(token.encode(), k.encode()) for k in self._runtime.client_keys):
            raise UnauthenticatedError("invalid API key")
        return tenant_id(token)

    # ------------------------------------------------------------------ core

    def _deadline(self, client_timeout_s: float | None) -> float:
        budget = self.config.server.request_timeout_s
        if client_timeout_s is not None:
            budget = min(budget, client_timeout_s)
        return now() + budget

    def routers(self) -> dict[str, bool]:
        """The scorer's routers (name → has a calibration table), for ``/v1/models``."""
        return self._policy.routers() if self._policy is not None else {}

    async def route(self, request: ChatRequest) -> Decision:
        """The decision only; no provider is called. The request's features (tools, response format,
        logprobs, n) narrow the decision's chain as for a completion, so its model is the one that
        would be tried first."""
        request = checked_request(request, self.config)
        return narrow(await self._route(request), request, self.config)

    def count_tokens(self, request: ChatRequest) -> int:
        """The request's input tokens, estimated (``/v1/messages/count_tokens``): checked as a completion
        would be (an unknown model or policy too); nothing is routed and no provider is called."""
        request = checked_request(request, self.config)
        parse_spec(request.model, request.routing, self.config)
        return estimate_prompt_tokens(request)

    async def _route(self, request: ChatRequest) -> Decision:
        assert self._policy is not None, "Gateway.start() was not called"
        decision = await self._policy.decide(request)
        self.metrics.decided(decision)
        if self.config.server.log_prompts:
            log.info("route model=%s prompt=%r", request.model, request.messages[-1].content)
        return decision

    def _account(self, decision: Decision, accounting: Accounting, usage: Usage) -> None:
        served = self.config.models[accounting.served_model]
        strong = self.config.models[self.config.tiers.top.models[0]]
        accounting.cost_usd = cost_usd(served, usage)
        accounting.strong_cost_usd = cost_usd(strong, usage)
        outcome = "degraded" if accounting.degraded else "ok"
        tier = accounting.served_tier_label
        self.metrics.requests.labels(tier, accounting.served_model, outcome).inc()
        self.metrics.cost.labels(accounting.served_model).inc(accounting.cost_usd)
        saved = accounting.strong_cost_usd - accounting.cost_usd
        if saved > 0:
            self.metrics.cost_saved.inc(saved)
        if self.dollars is not None and decision.policy:
            self.dollars.observe(decision.policy, accounting.served_tier_name, usage, accounting.cost_usd)

    def record_failure(self, decision: Decision | None, exc: BaseException) -> None:
        """Count a request that got no answer (metrics only; never logs secrets or prompts)."""
        tier = (decision.tier_name or decision.tier.value) if decision else "none"
        model = decision.model if decision else "none"
        outcome = "rejected" if isinstance(exc, InvalidRequestError | UnauthenticatedError) else "failed"
        self.metrics.requests.labels(tier, model, outcome).inc()

    async def chat(
        self, request: ChatRequest, client_timeout_s: float | None = None, id_prefix: str = "chatcmpl-"
    ) -> ChatResult:
        """Route and serve a whole chat completion."""
        deadline = self._deadline(client_timeout_s)
        decision: Decision | None = None
        try:
            request = checked_request(request, self.config)
            async with self.lifecycle.bound(deadline):
                decision = narrow(await self._route(request), request, self.config)
                completion, accounting = await self.resilience.complete(request, decision, deadline)
        except Exception as exc:
            self.record_failure(decision, exc)
            raise
        self._account(decision, accounting, completion.usage)
        result = ChatResult(new_completion_id(id_prefix), int(time.time()), completion, decision, accounting)
        self._learn(request, result.id, decision, accounting, completion)
        return result

    async def start_stream(
        self, request: ChatRequest, client_timeout_s: float | None = None, id_prefix: str = "chatcmpl-"
    ) -> StreamResult:
        """Route and start a stream; returns once a provider has produced its first event.

        The result's events stay within the same deadline (see :class:`StreamHandle`).
        """
        deadline = self._deadline(client_timeout_s)
        decision: Decision | None = None
        try:
            request = checked_request(request, self.config)
            async with self.lifecycle.bound(deadline):
                decision = narrow(await self._route(request), request, self.config)
                handle = await self.resilience.open_stream(request, decision, deadline)
        except Exception as exc:
            self.record_failure(decision, exc)
            raise
        return StreamResult(new_completion_id(id_prefix), int(time.time()), decision, handle, request)

    async def stream_events(self, result: StreamResult) -> AsyncIterator[StreamDelta | ToolCallDelta]:
        """Text and tool-call deltas of a started stream; fills ``result.completion`` and accounting at the end."""
        request = result.request
        parts = Assembler()
        try:
            async for event in result.handle.events():
                if isinstance(event, StreamEnd):
                    usage = event.usage or estimate_usage(request.messages, parts.text)
                    try:
                        result.completion = parts.completion(event, usage)
                    except MalformedAnswerError as exc:
                        raise StreamInterruptedError(f"{result.accounting.served_model}: {exc}") from exc
                    self._account(result.decision, result.accounting, usage)
                else:
                    parts.add(event)
                    yield event
        except GatewayError as exc:
            self.record_failure(result.decision, exc)
            raise
        finally:
            await result.handle.aclose()
        if result.completion is not None:
            self._learn(request, result.id, result.decision, result.accounting, result.completion)

    # ------------------------------------------------------------------ learning (gateway.learning)

    def _learn(
        self, request: ChatRequest, response_id: str, decision: Decision, accounting: Accounting, done: Completion
    ) -> None:
        """Hand a whole answer to learning (returns at once; shadowing and storing run in the background)."""
        if self.learning is not None:
            self.learning.observe(Answered(request, response_id, decision, accounting, done, time.time()))

    async def feedback(self, tenant: str, read: FeedbackReader) -> tuple[str, Rating]:
        """Record an application's rating of an answer it got (``POST /v1/feedback``, ``SubmitFeedback``);
        ``read`` gives the request's (id, rating) or raises InvalidRequestError."""
        if self.learning is None:
            raise NotFoundError("feedback is not enabled on this gateway (learning.feedback.enabled)")
        return await self.learning.submit_feedback(tenant, read)
