"""Dollar targets: a policy's ``cost_per_request_usd``, met through online calibration's ``cost_share``.

Operators budget in dollars per request; routing works in shares of the top tier's cost. A
request's cost on a tier is its tokens times the prices of the tier's first model, so this module
learns, per policy, the token counts of the policy's answered requests and converts the dollar
target, for every request, into the ``cost_share`` target that :mod:`gateway.calibration_online`
already meets (one place calibrates; this one only prices):

- each tier's expected cost of a request, ``e_i``: the tier's first model's prices at the mean
  input and output tokens of the requests it answered among the policy's last
  ``calibration.window`` answered requests; a tier that answered fewer than
  :data:`TIER_MIN_ANSWERS` of them is priced at the mean of all of them, and until the window
  holds ``calibration.min_samples`` answered requests every tier is priced at the policy's
  ``expected_tokens`` (the warm-up);
- the target: ``cost_share = usd / e_top`` with per-tier weights ``e_i / e_top``: thresholds that
  keep the calibration window's mean weight within the share keep its mean expected dollars
  within ``usd``.

A target outside ``[min_i e_i, e_top]`` cannot be met: it is clamped (every request to the
cheapest tier, spending more than the target; or to the top tier, spending less), with a WARNING
each time that starts and an INFO line when it ends, and ``ferryman_gateway_cost_target_clamped``
says so (-1 below, 1 above, 0 within). Metrics per policy: the target and the realised mean
dollars per answered request over the window (the served model's real usage times its prices),
each tier's expected dollars and token counts.

The token windows are per replica (the score windows of online calibration are shared through
Redis, these are not): replicas behind one load balancer see the same mix of traffic, so their
means differ by sampling noise only.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge

from gateway.calibration_online import CalibrationConfig
from gateway.config import ModelConfig
from gateway.cost import price_usd
from gateway.policy_config import ExpectedTokens, PolicyConfig
from gateway.tiers import Tiers
from gateway.types import Usage

log = logging.getLogger(__name__)

#: Answered requests a tier needs in a policy's window before it is priced at its own token means.
TIER_MIN_ANSWERS = 20

#: ``ferryman_gateway_cost_target_clamped`` values.
BELOW, WITHIN, ABOVE = -1, 0, 1


@dataclass(frozen=True)
class DollarTarget:
    """A dollar target converted for one request: the cost share and per-tier weights (top tier = 1)."""

    usd: float
    cost_share: float
    weights: tuple[float, ...]
    #: Expected dollars per request on each tier, cheapest first.
    tier_usd: tuple[float, ...]
    clamped: int = WITHIN


@dataclass
class _Window:
    """One policy's last answered requests: (served tier index, input tokens, output tokens, dollars)."""

    size: int
    warmup: ExpectedTokens
    tiers: int
    rows: deque[tuple[int, int, int, float]] = field(init=False)
    count: list[int] = field(init=False)
    tokens_in: list[int] = field(init=False)
    tokens_out: list[int] = field(init=False)
    usd: float = 0.0
    clamped: int = WITHIN

    def __post_init__(self) -> None:
        self.rows = deque()
        self.count, self.tokens_in, self.tokens_out = [0] * self.tiers, [0] * self.tiers, [0] * self.tiers

    def add(self, tier: int, tokens_in: int, tokens_out: int, usd: float) -> None:
        if len(self.rows) == self.size:
            old = self.rows.popleft()
            self._count(old, -1)
        row = (tier, tokens_in, tokens_out, usd)
        self.rows.append(row)
        self._count(row, 1)

    def _count(self, row: tuple[int, int, int, float], sign: int) -> None:
        tier, tokens_in, tokens_out, usd = row
        self.count[tier] += sign
        self.tokens_in[tier] += sign * tokens_in
        self.tokens_out[tier] += sign * tokens_out
        self.usd = max(0.0, self.usd + sign * usd)  # float residue never reads as a negative spend

    def tokens(self, min_samples: int) -> list[tuple[float, float]]:
        """(input, output) tokens each tier's requests are priced at, cheapest first (see the module docstring)."""
        n = len(self.rows)
        if n < min_samples or n == 0:
            return [(float(self.warmup.input), float(self.warmup.output))] * self.tiers
        pooled = (sum(self.tokens_in) / n, sum(self.tokens_out) / n)
        return [
            (self.tokens_in[i] / c, self.tokens_out[i] / c) if (c := self.count[i]) >= TIER_MIN_ANSWERS else pooled
            for i in range(self.tiers)
        ]

    def realised_usd(self) -> float | None:
        return self.usd / len(self.rows) if self.rows else None


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.target = Gauge(
            "ferryman_gateway_cost_target_usd",
            "cost_per_request_usd policies: the target mean cost per answered request in US dollars.",
            ["policy"],
            registry=registry,
        )
        self.realised = Gauge(
            "ferryman_gateway_cost_realised_usd",
            "cost_per_request_usd policies: mean cost of this replica's last calibration.window answered requests "
            "(their usage times the served model's prices), US dollars.",
            ["policy"],
            registry=registry,
        )
        self.expected = Gauge(
            "ferryman_gateway_cost_expected_usd",
            "cost_per_request_usd policies: the expected cost of a request on each tier at the learnt token counts.",
            ["policy", "tier"],
            registry=registry,
        )
        self.tokens = Gauge(
            "ferryman_gateway_cost_expected_tokens",
            "cost_per_request_usd policies: the token counts each tier's requests are priced at (input, output).",
            ["policy", "tier", "direction"],
            registry=registry,
        )
        self.clamped = Gauge(
            "ferryman_gateway_cost_target_clamped",
            "cost_per_request_usd policies: -1 the target is below the cheapest tier's expected cost (every request "
            "there), 1 above the top tier's (every request there), 0 within.",
            ["policy"],
            registry=registry,
        )


class DollarTargets:
    """Token windows of every ``cost_per_request_usd`` policy, and the conversion of its target."""

    def __init__(
        self,
        policies: Mapping[str, PolicyConfig],
        tiers: Tiers,
        models: Mapping[str, ModelConfig],
        cfg: CalibrationConfig,
        registry: CollectorRegistry,
    ) -> None:
        self.tiers = tiers
        self.min_samples = cfg.min_samples
        #: Each tier's first model: the price of the tier, as for ``cost_share`` and the rule.
        self._priced = tuple(models[t.models[0]] for t in tiers.ordered)
        self._targets = {p.name: p.cost_per_request_usd for p in policies.values() if p.cost_per_request_usd}
        self._windows = {
            name: _Window(cfg.window, policies[name].expected_tokens, len(tiers)) for name in self._targets
        }
        self.metrics = _Metrics(registry)
        for name, usd in self._targets.items():
            self.metrics.target.labels(name).set(usd)
            self.metrics.clamped.labels(name).set(WITHIN)
            self._publish(name)
            self.target(name)  # a target out of reach at the warm-up counts is said at start

    @staticmethod
    def wanted(policies: Mapping[str, PolicyConfig]) -> bool:
        return any(p.cost_per_request_usd is not None for p in policies.values())

    def observe(self, policy: str, served_tier: str, usage: Usage, usd: float) -> None:
        """An answered request of ``policy``: the tier that served it, its usage and what it cost."""
        window = self._windows.get(policy)
        if window is None or served_tier not in self.tiers:
            return
        window.add(self.tiers[served_tier].index, usage.prompt_tokens, usage.completion_tokens, usd)
        self._publish(policy)

    def tier_usd(self, policy: str) -> tuple[float, ...]:
        """The expected cost of one of ``policy``'s requests on each tier, cheapest first, US dollars."""
        tokens = self._windows[policy].tokens(self.min_samples)
        return tuple(price_usd(m, t_in, t_out) for m, (t_in, t_out) in zip(self._priced, tokens, strict=True))

    def realised_usd(self, policy: str) -> float | None:
        """Mean cost of ``policy``'s answered requests in the window (None before the first)."""
        return self._windows[policy].realised_usd()

    def target(self, policy: str) -> DollarTarget:
        """``policy``'s dollar target as the cost share and weights online calibration meets (clamped, logged)."""
        usd = self._targets[policy]
        costs = self.tier_usd(policy)
        if costs[-1] <= 0:  # providers that report no tokens: price at the warm-up counts
            warm = self._windows[policy].warmup
            costs = tuple(price_usd(m, warm.input, warm.output) for m in self._priced)
        top, low = costs[-1], min(costs)
        state = BELOW if usd < low else ABOVE if usd > top else WITHIN
        window = self._windows[policy]
        if state != window.clamped:
            self._say(policy, usd, costs, state)
            window.clamped = state
            self.metrics.clamped.labels(policy).set(state)
        share = min(top, max(low, usd)) / top
        return DollarTarget(usd, share, tuple(c / top for c in costs), costs, state)

    def _basis(self, policy: str) -> str:
        """What the tiers' expected costs are priced at: the warm-up's token counts or the learnt ones."""
        window = self._windows[policy]
        if len(window.rows) < self.min_samples:
            warm = window.warmup
            return (
                f"priced at expected_tokens, {warm.input} input and {warm.output} output tokens, until "
                f"{self.min_samples} answers are seen"
            )
        return f"priced at the last {len(window.rows)} answers' token counts"

    def _say(self, policy: str, usd: float, costs: tuple[float, ...], state: int) -> None:
        names = self.tiers.names
        priced = ", ".join(f"{n} ${c:.6f}" for n, c in zip(names, costs, strict=True))
        priced += f", {self._basis(policy)}"
        if state == WITHIN:
            log.info(
                "policy %s: cost_per_request_usd $%.6f is within the tiers' expected costs again (%s)",
                policy,
                usd,
                priced,
            )
        elif state == BELOW:
            log.warning(
                "policy %s: cost_per_request_usd $%.6f is below the cheapest tier's expected cost per request (%s): "
                "every request goes to the cheapest tier and spends more than the target",
                policy,
                usd,
                priced,
            )
        else:
            log.warning(
                "policy %s: cost_per_request_usd $%.6f is above the top tier's expected cost per request (%s): "
                "every request goes to the top tier and spends less than the target",
                policy,
                usd,
                priced,
            )

    def _publish(self, policy: str) -> None:
        window, m = self._windows[policy], self.metrics
        tokens = window.tokens(self.min_samples)
        for name, model, (t_in, t_out) in zip(self.tiers.names, self._priced, tokens, strict=True):
            m.expected.labels(policy, name).set(price_usd(model, t_in, t_out))
            m.tokens.labels(policy, name, "input").set(t_in)
            m.tokens.labels(policy, name, "output").set(t_out)
        realised = window.realised_usd()
        if realised is not None:
            m.realised.labels(policy).set(realised)


__all__ = ["TIER_MIN_ANSWERS", "DollarTarget", "DollarTargets"]
