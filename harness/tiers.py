"""Gateway configurations with three tiers, over the fake providers and the test routers' models.

The test routers (``harness.scorer``) know four models; three of them stand for the tiers. Their
untrained weights rank the models by a bias in manifest order (GPT-4-1106 first, GPT-3.5-turbo-1106
last), so the tiers follow that ranking: ``small`` is GPT-3.5-turbo-1106, ``medium`` Mixtral and
``large`` GPT-4-1106, each served by fake providers with made-up prices (per 1M tokens, in / out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.fake_provider import FakeProvider
from harness.gateway import config_dict
from harness.scorer import STRONG, WEAK

SMALL = "gpt-3.5-turbo-1106"
#: tier name -> (fake provider names serving it, router model, price in, price out)
THREE_TIERS: dict[str, tuple[tuple[str, ...], str, float, float]] = {
    "small": (("weak-openai",), SMALL, 0.2, 0.2),
    "medium": (("weak-anthropic",), WEAK, 1.0, 2.0),
    "large": (("strong-openai", "strong-anthropic"), STRONG, 10.0, 30.0),
}


def three_tier_tiers() -> list[dict[str, Any]]:
    """The ``tiers:`` list (cheapest first)."""
    return [{"name": n, "models": list(models), "router_model": rm} for n, (models, rm, _, _) in THREE_TIERS.items()]


def three_tier_dict(fakes: Mapping[str, FakeProvider], **kwargs: Any) -> dict[str, Any]:
    """``harness.gateway.config_dict`` with the three tiers, their prices and 3-tier policies."""
    prices = {
        m: {"price_in_per_mtok": p_in, "price_out_per_mtok": p_out}
        for models, _, p_in, p_out in THREE_TIERS.values()
        for m in models
    }
    given = kwargs.pop("model_overrides", {})
    overrides = {m: prices[m] | dict(given.get(m, {})) for m in prices}
    policies = kwargs.pop("policies", None)
    data = config_dict(fakes, model_overrides=overrides, **kwargs)
    data["tiers"] = three_tier_tiers()
    data["policies"] = policies or {
        "ferryman-balanced": {"router": "mf", "strong_share": 0.3},
        "three-way": {"router": "mf", "threshold": 0.5},
        "fixed-half": {"router": "random", "threshold": 0.5},
    }
    return data
