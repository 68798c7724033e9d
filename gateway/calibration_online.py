"""Online calibration: thresholds that keep share and cost targets on the gateway's own live traffic.

A router's calibration table (ListRouters) maps target shares to thresholds on *reference*
prompts; live traffic differs and drifts, so a ``strong_share: 0.3`` policy may send 15 % or
50 % of real requests to the top tier. With ``calibration.online: true`` the gateway keeps, per
policy and router, a sliding window of the scores its routed requests got (one score per tier
below the top: ``gateway.tiers``) and moves the policy's thresholds so that the same decisions
on that window would meet its target:

- ``strong_share`` s: the policy threshold that sends a share s of the window to the top tier
  (the top tier is chosen when every score is at or above its threshold: :meth:`TierRule.top_cut`);
- ``tier_shares`` (``cheapest`` rule): one threshold per lower tier, cheapest first, each taking its
  share of the whole window from the requests the cheaper tiers left;
- ``cost_share`` c: the smallest policy threshold (most top-tier calls) whose mean cost on the
  window, by the tiers' price weights, is at most c of the top tier's (a ``cost_per_request_usd``
  policy's share and weights come from ``gateway.cost_target``, at the token counts learnt from its
  answers; when they move, the thresholds move towards the new target by bounded steps).

Warm-up: until the window holds ``min_samples`` scores the artifact's calibration table is used
(source ``artifact``; the table is for the router's default pair on reference prompts, so with
other tiers it is only a starting point). Then, every ``update_every`` new scores (and after each
exchange with Redis), the applied thresholds move towards the window's by at most ``max_step``:
one odd burst cannot swing routing. Each artifact version of a router (``artifact_version`` in the
Score answer) has its own window: when the scorer starts serving a promoted or rolled-back version,
whose scores are on another scale, that version warms up from its own table again instead of being
routed by thresholds learnt on the previous version's scores (the states of the ``_VERSIONS_KEPT``
versions asked for most recently per policy and router are kept, so a rollout that mixes two
versions calibrates each on its own scores, and a rollback resumes the old version's own window).
With Redis (the ``REDIS_URL`` the breakers use) every replica pushes its scores into one shared
list per policy, router and version (trimmed to ``window``, expiring a day after its last push) every
``sync_s`` and reads it back, so all replicas calibrate on all traffic; while Redis is away each
replica keeps calibrating on its own window (logged once; nothing fails). Requests never wait
for Redis: the exchange runs in a background task.

Metrics: ``ferryman_gateway_calibration_threshold``, ``..._target_share`` and
``..._realised_share`` (this replica's last ``window`` decisions) per policy, router and tier,
``..._realised_cost_share`` / ``..._target_cost_share``, ``..._window_size`` and ``..._shared``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from ferryman.calibration import share_threshold
from gateway.errors import ConfigError
from gateway.shared_redis import SharedRedis
from gateway.tiers import TierRule, Tiers

if TYPE_CHECKING:
    from gateway.config import _Reader

log = logging.getLogger(__name__)

TargetKind = Literal["strong_share", "tier_shares", "cost_share"]

#: Artifact versions whose windows are kept per policy and router (the two asked for most recently).
_VERSIONS_KEPT = 2


@dataclass(frozen=True)
class CalibrationConfig:
    """The ``calibration:`` section."""

    #: Calibrate share and cost targets on live traffic (off: the artifact's table, as calibrated offline).
    online: bool = False
    #: Scores per policy and router in the sliding window (shared by all replicas with Redis).
    window: int = 1000
    #: Scores needed before the window replaces the artifact's table.
    min_samples: int = 100
    #: Thresholds are recomputed after this many new local scores (and after each Redis exchange).
    update_every: int = 20
    #: The most a threshold moves in one update.
    max_step: float = 0.05
    #: How often scores are exchanged with Redis.
    sync_s: float = 1.0
    namespace: str = "ferryman"
    redis_timeout_s: float = 0.25
    #: After a Redis error, per-replica windows are used for this long before Redis is tried again.
    redis_retry_s: float = 5.0


def parse_calibration(r: _Reader) -> CalibrationConfig:
    d = CalibrationConfig
    cfg = CalibrationConfig(
        online=r.get("online", bool, d.online),
        window=r.positive("window", int, d.window),
        min_samples=r.positive("min_samples", int, d.min_samples),
        update_every=r.positive("update_every", int, d.update_every),
        max_step=r.positive("max_step", float, d.max_step),
        sync_s=r.positive("sync_s", float, d.sync_s),
        namespace=r.get("namespace", str, d.namespace),
        redis_timeout_s=r.positive("redis_timeout_s", float, d.redis_timeout_s),
        redis_retry_s=r.positive("redis_retry_s", float, d.redis_retry_s),
    )
    r.finish()
    if cfg.min_samples > cfg.window:
        raise ConfigError(f"calibration.min_samples ({cfg.min_samples}) must be <= calibration.window ({cfg.window})")
    return cfg


@dataclass(frozen=True)
class Target:
    """What a policy's thresholds must achieve."""

    kind: TargetKind
    #: strong_share: (s,); tier_shares: one per tier, cheapest first; cost_share: (c,).
    values: tuple[float, ...]
    #: cost_share: each tier's price relative to the top tier's, cheapest first.
    weights: tuple[float, ...] = ()
    #: cost_share converted from a policy's ``cost_per_request_usd`` (``gateway.cost_target``): the share and
    #: weights move with the token counts learnt from traffic; the goal is this many dollars per request.
    usd: float | None = None

    def same_goal(self, other: Target) -> bool:
        """The same configured goal (a dollar target's share and weights may have moved: no restart for that)."""
        if self.usd is not None or other.usd is not None:
            return self.kind == other.kind and self.usd == other.usd
        return self == other


Window = Sequence[Sequence[float]]

#: Relative rounding a window's mean cost may carry above ``cost_share`` and still meet it (:func:`cost_thresholds`).
COST_SHARE_RTOL = 1e-9


# ---------------------------------------------------------------- the rules (pure functions)


def top_share_thresholds(window: Window, share: float, rule: TierRule) -> tuple[float, ...]:
    """The thresholds, from one policy threshold, that send ``share`` of the window to the top tier."""
    ranked = sorted((rule.top_cut(row) for row in window), reverse=True)
    return rule.thresholds(share_threshold(ranked, share))


def tier_share_thresholds(window: Window, shares: Sequence[float]) -> tuple[float, ...]:
    """``cheapest`` rule: per lower tier, cheapest first, the threshold that gives it its share of the window."""
    remaining = list(window)
    total = len(remaining)
    out: list[float] = []
    for i, share in enumerate(shares[:-1]):
        values = sorted(row[i] for row in remaining)
        want = round(share * total)
        if not values:
            threshold = 0.0
        elif want <= 0:
            threshold = values[0]  # nothing is below the smallest value
        elif want >= len(values):
            threshold = math.nextafter(values[-1], math.inf)
        else:
            threshold = (values[want - 1] + values[want]) / 2
        out.append(threshold)
        remaining = [row for row in remaining if row[i] >= threshold]
    return tuple(out)


def mean_cost(window: Window, thresholds: Sequence[float], weights: Sequence[float], rule: TierRule) -> float:
    """Mean cost (top tier = 1) of routing the window with these thresholds."""
    return sum(weights[rule.choose(row, thresholds)] for row in window) / len(window)


def cost_thresholds(window: Window, cost_share: float, weights: Sequence[float], rule: TierRule) -> tuple[float, ...]:
    """The smallest policy threshold (the most top-tier calls) whose mean cost on the window is within ``cost_share``.

    The mean cost never rises with the threshold (each request can only move to a cheaper tier), so
    bisection finds it; above every score all requests go to the cheapest tier.
    """
    # a share equal to the cheapest tier's weight (a dollar target clamped there) is met by routing every request to
    # the cheapest tier, whose mean over the window can round above the weight itself; the thresholds then ran to
    # the 1e6 bound, which bounded steps take ages to come back from once the target moves up again
    limit = cost_share * (1 + COST_SHARE_RTOL)
    lo = min(rule.top_cut(row) for row in window)  # everything to the top tier at and below it
    hi = 1.0
    while mean_cost(window, rule.thresholds(hi), weights, rule) > limit and hi < 1e6:
        hi = 2 * hi + 1
    if mean_cost(window, rule.thresholds(lo), weights, rule) <= limit:
        return rule.thresholds(lo)
    for _ in range(60):
        mid = (lo + hi) / 2
        if mean_cost(window, rule.thresholds(mid), weights, rule) <= limit:
            hi = mid
        else:
            lo = mid
    return rule.thresholds(hi)


def target_thresholds(window: Window, target: Target, rule: TierRule) -> tuple[float, ...]:
    """The thresholds that would meet ``target`` on ``window`` (at least one row)."""
    if target.kind == "strong_share":
        return top_share_thresholds(window, target.values[0], rule)
    if target.kind == "tier_shares":
        return tier_share_thresholds(window, target.values)
    return cost_thresholds(window, target.values[0], target.weights, rule)


def step_towards(applied: Sequence[float], wanted: Sequence[float], max_step: float) -> tuple[float, ...]:
    """Each threshold moved towards its wanted value by at most ``max_step``."""
    return tuple(a + max(-max_step, min(max_step, w - a)) for a, w in zip(applied, wanted, strict=True))


# ---------------------------------------------------------------- state per policy and router


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["policy", "router", "tier"]
        self.threshold = Gauge(
            "ferryman_gateway_calibration_threshold",
            "Threshold applied per tier below the top (online calibration).",
            labels,
            registry=registry,
        )
        self.target_share = Gauge(
            "ferryman_gateway_calibration_target_share", "Target share of requests per tier.", labels, registry=registry
        )
        self.realised_share = Gauge(
            "ferryman_gateway_calibration_realised_share",
            "Share of this replica's last calibration.window decisions per tier.",
            labels,
            registry=registry,
        )
        pr = ["policy", "router"]
        self.target_cost = Gauge(
            "ferryman_gateway_calibration_target_cost_share",
            "cost_share policies: target cost per request relative to the top tier's.",
            pr,
            registry=registry,
        )
        self.realised_cost = Gauge(
            "ferryman_gateway_calibration_realised_cost_share",
            "cost_share policies: this replica's recent cost per request relative to the top tier's (price weights).",
            pr,
            registry=registry,
        )
        self.window = Gauge(
            "ferryman_gateway_calibration_window_size", "Scores in the calibration window.", pr, registry=registry
        )
        self.shared = Gauge(
            "ferryman_gateway_calibration_shared",
            "1 when the last window came from Redis (all replicas), 0 when it is this replica's own.",
            pr,
            registry=registry,
        )
        self.redis_errors = Counter(
            "ferryman_gateway_calibration_redis_errors",
            "Failed exchanges of calibration windows with Redis.",
            registry=registry,
        )


class _State:
    """The window, the applied thresholds and the realised shares of one policy and router."""

    def __init__(
        self, policy: str, router: str, version: str, target: Target | None, tiers: Tiers, cfg: CalibrationConfig
    ) -> None:
        self.policy, self.router, self.version, self.target = policy, router, version, target
        self.tiers = tiers
        self.lower = len(tiers) - 1
        self.window: deque[tuple[float, ...]] = deque(maxlen=cfg.window)
        self.pending: deque[tuple[float, ...]] = deque(maxlen=cfg.window)
        self.realised: deque[int] = deque(maxlen=cfg.window)
        self.counts = [0] * len(tiers)
        self.applied: tuple[float, ...] | None = None
        self.online = False
        self.new = 0
        self.shared = False
        #: When a request of this version last asked (a tick of OnlineCalibration's clock).
        self.used = 0


class OnlineCalibration:
    """Live windows and applied thresholds for every (policy, router) the gateway routes with."""

    def __init__(
        self, cfg: CalibrationConfig, tiers: Tiers, rule: TierRule, registry: CollectorRegistry, redis_url: str | None
    ) -> None:
        self.cfg = cfg
        self.tiers = tiers
        self.rule = rule
        self.metrics = _Metrics(registry)
        self.redis = SharedRedis(
            redis_url, what="online calibration", timeout_s=cfg.redis_timeout_s, retry_s=cfg.redis_retry_s
        )
        signature = "|".join(f"{s}>{w}" for s, w in tiers.pairs())
        self._sig = hashlib.sha256(signature.encode()).hexdigest()[:10]
        #: (policy, router, artifact version) -> state.
        self._states: dict[tuple[str, str, str], _State] = {}
        self._clock = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.redis.configured:
            self._task = asyncio.create_task(self._sync_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sync_once()
        await self.redis.close()

    # ------------------------------------------------------------ the request path (no I/O)

    def _state(self, policy: str, router: str, version: str, target: Target | None) -> _State:
        key = (policy, router, version)
        st = self._states.get(key)
        if st is None:
            # least recently used first: after a rollback, the version serving again is kept, not the rolled-back one
            older = sorted((k for k in self._states if k[:2] == (policy, router)), key=lambda k: self._states[k].used)
            if older:
                log.info(
                    "online calibration: policy %s router %s now scores with version %s: it warms up from its own "
                    "calibration table and calibrates on its own window (the previous version's %d scores are not "
                    "on its scale)",
                    policy or "-",
                    router,
                    version or "(unversioned)",
                    len(self._states[older[-1]].window),
                )
            for stale in older[: max(0, len(older) - _VERSIONS_KEPT + 1)]:
                del self._states[stale]
            st = self._states[key] = _State(policy, router, version, target, self.tiers, self.cfg)
            self._publish_target(st)
        st.used = next(self._clock)
        return st

    def thresholds(
        self,
        policy: str,
        router: str,
        target: Target,
        warmup: tuple[float, ...] | None,
        *,
        own_target: bool,
        version: str = "",
    ) -> tuple[tuple[float, ...], str] | None:
        """(thresholds, source "online" or "artifact") for a request, or None (no table and no window yet).

        ``own_target``: ``target`` is the policy's configured one (bounded steps apply); a target a
        request overrides is computed from the window directly. ``version``: the artifact version
        that scored the request (each version calibrates on its own window).
        """
        st = self._state(policy, router, version, target if own_target else None)
        if not own_target:
            if len(st.window) >= self.cfg.min_samples:
                return target_thresholds(st.window, target, self.rule), "online"
            return (warmup, "artifact") if warmup is not None else None
        if st.target is None or not st.target.same_goal(target):  # a policy whose target changed in place (tests)
            st.target, st.applied, st.online = target, None, False  # start again
            self._publish_target(st)
        elif st.target != target:  # a dollar target at newly learnt token counts: bounded steps towards it
            st.target = target
            self._publish_target(st)
        if st.online and st.applied is not None:
            return st.applied, "online"
        if len(st.window) >= self.cfg.min_samples:
            if st.applied is None and warmup is not None:
                st.applied = warmup  # bounded steps start from the table current when the window fills
            self._update(st)
            assert st.applied is not None
            return st.applied, "online"
        return (warmup, "artifact") if warmup is not None else None

    def observe(self, policy: str, router: str, scores: Sequence[float], chosen: int, version: str = "") -> None:
        """A routed request's scores (one per lower tier), the tier index it went to, the version that scored it."""
        st = self._state(policy, router, version, None)
        row = tuple(float(s) for s in scores)
        if len(row) != st.lower:
            return
        st.window.append(row)
        if self.redis.configured:
            st.pending.append(row)
        if len(st.realised) == st.realised.maxlen:
            st.counts[st.realised[0]] -= 1
        st.realised.append(chosen)
        st.counts[chosen] += 1
        st.new += 1
        if st.new >= self.cfg.update_every and st.target is not None and len(st.window) >= self.cfg.min_samples:
            self._update(st)
        self._publish_realised(st)

    def _update(self, st: _State) -> None:
        st.new = 0
        if st.target is None or not st.window:
            return
        wanted = target_thresholds(st.window, st.target, self.rule)
        if st.applied is None:
            st.applied = wanted  # no table to start from: the window's own thresholds at once
        else:
            st.applied = step_towards(st.applied, wanted, self.cfg.max_step)
        if not st.online:
            log.info(
                "online calibration: policy %s router %s now calibrated on %d live scores (thresholds %s)",
                st.policy or "-",
                st.router,
                len(st.window),
                ", ".join(f"{t:.4f}" for t in st.applied),
            )
        st.online = True
        for tier, value in zip(self.tiers.lower, st.applied, strict=True):
            self.metrics.threshold.labels(st.policy, st.router, tier.name).set(value)

    def _publish_target(self, st: _State) -> None:
        if st.target is None:
            return
        m, names = self.metrics, self.tiers.names
        if st.target.kind == "strong_share":
            m.target_share.labels(st.policy, st.router, names[-1]).set(st.target.values[0])
        elif st.target.kind == "tier_shares":
            for name, share in zip(names, st.target.values, strict=True):
                m.target_share.labels(st.policy, st.router, name).set(share)
        else:
            m.target_cost.labels(st.policy, st.router).set(st.target.values[0])

    def _publish_realised(self, st: _State) -> None:
        n = len(st.realised)
        for name, count in zip(self.tiers.names, st.counts, strict=True):
            self.metrics.realised_share.labels(st.policy, st.router, name).set(count / n)
        if st.target is not None and st.target.kind == "cost_share":
            cost = sum(w * c for w, c in zip(st.target.weights, st.counts, strict=True)) / n
            self.metrics.realised_cost.labels(st.policy, st.router).set(cost)
        self.metrics.window.labels(st.policy, st.router).set(len(st.window))

    def _latest(self, policy: str, router: str) -> _State | None:
        """The state of the version of ``router`` that scored for ``policy`` most recently first."""
        states = [st for k, st in self._states.items() if k[:2] == (policy, router)]
        return max(states, key=lambda st: st.used) if states else None

    def realised_shares(self, policy: str, router: str) -> dict[str, float]:
        """This replica's share of recent decisions per tier, for the router's newest version (tests, metrics)."""
        st = self._latest(policy, router)
        if st is None or not st.realised:
            return {}
        return {name: c / len(st.realised) for name, c in zip(self.tiers.names, st.counts, strict=True)}

    def applied(self, policy: str, router: str) -> tuple[tuple[float, ...] | None, bool, int]:
        """(applied thresholds, window shared through Redis, window size) of the newest version — tests, debugging."""
        st = self._latest(policy, router)
        if st is None:
            return None, False, 0
        return st.applied, st.shared, len(st.window)

    # ------------------------------------------------------------ sharing through Redis

    def _key(self, st: _State) -> str:
        return f"{self.cfg.namespace}:calib:{self._sig}:{st.policy or '-'}:{st.router}:{st.version or '-'}"

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.sync_s)
            try:
                await self.sync_once()
            except Exception:  # a bug here must not stop calibrating
                log.exception("online calibration: exchanging windows with Redis failed")

    async def sync_once(self) -> None:
        """Push every window's new scores to Redis and replace the window with the shared one."""
        if not self.redis.configured:
            return
        for st in list(self._states.values()):
            await self._sync(st)

    async def _sync(self, st: _State) -> None:
        rows = list(st.pending)
        key, size = self._key(st), self.cfg.window

        async def exchange(client: object) -> list[bytes]:
            pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
            if rows:
                pipe.rpush(key, *(",".join(repr(v) for v in row) for row in rows))
                pipe.ltrim(key, -size, -1)
                pipe.expire(key, 86_400)
            pipe.lrange(key, 0, -1)
            result = await pipe.execute()
            return list(result[-1])

        shared = await self.redis.run(exchange)
        if shared is None:
            if self.redis.configured and st.shared:
                self.metrics.redis_errors.inc()
            st.shared = False
            self.metrics.shared.labels(st.policy, st.router).set(0)
            return
        for _ in rows:
            st.pending.popleft()
        window: list[tuple[float, ...]] = []
        for raw in shared:
            parsed = _parse_row(raw, st.lower)
            if parsed is not None:
                window.append(parsed)
        before = len(st.window)
        st.window.clear()
        st.window.extend(window[-size:])
        st.shared = True
        self.metrics.shared.labels(st.policy, st.router).set(1)
        self.metrics.window.labels(st.policy, st.router).set(len(st.window))
        if st.target is not None and len(st.window) >= self.cfg.min_samples and (rows or len(st.window) != before):
            self._update(st)


def _parse_row(raw: bytes | str, lower: int) -> tuple[float, ...] | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        row = tuple(float(x) for x in text.split(","))
    except ValueError:
        return None
    if len(row) != lower or not all(0.0 <= v <= 1.0 for v in row):
        return None
    return row


__all__ = [
    "CalibrationConfig",
    "OnlineCalibration",
    "Target",
    "cost_thresholds",
    "parse_calibration",
    "step_towards",
    "target_thresholds",
    "tier_share_thresholds",
    "top_share_thresholds",
]
