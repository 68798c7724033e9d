"""The ``policies:`` section: named policies, each a router plus one target (frozen, validated at start).

A policy names a router and exactly one of:

- ``threshold``: a fixed score threshold (every tier below the top uses it: ``gateway.tiers.choose``);
- ``strong_share``: the target share of requests sent to the top tier;
- ``tier_shares``: a target share per tier (``{name: share}``, every tier, summing to 1; needs
  ``calibration.online``);
- ``cost_share``: the target cost per request as a share of the top tier's (0.3 = on average 30 %
  of what sending every request to the top tier would cost, by the tiers' first models' prices;
  needs ``calibration.online``, unless the policy gives ``operating_points``);
- ``cost_per_request_usd``: the target mean cost per answered request in US dollars (needs
  ``calibration.online``; ``gateway.cost_target`` turns it into a ``cost_share`` at the token
  counts learnt from the policy's answered requests, starting from ``expected_tokens``).

``operating_points`` (with ``cost_share``): a router's calibrated operating points, cheapest
first, each ``{cost, threshold}`` (a policy threshold of ``routing.tier_rule``) or ``{cost, tier}``
(every request to that tier); ``cost`` is the point's mean cost per request relative to the top
tier's on graded calibration prompts. Each request goes to one of the two points around
``cost_share``, at random with the weights that average to it (``gateway.tiers.mix``): the upper
concave hull of a router's curve, which ``ferryman calibrate points`` fits on the operator's own
graded prompts and ``ferryman eval --suite tiers`` on arena-bench-v1 (docs/gateway.md, "Operating
points").

``sticky: true`` keeps the follow-up turns of a conversation on the tier its first turn got
(``gateway.sticky``). ``scorer_down_tier`` is where requests go when no score can be had.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from gateway.tiers import RULES, STRONG, WEAK, OperatingPoint, RuleKind, Tiers, relative_costs

if TYPE_CHECKING:
    from gateway.config import _Reader

log = logging.getLogger(__name__)

#: Tolerance on the sum of ``tier_shares``.
SHARE_SUM_TOLERANCE = 1e-6

#: A policy's target fields (it sets exactly one) and the fields that only go with one of them: what a new
#: target pasted under a policy replaces (``ferryman calibrate points``).
TARGET_FIELDS = (
    "threshold",
    "strong_share",
    "tier_shares",
    "cost_share",
    "cost_per_request_usd",
    "expected_tokens",
    "operating_points",
)


@dataclass(frozen=True)
class ExpectedTokens:
    """A ``cost_per_request_usd`` policy's warm-up token counts per request (until live ones are learnt)."""

    input: int = 500
    output: int = 250


@dataclass(frozen=True)
class PolicyConfig:
    """A named policy: which router, and one target (a threshold, a top-tier share, per-tier shares, a cost)."""

    name: str
    router: str
    threshold: float | None = None
    strong_share: float | None = None
    #: Target share per tier name, every tier, summing to 1.
    tier_shares: Mapping[str, float] | None = None
    #: Target cost per request as a share of the top tier's cost.
    cost_share: float | None = None
    #: Tier used when the scorer is unreachable or too slow (a tier name).
    scorer_down_tier: str = STRONG
    #: Keep a conversation's follow-up turns on the tier of its first turn.
    sticky: bool = False
    #: Per-tier weights of ``cost_share`` (price of the tier's first model relative to the top's), cheapest first.
    cost_weights: tuple[float, ...] = field(default=(), compare=False)
    #: Calibrated operating points mixed at random to meet ``cost_share`` (empty: online calibration).
    operating_points: tuple[OperatingPoint, ...] = ()
    #: Target mean cost per answered request in US dollars (``gateway.cost_target`` converts it to a cost share).
    cost_per_request_usd: float | None = None
    #: Token counts per request assumed until the policy's answered requests give live ones.
    expected_tokens: ExpectedTokens = ExpectedTokens()

    @property
    def targets(self) -> int:
        return sum(
            x is not None
            for x in (self.threshold, self.strong_share, self.tier_shares, self.cost_share, self.cost_per_request_usd)
        )


def tier_field(r: _Reader, key: str, default: str, tiers: Tiers) -> str:
    """A tier name (``strong`` / ``weak`` stand for the top / cheapest tier), resolved to the configured name."""
    value = r.get(key, str, default)
    resolved = tiers.resolve(value)
    if resolved is None:
        if tiers.names == (WEAK, STRONG):
            raise ConfigError(f"{r._p(key)}: must be 'strong' or 'weak', got {value!r}")
        raise ConfigError(
            f"{r._p(key)}: must be a tier name ({', '.join(tiers.names)}), 'strong' (the top tier) "
            f"or 'weak' (the cheapest), got {value!r}"
        )
    return resolved


def rule_field(r: _Reader, tiers: Tiers, models: Mapping[str, Any]) -> RuleKind:
    """``routing.tier_rule``; cost_aware with more than two tiers needs prices rising towards the top."""
    value = r.get("tier_rule", str, "cost_aware")
    if value not in RULES:
        raise ConfigError(f"{r._p('tier_rule')}: must be one of {', '.join(RULES)}, got {value!r}")
    costs = relative_costs(tiers, models)
    if value == "cost_aware" and len(tiers) > 2 and any(b <= a for a, b in itertools.pairwise(costs)):
        raise ConfigError(
            f"{r._p('tier_rule')}: cost_aware needs each tier's first model to cost more than the tier below's "
            "(price in + out); order the tiers cheapest first or use tier_rule: cheapest"
        )
    return value  # type: ignore[return-value]


def _tier_shares(r: _Reader, tiers: Tiers) -> dict[str, float] | None:
    raw = r.raw("tier_shares")
    if raw is None:
        return None
    path = r._p("tier_shares")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of tier name to share")
    shares: dict[str, float] = {}
    for name, value in raw.items():
        resolved = tiers.resolve(str(name))
        if resolved is None:
            raise ConfigError(f"{path}: {name!r} is not a tier ({', '.join(tiers.names)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(f"{path}.{name}: must be a number in [0, 1], got {value!r}")
        shares[resolved] = float(value)
    missing = [n for n in tiers.names if n not in shares]
    if missing:
        raise ConfigError(f"{path}: every tier needs a share; missing {', '.join(missing)}")
    total = sum(shares.values())
    if not math.isclose(total, 1.0, abs_tol=SHARE_SUM_TOLERANCE):
        raise ConfigError(f"{path}: shares must sum to 1, got {total:.6g}")
    return {n: shares[n] for n in tiers.names}


def _operating_points(r: _Reader, tiers: Tiers) -> tuple[OperatingPoint, ...]:
    raw = r.raw("operating_points")
    if raw is None:
        return ()
    path = r._p("operating_points")
    if not isinstance(raw, list) or len(raw) < 2:
        raise ConfigError(f"{path}: expected a list of at least two points, cheapest first")
    points: list[OperatingPoint] = []
    for i, item in enumerate(raw):
        pr = type(r)(item, f"{path}[{i}]")
        cost = pr.unit("cost")
        threshold = pr.get("threshold", float)
        tier_name = pr.get("tier", str)
        pr.finish()
        if cost is None:
            raise ConfigError(f"{path}[{i}].cost: required (the point's cost relative to the top tier's, in [0, 1])")
        if (threshold is None) == (tier_name is None):
            raise ConfigError(f"{path}[{i}]: set exactly one of threshold or tier")
        tier: int | None = None
        if tier_name is not None:
            resolved = tiers.resolve(tier_name)
            if resolved is None:
                raise ConfigError(f"{path}[{i}].tier: {tier_name!r} is not a tier ({', '.join(tiers.names)})")
            tier = tiers[resolved].index
        if points and cost <= points[-1].cost:
            raise ConfigError(f"{path}[{i}].cost: costs must rise strictly, cheapest point first")
        points.append(OperatingPoint(cost, threshold, tier))
    return tuple(points)


def _usd(r: _Reader) -> float | None:
    value = r.get("cost_per_request_usd", float)
    if value is not None and value <= 0:
        raise ConfigError(f"{r._p('cost_per_request_usd')}: must be > 0 (US dollars per request), got {value}")
    return value


def _expected_tokens(r: _Reader) -> ExpectedTokens | None:
    raw = r.raw("expected_tokens")
    if raw is None:
        return None
    er = type(r)(raw, r._p("expected_tokens"))
    d = ExpectedTokens
    tokens = ExpectedTokens(er.positive("input", int, d.input), er.non_negative("output", int, d.output))
    er.finish()
    return tokens


def _usd_problem(pol: PolicyConfig, tiers: Tiers, models: Mapping[str, Any], online: bool) -> str | None:
    """Why a ``cost_per_request_usd`` policy cannot work, as ``<field>: <why>`` (None: it can)."""
    if pol.cost_share is not None:
        return "cost_per_request_usd: set it (dollars) or cost_share (relative to the top tier's cost), not both"
    if pol.operating_points:
        return (
            "operating_points: their costs are relative to the top tier's list price; use them with cost_share, "
            "not cost_per_request_usd"
        )
    if not online:
        return "cost_per_request_usd: met by calibrating thresholds on live traffic; set calibration.online: true"
    top = models[tiers.top.models[0]]
    if top.price_in_per_mtok + top.price_out_per_mtok <= 0:
        return (
            f"cost_per_request_usd: needs prices, and the top tier's first model {top.name!r} has none "
            f"(models.{top.name}.price_in_per_mtok / price_out_per_mtok)"
        )
    return None


def parse_policies(
    raw: Any,
    top: _Reader,
    *,
    tiers: Tiers,
    models: Mapping[str, Any],
    default_router: str,
    default_down_tier: str,
    online_calibration: bool,
    tier_rule: RuleKind = "cost_aware",
) -> dict[str, PolicyConfig]:
    """Validate the ``policies:`` mapping (``top`` is the top-level reader, used to make section readers)."""
    reader = type(top)
    pol_raw = raw or {}
    if not isinstance(pol_raw, Mapping):
        raise ConfigError("policies: expected a mapping of policy name to settings")
    weights = relative_costs(tiers, models)
    policies: dict[str, PolicyConfig] = {}
    for pname, pdata in pol_raw.items():
        pname = str(pname)
        if pname in models or pname.startswith("router-"):
            raise ConfigError(f"policies.{pname}: name clashes with a model name or the router-<r>-<t> form")
        pr = reader(pdata, f"policies.{pname}")
        pol = PolicyConfig(
            name=pname,
            router=pr.get("router", str, default_router),
            threshold=pr.unit("threshold"),
            strong_share=pr.unit("strong_share"),
            tier_shares=_tier_shares(pr, tiers),
            cost_share=pr.unit("cost_share"),
            scorer_down_tier=tier_field(pr, "scorer_down_tier", default_down_tier, tiers),
            sticky=pr.get("sticky", bool, False),
            cost_weights=weights,
            operating_points=_operating_points(pr, tiers),
            cost_per_request_usd=_usd(pr),
            expected_tokens=_expected_tokens(pr) or ExpectedTokens(),
        )
        pr.finish()  # a mistyped field first: it is why the checks below would fail
        if pol.cost_per_request_usd is not None:
            why = _usd_problem(pol, tiers, models, online_calibration)
            if why is not None:
                raise ConfigError(f"policies.{pname}.{why}")
        elif pr.data.get("expected_tokens") is not None:
            raise ConfigError(f"policies.{pname}.expected_tokens: only used with cost_per_request_usd")
        if pol.targets != 1:
            raise ConfigError(
                f"policies.{pname}: set exactly one of threshold or strong_share "
                "(or, with calibration.online, tier_shares, cost_share or cost_per_request_usd)"
            )
        if pol.tier_shares is not None and len(tiers) > 2 and tier_rule != "cheapest":
            raise ConfigError(
                f"policies.{pname}.tier_shares: per-tier shares need routing.tier_rule: cheapest "
                "(one threshold per tier); with cost_aware use strong_share or cost_share"
            )
        points = pol.operating_points
        if points and pol.cost_share is None:
            raise ConfigError(f"policies.{pname}.operating_points: need a cost_share target to mix them for")
        if points and pol.cost_share is not None and not points[0].cost <= pol.cost_share <= points[-1].cost:
            raise ConfigError(
                f"policies.{pname}.cost_share: {pol.cost_share} is outside the operating points' costs "
                f"({points[0].cost:.4g} to {points[-1].cost:.4g})"
            )
        if (pol.tier_shares is not None or (pol.cost_share is not None and not points)) and not online_calibration:
            raise ConfigError(
                f"policies.{pname}: tier_shares and cost_share are calibrated on live traffic; "
                "set calibration.online: true (or give cost_share calibrated operating_points)"
            )
        if pol.cost_share is not None and pol.cost_share < weights[0]:
            raise ConfigError(
                f"policies.{pname}.cost_share: {pol.cost_share} is below the cheapest tier's own cost share "
                f"({weights[0]:.4g} of the top tier's, by the tiers' first models' prices)"
            )
        if pol.strong_share is not None and len(tiers) > 2 and not online_calibration:
            log.warning(
                "policies.%s: strong_share %.2f with %d tiers and calibration.online off: the router's table maps "
                "shares to thresholds for its default pair on reference prompts, not for this rule over %d pairs, "
                "so the realised top-tier share may be far from the target (set calibration.online: true)",
                pname,
                pol.strong_share,
                len(tiers),
                len(tiers) - 1,
            )
        policies[pname] = pol
    return policies
