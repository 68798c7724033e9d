"""Cost policy: which tier a request goes to.

A request's ``model`` is one of
- ``router-<router>-<threshold>`` (RouteLLM's naming, e.g. ``router-mf-0.116``; a threshold means
  something only for the artifact it was calibrated on: docs/gateway.md),
- ``router-<router>-s<share>``: that router at a target strong-call share (``router-mf-s0.30``),
- a named policy from the configuration (e.g. ``ferryman-balanced``: target 30 % strong),
- a configured model name, passed straight through (no routing, no fallback to other models).
Routing options in the request override the router, threshold or strong-call share. A
target share becomes a threshold through the router's calibration table (ListRouters,
fetched at start and refreshed in the background; requests never wait for it). When the
scorer cannot answer in time, the policy's default tier is used and the request is still served;
each such request is logged and counted (``gateway.scorer_watch.FallbackWatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from dataclasses import dataclass

from ferryman.calibration import CalibrationTable
from gateway.config import GatewayConfig, TierName
from gateway.errors import InvalidRequestError, UnknownModelError
from gateway.scorer_client import ScorerClient, ScorerRejectedError, ScorerUnavailableError, last_user_turn
from gateway.scorer_watch import FallbackWatch
from gateway.types import ChatRequest, Decision, DecisionSource, RoutingOverrides, Tier

log = logging.getLogger(__name__)

_ROUTER_MODEL = re.compile(r"^router-([A-Za-z0-9_]+)-(.+)$")


@dataclass(frozen=True)
class RouteSpec:
    """How to route: a router plus a threshold or a target strong-call share."""

    router: str
    threshold: float | None
    strong_share: float | None
    policy: str
    scorer_down_tier: TierName


def _unit(value: float, what: str) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidRequestError(f"{what} must be a number in [0, 1], got {value}", param=what)
    return value


def parse_spec(model: str, overrides: RoutingOverrides, config: GatewayConfig) -> RouteSpec | None:
    """The routing spec for a request, or None for a plain (passthrough) model."""
    routing_options = overrides.router or overrides.threshold is not None or overrides.strong_share is not None
    if overrides.threshold is not None and overrides.strong_share is not None:
        raise InvalidRequestError("set either routing.threshold or routing.strong_share, not both", param="routing")
    spec: RouteSpec
    policy_name = overrides.policy or (model if model in config.policies else "")
    if policy_name:
        policy = config.policies.get(policy_name)
        if policy is None:
            raise UnknownModelError(f"unknown policy {policy_name!r}", param="routing.policy")
        spec = RouteSpec(policy.router, policy.threshold, policy.strong_share, policy.name, policy.scorer_down_tier)
    elif match := _ROUTER_MODEL.match(model):
        value = match.group(2)
        share = value.startswith("s")
        try:
            number = float(value[1:] if share else value)
        except ValueError:
            what = "share" if share else "threshold"
            raise InvalidRequestError(f"model {model!r}: {what} {value!r} is not a number", param="model") from None
        threshold, strong_share = (None, _unit(number, "strong_share")) if share else (_unit(number, "threshold"), None)
        spec = RouteSpec(match.group(1), threshold, strong_share, "", config.routing.scorer_down_tier)
    elif model in config.models:
        if routing_options:
            raise InvalidRequestError(f"routing options need a routed model, not the plain model {model!r}")
        return None
    elif not model and routing_options:
        spec = RouteSpec(config.routing.default_router, None, None, "", config.routing.scorer_down_tier)
    elif not model:
        raise InvalidRequestError("model is required", param="model")
    else:
        raise UnknownModelError(
            f"unknown model {model!r}: use a configured model, a policy, router-<router>-s<share> or "
            "router-<router>-<threshold>",
            param="model",
        )
    # (override values were range-checked by gateway.validation)
    if overrides.threshold is not None:
        spec = RouteSpec(spec.router, overrides.threshold, None, spec.policy, spec.scorer_down_tier)
    elif overrides.strong_share is not None:
        spec = RouteSpec(spec.router, None, overrides.strong_share, spec.policy, spec.scorer_down_tier)
    if overrides.router:
        spec = RouteSpec(overrides.router, spec.threshold, spec.strong_share, spec.policy, spec.scorer_down_tier)
    if spec.threshold is None and spec.strong_share is None:
        raise InvalidRequestError("a routed request needs a threshold or a strong_share", param="routing")
    return spec


class Policy:
    """Turns a request into a :class:`Decision`, asking the scorer when routing."""

    def __init__(self, config: GatewayConfig, scorer: ScorerClient, watch: FallbackWatch) -> None:
        self._config = config
        self._scorer = scorer
        self.watch = watch
        self._calibration: dict[str, CalibrationTable | None] = {}  # None: the router has no table
        self._calibrated = False
        self._refresher: asyncio.Task[None] | None = None
        # The artifact version each table belongs to (RouterInfo.artifact_version): a Score answer
        # from another version (the scorer reloaded a promoted or rolled-back one) refetches the
        # tables at once instead of at the next period, so thresholds follow the new score scale.
        self._table_versions: dict[str, str] = {}
        self._version_refresh: asyncio.Task[bool] | None = None

    def _chain(self, tier: TierName) -> tuple[str, ...]:
        chain = self._config.tiers[tier].models
        if self._config.routing.fallback_to_other_tier:
            other: TierName = "weak" if tier == "strong" else "strong"
            chain = chain + self._config.tiers[other].models
        return chain

    async def start(self) -> None:
        """Fetch the calibration tables once (bounded by ``list_routers_deadline_ms``), then keep them fresh.

        Requests never wait for ``ListRouters``: until a table has been fetched, share-based
        policies use their scorer-down tier, exactly as when the scorer cannot score.
        """
        await self._refresh()
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        for task in (self._refresher, self._version_refresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _refresh(self) -> bool:
        try:
            routers = await self._scorer.list_routers()
        except ScorerUnavailableError:
            return False
        self._calibration = {
            r.name: CalibrationTable((p.strong_share, p.threshold) for p in r.calibration) if r.calibration else None
            for r in routers
        }
        self._table_versions = {r.name: r.artifact_version for r in routers}
        self._calibrated = True
        return True

    def _follow_version(self, router: str, artifact_version: str) -> None:
        """Refetch the tables (once at a time, in the background) when ``router`` now scores with another version."""
        known = self._table_versions.get(router, "")
        if not artifact_version or not known or known == artifact_version:
            return
        if self._version_refresh is None or self._version_refresh.done():
            log.info("router %s now scores with %s (tables are for %s): refreshing", router, artifact_version, known)
            self._version_refresh = asyncio.create_task(self._refresh())

    async def _refresh_forever(self) -> None:
        period = self._config.scorer.calibration_refresh_s
        while True:
            await asyncio.sleep(period if self._calibrated else min(1.0, period))
            ok = await self._refresh()
            if not ok:
                log.warning("scorer ListRouters failed; keeping the previous calibration tables")

    def routers(self) -> dict[str, bool]:
        """The scorer's routers (as last fetched), each with whether it has a calibration table."""
        return {name: table is not None for name, table in sorted(self._calibration.items())}

    def _threshold_for_share(self, router: str, share: float) -> float:
        if not self._calibrated:
            raise ScorerUnavailableError("NO_CALIBRATION")  # no table fetched yet
        if router not in self._calibration:
            raise UnknownModelError(f"unknown router {router!r}", param="model")
        table = self._calibration[router]
        if table is None:
            raise InvalidRequestError(f"router {router!r} has no calibration table; use an explicit threshold")
        return table.threshold_for(share)

    async def decide(self, request: ChatRequest) -> Decision:
        spec = parse_spec(request.model, request.routing, self._config)
        if spec is None:
            return Decision(Tier.PASSTHROUGH, request.model, (request.model,), DecisionSource.PASSTHROUGH)
        if not any(m.role == "user" for m in request.messages):
            raise InvalidRequestError("a routed request needs at least one user message", param="messages")
        threshold = spec.threshold if spec.threshold is not None else math.nan
        started = time.perf_counter()
        try:
            if spec.strong_share is not None:
                threshold = self._threshold_for_share(spec.router, spec.strong_share)
            reply = await self._scorer.score(
                spec.router,
                request.messages,
                self._config.tiers["strong"].router_model,
                self._config.tiers["weak"].router_model,
            )
        except ScorerRejectedError as exc:
            raise InvalidRequestError(f"the scorer rejected the routing request: {exc}", param="model") from exc
        except ScorerUnavailableError as exc:
            waited_ms = (time.perf_counter() - started) * 1000
            self.watch.fallback(spec.router, str(exc), waited_ms, len(last_user_turn(request.messages)))
            tier = spec.scorer_down_tier
            chain = self._chain(tier)
            return Decision(
                Tier(tier),
                chain[0],
                chain,
                DecisionSource.SCORER_UNAVAILABLE,
                router=spec.router,
                threshold=0.0 if math.isnan(threshold) else threshold,
                policy=spec.policy,
            )
        latency_ms = (time.perf_counter() - started) * 1000
        self.watch.scored()
        self._follow_version(spec.router, reply.artifact_version)
        score = reply.strong_win_rate
        tier = "strong" if score >= threshold else "weak"
        chain = self._chain(tier)
        return Decision(
            Tier(tier),
            chain[0],
            chain,
            DecisionSource.SCORED,
            router=spec.router,
            score=score,
            threshold=threshold,
            policy=spec.policy,
            scorer_latency_ms=latency_ms,
            scorer_server_ms=reply.server_ms,
            router_version=reply.artifact_version,
        )
