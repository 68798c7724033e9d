"""Units of N-tier routing: the rule, chains, partners, the calibration rules, LLM ratings, conversation keys."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest

from gateway.calibration_online import (
    CalibrationConfig,
    OnlineCalibration,
    Target,
    cost_thresholds,
    mean_cost,
    step_towards,
    target_thresholds,
    tier_share_thresholds,
    top_share_thresholds,
)
from gateway.routers.llm_judge import parse_rating, win_rates
from gateway.sticky import conversation_key, is_follow_up
from gateway.tiers import TierConfig, TierRule, Tiers, choose, choose_margin
from gateway.types import ChatRequest, Message, RoutingOverrides, Tier

THREE = Tiers(
    [TierConfig("s", ("s1",), "S", 0), TierConfig("m", ("m1", "m2"), "M", 1), TierConfig("l", ("l1",), "L", 2)]
)


def test_choose_the_cheapest_tier_below_its_threshold():
    assert choose((0.2, 0.1), (0.5, 0.5)) == 0
    assert choose((0.7, 0.3), (0.5, 0.5)) == 1
    assert choose((0.7, 0.6), (0.5, 0.5)) == 2
    assert choose((0.5,), (0.5,)) == 1  # two tiers: score >= threshold goes to the top, as always
    assert choose((0.49,), (0.5,)) == 0


def test_chains_partners_kinds_and_aliases():
    assert THREE.chain("m", True) == ("m1", "m2", "l1", "s1")
    assert THREE.chain("s", True) == ("s1", "m1", "m2", "l1")
    assert THREE.chain("l", True) == ("l1", "m1", "m2", "s1")
    assert THREE.chain("m", False) == ("m1", "m2")
    assert THREE.partner("s") == ("l", False) and THREE.partner("m") == ("l", False)
    assert THREE.partner("l") == ("m", True)
    assert [THREE.kind(n) for n in THREE] == [Tier.WEAK, Tier.INTERMEDIATE, Tier.STRONG]
    assert THREE.resolve("strong") == "l" and THREE.resolve("weak") == "s" and THREE.resolve("x") is None
    assert THREE.pairs() == (("L", "S"), ("L", "M"))
    assert THREE.of_model("m2") == "m" and THREE.of_model("nope") is None


def _window(n: int, lower: int, seed: int = 0) -> list[tuple[float, ...]]:
    rng = random.Random(seed)
    return [tuple(rng.random() for _ in range(lower)) for _ in range(n)]


COSTS = (0.01, 0.075, 1.0)
RULES = {"cheapest": TierRule.build("cheapest", COSTS), "cost_aware": TierRule.build("cost_aware", COSTS)}


def _shares(window, thresholds, tiers: int, rule: TierRule = RULES["cheapest"]) -> list[float]:
    counts = [0] * tiers
    for row in window:
        counts[rule.choose(row, thresholds)] += 1
    return [c / len(window) for c in counts]


def test_cost_aware_rule():
    rule = RULES["cost_aware"]
    assert rule.ratios[0] == 1.0 and rule.ratios[1] == pytest.approx((1 - 0.075) / (1 - 0.01))
    t = rule.thresholds(0.7)
    assert t[0] == pytest.approx(0.7) and 0.5 < t[1] < 0.7
    # the cheap tier is below its threshold, but the middle one is further below: the middle one wins
    assert choose((0.65, 0.3), t) == 0 and choose_margin((0.65, 0.3), t) == 1
    assert rule.choose((0.8, 0.75), t) == 2 and rule.choose((0.2, 0.6), t) == 0
    # two tiers: both rules are the original one
    two = TierRule.build("cost_aware", (0.1, 1.0))
    for p in (0.2, 0.5, 0.69, 0.7, 0.9):
        assert two.choose((p,), two.thresholds(0.7)) == choose((p,), (0.7,))
    # top_cut: the largest threshold that still goes to the top
    for row in _window(200, 2, seed=4):
        cut = rule.top_cut(row)
        assert rule.choose(row, rule.thresholds(cut - 1e-12)) == 2  # (rounding: a ulp either way)
        assert rule.choose(row, rule.thresholds(cut + 1e-9)) != 2


@pytest.mark.parametrize("kind", ["cheapest", "cost_aware"])
@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_top_share_thresholds_send_exactly_that_share_to_the_top(share, kind):
    window = _window(1000, 2)
    thresholds = top_share_thresholds(window, share, RULES[kind])
    assert _shares(window, thresholds, 3, RULES[kind])[2] == pytest.approx(share, abs=1e-9)


_TABLE = (0.5,)
_LOW = [i / 1000 for i in range(100)]  # one version's scores in [0, 0.1)
_HIGH = [0.9 + i / 1000 for i in range(100)]  # another's in [0.9, 1.0)

Feed = Callable[[str, list[float]], tuple[tuple[float, ...], str] | None]


def _versioned_calibration() -> tuple[OnlineCalibration, Feed]:
    """Online calibration of router mf for policy p (two tiers, 30 % strong), and ``feed(version, scores)``:
    asks for thresholds then observes each score as that version's; the last thresholds asked for."""
    from prometheus_client import CollectorRegistry

    rule = TierRule.build("cost_aware", (0.2, 1.0))
    two = Tiers([TierConfig("weak", ("w",), "W", 0), TierConfig("strong", ("s",), "S", 1)])
    cfg = CalibrationConfig(online=True, window=200, min_samples=50, update_every=10, max_step=1.0)
    cal = OnlineCalibration(cfg, two, rule, CollectorRegistry(), None)
    target = Target("strong_share", (0.3,))

    def feed(version: str, scores: list[float]) -> tuple[tuple[float, ...], str] | None:
        got = None
        for s in scores:
            got = cal.thresholds("p", "mf", target, _TABLE, own_target=True, version=version)
            cal.observe("p", "mf", (s,), 0, version)
        return got

    return cal, feed


def test_each_artifact_version_calibrates_on_its_own_window():
    """A version's thresholds come from its own scores; only the two versions used last keep their windows."""
    cal, feed = _versioned_calibration()
    assert feed("v1", _LOW)[1] == "online"
    assert feed("v2", [0.95]) == (_TABLE, "artifact")  # not v1's learnt threshold (~0.07)
    thresholds, source = feed("v2", _HIGH)
    assert source == "online" and 0.9 <= thresholds[0] < 1.0
    assert feed("v1", [0.05])[0][0] < 0.1  # v1 kept
    feed("v3", _HIGH[:5])
    assert sorted(k[2] for k in cal._states) == ["v1", "v3"]  # v2, asked for longest ago, dropped


def test_the_versions_kept_are_the_two_used_last():
    """After a rollback (v1 -> v2 -> v1) and a canary of v3 mixed with v1, v1 keeps its window: the version
    left out is v2, used longest ago. Was: kept by first use, so v1 (first seen) was dropped at v3's first
    request, its online thresholds lost mid-rollout (back to its table until the window refilled), and
    ``applied`` reported the rolled-back v2."""
    cal, feed = _versioned_calibration()
    assert feed("v1", _LOW)[1] == "online"
    feed("v2", _HIGH)
    rolled_back = feed("v1", _LOW[:5])  # the rollback: v1 again
    assert rolled_back is not None and rolled_back[1] == "online"
    assert cal.applied("p", "mf")[0] == rolled_back[0]  # the version serving now, not v2
    for s in _HIGH[:5]:  # a canary of v3, mixed with v1
        feed("v3", [s])
        assert feed("v1", [_LOW[0]]) == rolled_back
    assert sorted(k[2] for k in cal._states) == ["v1", "v3"]


def test_top_share_with_two_tiers_is_the_offline_rule():
    """The same threshold ``ferryman calibrate`` writes into artifacts (lab.eval.calibrate.thresholds)."""
    from lab.eval.calibrate import thresholds as offline

    scores = [r[0] for r in _window(300, 1, seed=3)]
    points = offline(scores, (0.1, 0.3, 0.7))
    rule = TierRule.build("cost_aware", (0.2, 1.0))
    for p in points:
        assert top_share_thresholds([(s,) for s in scores], p.strong_share, rule) == pytest.approx((p.threshold,))


@pytest.mark.parametrize("shares", [(0.5, 0.3, 0.2), (0.0, 0.0, 1.0), (0.2, 0.0, 0.8), (1 / 3, 1 / 3, 1 / 3)])
def test_tier_share_thresholds_meet_every_tiers_share(shares):
    window = _window(900, 2, seed=1)
    thresholds = tier_share_thresholds(window, shares)
    assert _shares(window, thresholds, 3) == pytest.approx(list(shares), abs=1.5 / 900)


@pytest.mark.parametrize("kind", ["cheapest", "cost_aware"])
@pytest.mark.parametrize("cost", [0.05, 0.2, 0.5, 0.9])
def test_cost_threshold_is_the_most_top_tier_calls_within_the_budget(cost, kind):
    window = _window(500, 2, seed=2)
    rule = RULES[kind]
    thresholds = cost_thresholds(window, cost, COSTS, rule)
    assert mean_cost(window, thresholds, COSTS, rule) <= cost + 1e-12
    # a slightly lower policy threshold (more top-tier calls) would pass the budget
    theta = thresholds[0]
    assert mean_cost(window, rule.thresholds(theta - 1e-6), COSTS, rule) > cost


def test_target_thresholds_dispatch_and_bounded_steps():
    window = _window(200, 2)
    rule = RULES["cost_aware"]
    assert target_thresholds(window, Target("strong_share", (0.3,)), rule) == top_share_thresholds(window, 0.3, rule)
    assert step_towards((0.5, 0.5), (0.9, 0.45), 0.05) == pytest.approx((0.55, 0.45))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('{"rating": 4, "reason": "needs code"}', (4, "needs code")),
        ('Sure! {"rating": "5", "reason": "a proof\\nwith\\ttabs"} done', (5, "a proof with tabs")),
        ("3", (3, "")),
        ('{"rating": 9}', None),
        ('{"rating": true}', None),
        ("It is quite hard, I would say four.", None),
        ("", None),
        ('{"reason": "no rating"}', None),
    ],
)
def test_parse_rating(text, want):
    assert parse_rating(text) == want


def test_parse_rating_caps_the_reason():
    rating = parse_rating(json.dumps({"rating": 2, "reason": "x" * 500}))
    assert rating is not None and len(rating[1]) == 200


def test_win_rates_from_a_rating():
    assert win_rates(1, 2) == (0.0,) and win_rates(5, 2) == (1.0,) and win_rates(3, 2) == (0.5,)
    assert win_rates(3, 3) == (0.5, 0.0)  # halfway up the ladder: enough for the middle tier
    assert win_rates(5, 3) == (1.0, 1.0) and win_rates(1, 3) == (0.0, 0.0)
    assert win_rates(4, 3) == (0.75, 0.5)


def _req(*messages: tuple[str, str], user: str = "", conversation: str = "", tenant: str = "t1") -> ChatRequest:
    return ChatRequest(
        "p",
        tuple(Message(r, c) for r, c in messages),
        user=user,
        routing=RoutingOverrides(conversation_id=conversation),
        tenant=tenant,
    )


def test_conversation_keys():
    first = _req(("system", "Be brief."), ("user", "Plan a trip to Rome."))
    later = _req(
        ("system", "Be brief."), ("user", "Plan a trip to Rome."), ("assistant", "Day 1..."), ("user", "More?")
    )
    assert not is_follow_up(first) and is_follow_up(later)
    assert conversation_key(first, "p") == conversation_key(later, "p")
    assert conversation_key(first, "p") != conversation_key(first, "q")
    assert conversation_key(first, "p") != conversation_key(_req(("user", "Plan a trip to Rome.")), "p")
    assert conversation_key(first, "p") != conversation_key(
        _req(*[("system", "Be brief."), ("user", "Plan a trip to Rome.")], user="u2"), "p"
    )
    assert conversation_key(first, "p") != conversation_key(
        _req(("system", "Be brief."), ("user", "Plan a trip to Rome."), tenant="t2"), "p"
    )
    a = _req(("user", "hi"), conversation="c-1")
    b = _req(("user", "something else"), ("assistant", "ok"), ("user", "and?"), conversation="c-1")
    assert conversation_key(a, "p") == conversation_key(b, "p") != conversation_key(_req(("user", "hi")), "p")
