"""Cost policy: which tier a request goes to, and why.

A request's ``model`` is one of
- ``router-<router>-<threshold>`` (RouteLLM's naming, e.g. ``router-mf-0.116``; a threshold means
  something only for the artifact it was calibrated on: docs/gateway.md),
- ``router-<router>-s<share>``: that router at a target top-tier share (``router-mf-s0.30``),
- a named policy from the configuration (e.g. ``ferryman-balanced``: target 30 % top-tier calls),
- a configured model name, passed straight through (no routing, no fallback to other models).
Routing options in the request override the router, threshold or strong-call share.

Routing (``gateway.tiers``): the router gives, for every tier below the top one, the probability
that the top tier's model beats it (one ``Score`` with two tiers, one ``BatchScore`` with more);
the request goes to the cheapest tier whose score is below its threshold, else to the top tier.
Thresholds come from the request or policy (``fixed``; a policy's ``operating_points``: one of
the two calibrated points around its ``cost_share``, drawn at random per request), from the router's calibration table
(``artifact``: ListRouters, fetched at start and refreshed in the background; requests never
wait for it) or from live traffic (``online``: ``gateway.calibration_online``). The router may
be one of the scorer's or a causal-LLM router (``gateway.routers.llm_judge``), which falls back
to a scorer router. ``sticky`` policies keep a conversation's later turns on its tier
(``gateway.sticky``). When no score can be had in time, the policy's scorer-down tier is used and
the request is still served; each such request is logged and counted (``gateway.scorer_watch``).
Every decision carries its provenance: the tier's name, each score and threshold, their source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import NamedTuple

from ferryman.calibration import CalibrationTable
from ferryman.scorer.v1 import scorer_pb2
from gateway.calibration_online import OnlineCalibration, Target
from gateway.config import GatewayConfig
from gateway.cost_target import DollarTargets
from gateway.errors import ConfigError, InvalidRequestError, UnknownModelError
from gateway.routers.llm_judge import LLMRouter, LLMRouters, win_rates
from gateway.scorer_client import ScorerClient, ScorerRejectedError, ScorerUnavailableError, last_user_turn
from gateway.scorer_watch import FallbackWatch, VersionWatch, routers_in_use, where_named
from gateway.sticky import ConversationTiers, conversation_key, is_follow_up
from gateway.tiers import OperatingPoint, mix
from gateway.types import ChatRequest, Decision, DecisionSource, LLMRating, RoutingOverrides, Tier, TierScore

log = logging.getLogger(__name__)

# A router's name may hold hyphens (`ferryman train mf --arena ... --out routers/mf-arena`): the value is the
# shortest tail that reads as a number (1e-3 and -0.1 are one each); a value that is no number is reported as such.
_ROUTER_MODEL = re.compile(r"^router-([A-Za-z0-9_.-]+?)-(s?[-+]?[0-9.][0-9.eE+-]*)$")
_ROUTER_MODEL_ANY = re.compile(r"^router-([A-Za-z0-9_]+)-(.+)$")
#: Warm-up threshold of causal-LLM routers (no calibration table): a rating of 3 or more goes up.
LLM_WARMUP_THRESHOLD = 0.5


@dataclass(frozen=True)
class RouteSpec:
    """How to route: a router plus one target (a threshold, a top-tier share, per-tier shares, a cost)."""

    router: str
    threshold: float | None
    strong_share: float | None
    policy: str
    scorer_down_tier: str
    tier_shares: tuple[float, ...] | None = None
    cost_share: float | None = None
    cost_weights: tuple[float, ...] = ()
    sticky: bool = False
    #: The target is the policy's own (online calibration keeps state for it); False for request overrides.
    own_target: bool = True
    #: Calibrated operating points mixed at random to meet ``cost_share`` (``gateway.tiers.mix``).
    operating_points: tuple[OperatingPoint, ...] = ()
    #: A dollar target per request: ``Policy.decide`` converts it to ``cost_share`` (``gateway.cost_target``).
    cost_usd: float | None = None

    @property
    def fixed(self) -> bool:
        """Its thresholds are given (a threshold or operating points), not calibrated."""
        return self.threshold is not None or bool(self.operating_points)

    def target(self) -> Target | None:
        if self.strong_share is not None:
            return Target("strong_share", (self.strong_share,))
        if self.tier_shares is not None:
            return Target("tier_shares", self.tier_shares)
        if self.cost_share is not None:
            return Target("cost_share", (self.cost_share,), self.cost_weights, self.cost_usd)
        return None


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
    down = config.routing.scorer_down_tier
    if policy_name:
        p = config.policies.get(policy_name)
        if p is None:
            raise UnknownModelError(f"unknown policy {policy_name!r}", param="routing.policy")
        shares = tuple(p.tier_shares.values()) if p.tier_shares is not None else None
        spec = RouteSpec(
            p.router,
            p.threshold,
            p.strong_share,
            p.name,
            p.scorer_down_tier,
            shares,
            p.cost_share,
            p.cost_weights,
            p.sticky,
            operating_points=p.operating_points,
            cost_usd=p.cost_per_request_usd,
        )
    elif match := _ROUTER_MODEL.match(model) or _ROUTER_MODEL_ANY.match(model):
        value = match.group(2)
        share = value.startswith("s")
        try:
            number = float(value[1:] if share else value)
        except ValueError:
            what = "share" if share else "threshold"
            raise InvalidRequestError(f"model {model!r}: {what} {value!r} is not a number", param="model") from None
        if share:  # like a request's routing.strong_share: not a policy's own target
            spec = RouteSpec(match.group(1), None, _unit(number, "strong_share"), "", down, own_target=False)
        else:
            spec = RouteSpec(match.group(1), _unit(number, "threshold"), None, "", down)
    elif model in config.models:
        if routing_options:
            raise InvalidRequestError(f"routing options need a routed model, not the plain model {model!r}")
        return None
    elif not model and routing_options:
        spec = RouteSpec(config.routing.default_router, None, None, "", down)
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
        spec = RouteSpec(
            spec.router, overrides.threshold, None, spec.policy, spec.scorer_down_tier,
            sticky=spec.sticky, own_target=False,
        )  # fmt: skip
    elif overrides.strong_share is not None:
        spec = RouteSpec(
            spec.router, None, overrides.strong_share, spec.policy, spec.scorer_down_tier,
            sticky=spec.sticky, own_target=False,
        )  # fmt: skip
    if overrides.router:
        spec = replace(spec, router=overrides.router)
    if spec.threshold is None and spec.target() is None and spec.cost_usd is None:
        raise InvalidRequestError("a routed request needs a threshold or a strong_share", param="routing")
    return spec


#: Calibration tables kept per router, one per artifact version, the most recently fetched: a score is
#: thresholded with its own version's table during a rollout where scorer replicas serve two versions,
#: and right after a rollback to a version fetched before.
TABLE_VERSIONS_KEPT = 3

#: The docs section on routers for more than two tiers (named in config errors).
_THREE_TIERS = '"Which routers can serve three tiers"'


class RouterFacts(NamedTuple):
    """What ListRouters says about one scorer router."""

    table: CalibrationTable | None
    type: int
    models: tuple[str, ...]
    default_strong: str
    default_weak: str


class _Scored(NamedTuple):
    router: str
    rates: tuple[float, ...]
    latency_ms: float
    server_ms: float
    version: str = ""  # the scorer's artifact version ("" for a causal-LLM rating)


class Policy:
    """Turns a request into a :class:`Decision`, asking the scorer (or a causal-LLM router) when routing."""

    def __init__(
        self,
        config: GatewayConfig,
        scorer: ScorerClient,
        watch: FallbackWatch,
        *,
        calibration: OnlineCalibration | None = None,
        sticky: ConversationTiers | None = None,
        llm: LLMRouters | None = None,
        dollars: DollarTargets | None = None,
    ) -> None:
        self._config = config
        self._tiers = config.tiers
        self._pairs = config.tiers.pairs()
        self.rule = config.tier_rule()
        #: Draws between a policy's two operating points (``operating_points``).
        self._draw = random.Random()
        self._scorer = scorer
        self.watch = watch
        self.calibration = calibration
        self.sticky = sticky
        self._llm = llm
        self.dollars = dollars
        self._routers: dict[str, RouterFacts] = {}
        self._unsuitable: dict[str, str] = {}  # router -> why it cannot route the configured tiers
        # router the configuration names -> why the scorer cannot serve it (it does not have it): an ERROR, and
        # requests for it get that message; not fatal, as a scorer serving fewer routers may be being rolled out
        self._missing: dict[str, str] = {}
        self._calibrated = False
        self._refresh_error = ""  # why the last ListRouters failed (a gRPC status name)
        self._refresher: asyncio.Task[None] | None = None
        # router -> artifact version (RouterInfo.artifact_version) -> its table, the TABLE_VERSIONS_KEPT
        # versions fetched most recently, the last fetched last. A Score answer from a version not among
        # them (the scorer reloaded a promoted one) refetches the tables at once instead of at the next
        # period, so thresholds follow the new score scale.
        self._version_tables: dict[str, OrderedDict[str, CalibrationTable | None]] = {}
        self._version_refresh: asyncio.Task[bool] | None = None
        self._versions = VersionWatch()  # says a new version once, whichever replica answers

    def _chain(self, tier: str) -> tuple[str, ...]:
        return self._tiers.chain(tier, self._config.routing.fallback_to_other_tier)

    async def start(self) -> None:
        """Fetch the routers (bounded by ``list_routers_deadline_ms``), then keep them fresh.

        Requests never wait for ``ListRouters``: until a table has been fetched, share-based
        policies use their scorer-down tier, exactly as when the scorer cannot score. When the
        scorer answers at start and a policy's router cannot route the configured tiers (a BERT
        router, which knows one pair, with more than two tiers), start-up fails with a ConfigError.
        """
        if await self._refresh():
            problems = self.policy_problems()
            if problems:
                raise ConfigError("; ".join(problems))
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        for task in (self._refresher, self._version_refresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def policy_problems(self) -> list[str]:
        """Why configured policies cannot route (after ListRouters), one line each."""
        out = []
        for name in routers_in_use(self._config):
            if name in self._unsuitable:
                out.append(self._unsuitable[name])
        return out

    async def _refresh(self) -> bool:
        try:
            routers = await self._scorer.list_routers()
        except ScorerUnavailableError as exc:
            self._refresh_error = str(exc)
            return False
        self._routers = {
            r.name: RouterFacts(
                CalibrationTable((p.strong_share, p.threshold) for p in r.calibration) if r.calibration else None,
                r.type,
                tuple(r.models),
                r.default_strong_model,
                r.default_weak_model,
            )
            for r in routers
        }
        for r in routers:
            if r.artifact_version:
                kept = self._version_tables.setdefault(r.name, OrderedDict())
                kept[r.artifact_version] = self._routers[r.name].table
                kept.move_to_end(r.artifact_version)
                while len(kept) > TABLE_VERSIONS_KEPT:
                    kept.popitem(last=False)
        unsuitable = {name: why for name, facts in self._routers.items() if (why := self._check(name, facts))}
        served = ", ".join(sorted(self._routers)) or "none"
        missing = {}
        for name in routers_in_use(self._config):
            if name not in self._routers:  # not still loading: the scorer answers ListRouters once all have loaded
                named = ", ".join(where_named(self._config, name))
                missing[name] = f"router {name!r} ({named}) is not served by the scorer, which serves: {served}"
            why = unsuitable.get(name) or missing.get(name)
            if why is not None and why != (self._unsuitable.get(name) or self._missing.get(name)):
                log.error("configuration error: %s", why)
        self._unsuitable = unsuitable
        self._missing = missing
        self._calibrated = True
        return True

    def _check(self, name: str, facts: RouterFacts) -> str | None:
        """Why router ``name`` cannot route the configured tiers (None when it can)."""
        n = len(self._tiers)
        if n <= 2:
            return None  # two tiers: whatever the scorer accepts, as always
        if facts.type == scorer_pb2.ROUTER_TYPE_BERT:
            return (
                f"router {name!r} ({scorer_pb2.RouterType.Name(facts.type)}) knows only one model pair "
                f"({facts.default_strong} vs {facts.default_weak}); a configuration with {n} tiers needs a router "
                "that scores any pair of its models (mf, sw) — use one of those for these policies"
            )
        known = ", ".join(dict.fromkeys(facts.models))
        if len(set(facts.models)) < n:
            return (
                f"router {name!r} ({scorer_pb2.RouterType.Name(facts.type)}) was trained on {len(set(facts.models))} "
                f"models ({known}) and cannot tell {n} tiers apart; train one on battles between the models the "
                f"tiers stand for (e.g. `ferryman train mf --arena arena-bench-v1`: docs/gateway.md, {_THREE_TIERS})"
            )
        missing = [f"{t.name} ({t.router_model})" for t in self._tiers.ordered if t.router_model not in facts.models]
        if missing:
            return f"router {name!r} does not know the router_model of tier(s) {', '.join(missing)}; it knows {known}"
        return None

    def _fetched_version(self, router: str) -> str:
        """The artifact version of ``router``'s table fetched last ("" before any)."""
        kept = self._version_tables.get(router)
        return next(reversed(kept)) if kept else ""

    def _follow_version(self, router: str, artifact_version: str) -> None:
        """Refetch the tables (once at a time, in the background) when ``router`` scores with a version whose table
        has not been fetched (a promotion; a replica of a rollout serving another version)."""
        known = self._fetched_version(router)
        if not artifact_version or not known or artifact_version in self._version_tables.get(router, ()):
            return
        if self._version_refresh is None or self._version_refresh.done():
            self._versions.refetching(router, artifact_version, known)
            self._version_refresh = asyncio.create_task(self._refresh())

    async def _refresh_forever(self) -> None:
        """Refetch the tables every ``calibration_refresh_s`` (every second until the first answer); a failure
        is logged once per outage, with what it means, and the scorer answering again once."""
        period = self._config.scorer.calibration_refresh_s
        target = self._config.scorer.target
        failing = False
        while True:
            await asyncio.sleep(period if self._calibrated else min(1.0, period))
            ok = await self._refresh()
            if not ok and not failing:
                log.warning(
                    "scorer %s does not answer ListRouters (%s); %s, until it does (logged once)",
                    target,
                    self._refresh_error,
                    "keeping the calibration tables fetched before"
                    if self._calibrated
                    else "share-based policies route by their scorer-down tier",
                )
            elif ok and failing:
                log.info("scorer %s answers ListRouters again; calibration tables refreshed", target)
            failing = not ok

    def routers(self) -> dict[str, bool]:
        """The scorer's routers (as last fetched), each with whether it has a calibration table."""
        return {name: facts.table is not None for name, facts in sorted(self._routers.items())}

    # ------------------------------------------------------------ thresholds

    def _table(self, router: str, version: str = "") -> CalibrationTable | None:
        """The router's calibration table — ``version``'s when it was fetched, else the last fetched; raises when
        none can be had (see ``_warmup``)."""
        if not self._calibrated:
            raise ScorerUnavailableError("NO_CALIBRATION")  # no table fetched yet
        if router not in self._routers:
            raise self._unknown_router(router)
        kept = self._version_tables.get(router)
        if version and kept is not None and version in kept:
            return kept[version]
        return self._routers[router].table

    def _unknown_router(self, router: str, scorer_says: str = "") -> UnknownModelError:
        """A router the client named (``router-<r>-...``, ``routing.router``) that the scorer does not serve: 404
        ``model_not_found``, as OpenAI answers an unknown model, listing what the scorer serves (as last fetched;
        ``scorer_says``, the scorer's own answer, when that list is not known or still names the router)."""
        if self._calibrated and router not in self._routers:
            served = ", ".join(sorted(self._routers)) or "none"
            return UnknownModelError(f"unknown router {router!r}; the scorer serves: {served}", param="model")
        return UnknownModelError(scorer_says or f"unknown router {router!r}", param="model")

    def _warmup(self, spec: RouteSpec, router: str, *, llm: bool, version: str = "") -> tuple[float, ...] | None:
        """Thresholds from the router's table (``version``'s, see ``_table``) for ``spec``'s target (None: no
        table); raises like ``_table``.

        The table is for the router's default pair on reference prompts; with other tiers or targets
        other than ``strong_share`` it is an approximation that online calibration then corrects.
        """
        if llm:
            return self.rule.thresholds(LLM_WARMUP_THRESHOLD)
        table = self._table(router, version)
        if table is None:
            return None
        if spec.strong_share is not None:
            return self.rule.thresholds(table.threshold_for(spec.strong_share))
        if spec.tier_shares is not None:
            cumulative, out = 0.0, []
            for share in spec.tier_shares[:-1]:
                cumulative += share
                out.append(table.threshold_for(min(1.0, max(0.0, 1.0 - cumulative))))
            return tuple(out)
        assert spec.cost_share is not None
        return self.rule.thresholds(table.threshold_for(spec.cost_share))

    def _thresholds(
        self, spec: RouteSpec, router: str, warm: tuple[float, ...] | None, version: str
    ) -> tuple[tuple[float, ...], str]:
        if spec.threshold is not None:
            return self.rule.thresholds(spec.threshold), "fixed"
        if spec.operating_points:
            assert spec.cost_share is not None
            low, high, weight = mix(spec.operating_points, spec.cost_share)
            point = high if self._draw.random() < weight else low
            return point.thresholds(self.rule), "fixed"
        target = spec.target()
        assert target is not None
        if self.calibration is not None:
            got = self.calibration.thresholds(
                spec.policy, router, target, warm, own_target=spec.own_target, version=version
            )
            if got is None:
                raise ScorerUnavailableError("NO_CALIBRATION")
            return got
        if warm is None:
            raise InvalidRequestError(f"router {router!r} has no calibration table; use an explicit threshold")
        return warm, "artifact"

    def _check_router(self, router: str) -> None:
        why = self._unsuitable.get(router) or self._missing.get(router)
        if why is not None:
            raise InvalidRequestError(why, param="model")

    # ------------------------------------------------------------ deciding

    async def decide(self, request: ChatRequest) -> Decision:
        spec = parse_spec(request.model, request.routing, self._config)
        if spec is None:
            return Decision(Tier.PASSTHROUGH, request.model, (request.model,), DecisionSource.PASSTHROUGH)
        if spec.cost_usd is not None:  # priced at the policy's learnt token counts, then calibrated as a cost share
            assert self.dollars is not None, "a cost_per_request_usd policy needs the gateway's DollarTargets"
            priced = self.dollars.target(spec.policy)
            spec = replace(spec, cost_share=priced.cost_share, cost_weights=priced.weights)
        if not any(m.role == "user" for m in request.messages):
            raise InvalidRequestError("a routed request needs at least one user message", param="messages")
        key: str | None = None
        if spec.sticky and self.sticky is not None:
            key = conversation_key(request, spec.policy)
            if is_follow_up(request):
                kept = await self.sticky.get(key)
                if kept is not None and kept in self._tiers:
                    chain = self._chain(kept)
                    return Decision(
                        self._tiers.kind(kept), chain[0], chain, DecisionSource.STICKY,
                        router=spec.router, policy=spec.policy, tier_name=kept,
                    )  # fmt: skip
        if not last_user_turn(request.messages).strip():  # what the router scores (was "the scorer rejected ...")
            raise InvalidRequestError(
                "the last user message is empty: a routed request is routed on its text", param="messages"
            )
        llm_router = self._llm.get(spec.router) if self._llm is not None else None
        router = llm_router.cfg.fallback_router if llm_router is not None else spec.router
        rating: LLMRating | None = None
        warm: tuple[float, ...] | None = None
        started = time.perf_counter()
        try:
            scored: _Scored | None = None
            if llm_router is not None:
                rating, scored = await self._rate(llm_router, request, started)
                if scored is not None:
                    warm = self._warmup(spec, llm_router.cfg.name, llm=True) if not spec.fixed else None
            if scored is None:
                self._check_router(router)
                if not spec.fixed:
                    warm = self._warmup(spec, router, llm=False)
                reply = await self._scorer.score_pairs(router, request.messages, self._pairs)
                latency_ms = (time.perf_counter() - started) * 1000
                scored = _Scored(router, reply.rates, latency_ms, reply.server_ms, reply.artifact_version)
                self._follow_version(router, reply.artifact_version)
                if not spec.fixed and reply.artifact_version != self._fetched_version(router):
                    warm = self._warmup(spec, router, llm=False, version=reply.artifact_version)
        except ScorerRejectedError as exc:
            if exc.unknown_router and router not in routers_in_use(self._config):  # named by the client, not the config
                raise self._unknown_router(router, str(exc)) from exc
            raise InvalidRequestError(f"the scorer rejected the routing request: {exc}", param="model") from exc
        except ScorerUnavailableError as exc:
            return self._scorer_down(spec, request, exc, started, warm, rating)
        observe = self.calibration is not None and not spec.fixed
        try:
            thresholds, source = self._thresholds(spec, scored.router, warm, scored.version)
        except ScorerUnavailableError as exc:  # no table and too few live scores yet: keep learning them
            if observe and self.calibration is not None:
                down = self._tiers[spec.scorer_down_tier].index
                self.calibration.observe(spec.policy, scored.router, scored.rates, down, scored.version)
            return self._scorer_down(spec, request, exc, started, warm, rating)
        self.watch.scored()
        index = self.rule.choose(scored.rates, thresholds)
        if observe and self.calibration is not None:
            self.calibration.observe(spec.policy, scored.router, scored.rates, index, scored.version)
        tier = self._tiers.ordered[index]
        if key is not None and self.sticky is not None:
            await self.sticky.put(key, tier.name)
        decisive = index if index < len(scored.rates) else _closest(scored.rates, thresholds)
        chain = self._chain(tier.name)
        return Decision(
            self._tiers.kind(tier.name),
            chain[0],
            chain,
            DecisionSource.SCORED,
            router=scored.router,
            score=scored.rates[decisive],
            threshold=thresholds[decisive],
            policy=spec.policy,
            scorer_latency_ms=scored.latency_ms,
            scorer_server_ms=scored.server_ms,
            router_version=scored.version,
            tier_name=tier.name,
            tier_scores=tuple(
                TierScore(t.name, t.router_model, rate, th)
                for t, rate, th in zip(self._tiers.lower, scored.rates, thresholds, strict=True)
            ),
            threshold_source=source,
            llm=rating,
        )

    async def _rate(
        self, llm_router: LLMRouter, request: ChatRequest, started: float
    ) -> tuple[LLMRating, _Scored | None]:
        rating = await llm_router.rate(last_user_turn(request.messages))
        if rating.rating is None:
            log.info(
                "llm router %s gave no rating (%s); router %s decides",
                llm_router.cfg.name,
                rating.fallback_reason,
                llm_router.cfg.fallback_router,
            )
            return rating, None
        rates = win_rates(rating.rating, len(self._tiers))
        return rating, _Scored(llm_router.cfg.name, rates, (time.perf_counter() - started) * 1000, 0.0)

    def _scorer_down(
        self,
        spec: RouteSpec,
        request: ChatRequest,
        exc: ScorerUnavailableError,
        started: float,
        warm: tuple[float, ...] | None,
        rating: LLMRating | None,
    ) -> Decision:
        waited_ms = (time.perf_counter() - started) * 1000
        chars = len(last_user_turn(request.messages))
        self.watch.fallback(spec.router, str(exc), waited_ms, chars)
        tier = spec.scorer_down_tier
        chain = self._chain(tier)
        threshold = spec.threshold if spec.threshold is not None else (warm[0] if warm else 0.0)
        return Decision(
            self._tiers.kind(tier),
            chain[0],
            chain,
            DecisionSource.SCORER_UNAVAILABLE,
            router=spec.router,
            threshold=threshold,
            policy=spec.policy,
            tier_name=tier,
            llm=rating,
        )


def _closest(rates: tuple[float, ...], thresholds: tuple[float, ...]) -> int:
    """The lower tier that came closest to being chosen (its score nearest above its threshold)."""
    return min(range(len(rates)), key=lambda i: rates[i] - thresholds[i])
