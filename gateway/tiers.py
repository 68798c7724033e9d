"""Tiers: an ordered list of fallback chains, from the cheapest to the most capable, and the routing rule.

A tier is a fallback chain of configured models plus the model identity the routers were trained
on that it stands for (``router_model``: the scorer's ``strong_model`` / ``weak_model``). Two forms
are accepted in the configuration (``tiers:``):

- the two-tier mapping ``{strong: {...}, weak: {...}}`` (unchanged from the first versions), and
- an ordered list ``[{name, models, router_model}, ...]``, cheapest first, of any length >= 2.

The routing rule (:class:`TierRule`): for every tier ``i`` below the top one the router gives
``p_i``, the predicted probability that the top tier's model beats tier ``i``'s
(``Score(strong=top.router_model, weak=tier_i.router_model)``), and the policy gives one threshold
``θ`` (fixed, or calibrated: ``gateway.calibration_online``). Two rules (``routing.tier_rule``):

- ``cheapest``: the cheapest tier with ``p_i < θ``, else the top tier (the rule the issue
  sketched: the cheapest tier the router predicts to be good enough);
- ``cost_aware`` (default): each lower tier gets the threshold ``t_i = 0.5 + (θ - 0.5) * r_i``,
  ``r_i = (1 - c_i) / (1 - c_0)`` its saving against the top tier relative to the cheapest tier's
  (``c``: the tiers' prices relative to the top's), and the request goes to the tier furthest
  below its threshold (``argmin p_i - t_i``; the top counts 0 and wins ties, as ``score >= θ``
  does with two tiers; between lower tiers a tie goes to the cheaper). A
  tier's allowance of predicted loss grows with the money it saves, and a cheap tier must beat
  the next one up by more than its small saving: at low budgets the middle tier is used before
  the top one, which with list prices (the top tier ~10x the middle) buys far more quality.

With two tiers both rules are the original one (``score >= θ`` goes strong): ``r_0 = 1``.

Operating points (:class:`OperatingPoint`, a policy's ``operating_points``): instead of one
threshold, a list of calibrated points, each a policy threshold or a single tier, with its mean
cost on graded calibration prompts; a ``cost_share`` target is met by sending each request to
one of the two points around it at random (:func:`mix`). On the upper concave hull of a router's
curve (single tiers included) that is never below random mixing of the tiers on the calibration
prompts; ``ferryman calibrate points`` fits them on an operator's graded prompts and, like
``ferryman eval --suite tiers``, measures them on prompts they were not fitted on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gateway.errors import ConfigError
from gateway.types import Tier

if TYPE_CHECKING:
    from gateway.config import ModelConfig

#: Names of the two-tier form; also accepted as aliases of the top / cheapest tier of any config.
STRONG, WEAK = "strong", "weak"


@dataclass(frozen=True)
class TierConfig:
    """One tier: an ordered fallback chain of models and the router model identity it stands for."""

    name: str
    models: tuple[str, ...]
    #: The scorer's strong_model / weak_model this tier stands for ("" = the router's default, two tiers only).
    router_model: str = ""
    #: Position from the cheapest (0) to the top (len - 1).
    index: int = 0


class Tiers(Mapping[str, TierConfig]):
    """The configured tiers, cheapest first; a read-only mapping by name, in that order."""

    def __init__(self, tiers: Sequence[TierConfig]) -> None:
        if len(tiers) < 2:
            raise ValueError("at least two tiers are needed")
        self.ordered: tuple[TierConfig, ...] = tuple(tiers)
        self._by_name = {t.name: t for t in self.ordered}
        self._model_tier = {m: t.name for t in self.ordered for m in t.models}

    # Mapping
    def __getitem__(self, name: str) -> TierConfig:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self.ordered)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.ordered)

    @property
    def top(self) -> TierConfig:
        return self.ordered[-1]

    @property
    def bottom(self) -> TierConfig:
        return self.ordered[0]

    @property
    def lower(self) -> tuple[TierConfig, ...]:
        """Every tier below the top one (each gets one score per routed request)."""
        return self.ordered[:-1]

    def resolve(self, name: str) -> str | None:
        """A tier name, with ``strong`` / ``weak`` standing for the top / cheapest tier; None if unknown."""
        if name in self._by_name:
            return name
        return {STRONG: self.top.name, WEAK: self.bottom.name}.get(name)

    def kind(self, name: str) -> Tier:
        """The tier's class in the protocol: STRONG (top), WEAK (cheapest) or INTERMEDIATE."""
        index = self._by_name[name].index
        if index == len(self.ordered) - 1:
            return Tier.STRONG
        return Tier.WEAK if index == 0 else Tier.INTERMEDIATE

    def of_model(self, model: str) -> str | None:
        """The tier whose chain contains ``model``, if any."""
        return self._model_tier.get(model)

    def chain(self, name: str, fallback_to_other_tiers: bool) -> tuple[str, ...]:
        """The models to try for tier ``name``: its chain, then (when asked) the more capable tiers
        upwards, then the cheaper ones downwards (quality is kept before money is)."""
        index = self._by_name[name].index
        chain = self.ordered[index].models
        if fallback_to_other_tiers:
            up = self.ordered[index + 1 :]
            down = self.ordered[:index][::-1]
            chain = chain + tuple(m for t in (*up, *down) for m in t.models)
        return chain

    def partner(self, name: str) -> tuple[str, bool]:
        """The tier a shadow comparison asks besides ``name`` and whether ``name`` is the stronger of the two.

        A cheaper tier is compared with the top tier (the question every routing decision asks:
        would the top tier have done better?); the top tier with the tier just below it (the closest call).
        """
        index = self._by_name[name].index
        if index == len(self.ordered) - 1:
            return self.ordered[-2].name, True
        return self.top.name, False

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """(strong_model, weak_model) of every score a routed request needs: top vs each lower tier."""
        return tuple((self.top.router_model, t.router_model) for t in self.lower)


RuleKind = Literal["cost_aware", "cheapest"]
RULES: tuple[RuleKind, ...] = ("cost_aware", "cheapest")


def choose(scores: Sequence[float], thresholds: Sequence[float]) -> int:
    """The ``cheapest`` rule's choice: the cheapest tier whose score is below its threshold, else the top."""
    for i, (score, threshold) in enumerate(zip(scores, thresholds, strict=True)):
        if score < threshold:
            return i
    return len(scores)


def choose_margin(scores: Sequence[float], thresholds: Sequence[float]) -> int:
    """The ``cost_aware`` rule's choice: the tier furthest below its threshold; the top counts 0 and wins a tie
    (``score >= threshold`` goes up, as with two tiers), between lower tiers a tie goes to the cheaper."""
    best, margin = len(scores), 0.0
    for i, (score, threshold) in enumerate(zip(scores, thresholds, strict=True)):
        m = score - threshold
        if m < margin:
            best, margin = i, m
    return best


@dataclass(frozen=True)
class TierRule:
    """How one policy threshold and a request's scores pick a tier (see the module docstring)."""

    kind: RuleKind
    #: Per lower tier, cheapest first: ``(1 - c_i) / (1 - c_0)`` (``cost_aware``) or 1 (``cheapest``).
    ratios: tuple[float, ...]

    @classmethod
    def build(cls, kind: RuleKind, costs: Sequence[float]) -> TierRule:
        """``costs``: every tier's price relative to the top tier's, cheapest first (strictly rising for cost_aware)."""
        lower = len(costs) - 1
        if kind == "cheapest" or lower == 1:
            return cls(kind, (1.0,) * lower)
        saving = [1.0 - c / costs[-1] for c in costs[:-1]]
        return cls(kind, tuple(s / saving[0] for s in saving))

    def thresholds(self, theta: float) -> tuple[float, ...]:
        """Each lower tier's threshold for the policy threshold ``theta``."""
        return tuple(0.5 + (theta - 0.5) * r for r in self.ratios)

    def choose(self, scores: Sequence[float], thresholds: Sequence[float]) -> int:
        return choose(scores, thresholds) if self.kind == "cheapest" else choose_margin(scores, thresholds)

    def top_cut(self, scores: Sequence[float]) -> float:
        """The largest ``theta`` that still sends these scores to the top tier (both rules: every ``p_i >= t_i``)."""
        return 0.5 + min((p - 0.5) / r for p, r in zip(scores, self.ratios, strict=True))


#: The thresholds of a tier point: every lower tier's is below any score (never chosen) but the
#: point's tier's, above any score (always chosen); scores are probabilities, so both rules agree.
NEVER, ALWAYS = -1.0, 2.0


@dataclass(frozen=True)
class OperatingPoint:
    """One calibrated operating point of a policy: a policy threshold of the rule, or one tier for every request.

    ``cost`` is its mean cost per request relative to the top tier's, measured offline on graded
    calibration prompts (``ferryman calibrate points`` fits them; ``ferryman eval --suite tiers`` prints them too).
    """

    cost: float
    threshold: float | None = None
    #: Index of the tier every request goes to (cheapest 0), instead of a threshold.
    tier: int | None = None

    def thresholds(self, rule: TierRule) -> tuple[float, ...]:
        """The per-tier thresholds this point routes with (a tier point: :data:`NEVER` / :data:`ALWAYS`)."""
        if self.tier is None:
            assert self.threshold is not None
            return rule.thresholds(self.threshold)
        return tuple(ALWAYS if i == self.tier else NEVER for i in range(len(rule.ratios)))


def mix(points: Sequence[OperatingPoint], cost_share: float) -> tuple[OperatingPoint, OperatingPoint, float]:
    """The two neighbouring points around ``cost_share`` and the probability of the costlier one.

    Sending each request to the costlier point with that probability and to the cheaper one
    otherwise costs ``cost_share`` on average (on the calibration prompts): the points of the
    upper concave hull of a router's curve, mixed at random, reach every cost in between.
    ``points`` are sorted by strictly rising cost; ``cost_share`` lies within their range.
    """
    for low, high in itertools.pairwise(points):
        if cost_share <= high.cost:
            return low, high, max(0.0, (cost_share - low.cost) / (high.cost - low.cost))
    return points[-2], points[-1], 1.0


def relative_costs(tiers: Tiers, models: Mapping[str, ModelConfig]) -> tuple[float, ...]:
    """Each tier's price (its first model's input plus output price) relative to the top tier's, cheapest first."""
    prices = [models[t.models[0]].price_in_per_mtok + models[t.models[0]].price_out_per_mtok for t in tiers.ordered]
    return tuple(p / prices[-1] if prices[-1] > 0 else 1.0 for p in prices)


# ---------------------------------------------------------------- parsing


def _chain(path: str, data: Any, models: Mapping[str, ModelConfig]) -> tuple[str, ...]:
    chain = data.get("models") if isinstance(data, Mapping) else None
    if not isinstance(chain, list) or not chain or not all(isinstance(m, str) for m in chain):
        raise ConfigError(f"{path}.models: a non-empty list of model names is required")
    for m in chain:
        if m not in models:
            raise ConfigError(f"{path}.models: {m!r} is not defined under models")
    if len(set(chain)) != len(chain):
        raise ConfigError(f"{path}.models: duplicate model names")
    return tuple(chain)


def _fields(path: str, data: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)}")
    return data


def _router_model(path: str, data: Mapping[str, Any]) -> str:
    value = data.get("router_model", "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{path}.router_model: expected str, got {value!r}")
    return value


def parse_tiers(data: Any, models: Mapping[str, ModelConfig]) -> Tiers:
    """Validate the ``tiers:`` section: the two-tier mapping or an ordered list, cheapest first."""
    tiers: list[TierConfig] = []
    if isinstance(data, Mapping):
        _fields("tiers", data, {STRONG, WEAK})
        for index, fixed in enumerate((WEAK, STRONG)):
            path = f"tiers.{fixed}"
            if fixed not in data:
                raise ConfigError(f"{path}.models: a non-empty list of model names is required")
            entry = _fields(path, data[fixed], {"models", "router_model"})
            tiers.append(TierConfig(fixed, _chain(path, entry, models), _router_model(path, entry), index))
    elif isinstance(data, list):
        if len(data) < 2:
            raise ConfigError("tiers: at least two tiers are needed, cheapest first")
        for index, raw in enumerate(data):
            path = f"tiers[{index}]"
            entry = _fields(path, raw, {"name", "models", "router_model"})
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip() or not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"{path}.name: required, letters, digits, '-' and '_' only")
            tiers.append(TierConfig(name, _chain(path, entry, models), _router_model(path, entry), index))
        names = [t.name for t in tiers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"tiers: tier name(s) {', '.join(dup)} used twice")
        if len(tiers) > 2:
            missing = [f"tiers[{t.index}] ({t.name})" for t in tiers if not t.router_model]
            if missing:
                raise ConfigError(
                    f"{', '.join(missing)}: router_model is required with more than two tiers "
                    "(the scorer's model name the tier stands for; see ListRouters for a router's models)"
                )
        rms = [t.router_model for t in tiers if t.router_model]
        dup = sorted({m for m in rms if rms.count(m) > 1})
        if dup:
            raise ConfigError(f"tiers: router_model {', '.join(dup)} stands for two tiers")
    else:
        raise ConfigError("tiers: expected the mapping {strong, weak} or a list of tiers, cheapest first")
    seen: dict[str, str] = {}
    for t in tiers:
        for m in t.models:
            if m in seen:
                raise ConfigError(f"tiers: model(s) {m} are in both tiers {seen[m]} and {t.name}")
            seen[m] = t.name
    return Tiers(tiers)
