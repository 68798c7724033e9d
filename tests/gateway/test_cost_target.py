"""Dollar targets end to end: a ``cost_per_request_usd`` policy over three tiers, a real scorer, fake providers.

The fake providers report fixed usage (``INPUT`` prompt tokens, ``OUTPUT`` completion tokens), so a
request costs ``price(tier, INPUT, OUTPUT)`` on the tier that answers it (``harness.tiers`` prices:
small 0.2 / 0.2, medium 1 / 2, large 10 / 30 dollars per 1M tokens). Traffic cycles through a pool of
``POOL`` distinct prompts (``harness.traffic``), shuffled anew each cycle, and the realised dollars per
request are measured per cycle from each answer's ``Accounting.cost_usd``. Then every provider starts
answering with 4x the output tokens: at the old thresholds the spend per request nearly triples,
and the learnt token counts bring it back to the target.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import grpc
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from gateway.config import parse_config
from gateway.cost_target import TIER_MIN_ANSWERS, DollarTargets
from gateway.errors import ConfigError
from gateway.types import Usage
from harness.fake_provider import FakeProvider, shape
from harness.gateway import CLIENT_KEY, GatewayThread, config_dict
from harness.tiers import three_tier_dict
from harness.traffic import prompts

AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)
POLICY = "budget"
POOL = 100
INPUT, OUTPUT = 200, 100
#: $ per request: 30 % of a top-tier request at INPUT / OUTPUT tokens ($0.005), 11 % after the shift ($0.014).
TARGET = 0.0015
#: A cycle's realised dollars per request must be within this of the target (relative). After the shift one
#: top-tier request is 9 % of a 100-request cycle's budget ($0.014 of $0.15), and the calibration window
#: (the last 300 scores) is not always three whole cycles, so its thresholds wobble by a request or so.
TOLERANCE = 0.15
#: The mean of the settled cycles must be within this of the target (relative).
MEAN_TOLERANCE = 0.05
CALIBRATION = {"online": True, "window": 3 * POOL, "min_samples": POOL, "update_every": 10, "max_step": 0.05}


def answer_with(fakes: dict[str, FakeProvider], tokens_in: int, tokens_out: int) -> None:
    """Every fake provider reports this usage (in its own API's words)."""
    for name, fake in fakes.items():
        if "anthropic" in name:
            usage = {"input_tokens": tokens_in, "output_tokens": tokens_out}
        else:
            total = tokens_in + tokens_out
            usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": total}
        fake.reset(default=shape({"usage": usage}))


def budget_config(
    fakes: dict[str, FakeProvider], scorer_address: str, calibration: dict[str, Any] = CALIBRATION, **policy: Any
) -> Any:
    policies = {POLICY: {"router": "mf", "cost_per_request_usd": TARGET} | policy}
    target = f"dns:///{scorer_address}"
    return parse_config(three_tier_dict(fakes, scorer_target=target, policies=policies, calibration=calibration))


def drive(
    gw: GatewayThread, pool: list[str], cycles: int, rng: random.Random, sources: list[int] | None = None
) -> list[float]:
    """Chat completions through the gateway, cycle by cycle; the realised dollars per request of each cycle
    (each decision's threshold source appended to ``sources``)."""
    out = []
    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(cycles):
            order = pool[:]
            rng.shuffle(order)
            spent = 0.0
            for prompt in order:
                reply = stub.ChatCompletion(
                    pb.ChatCompletionRequest(model=POLICY, messages=[pb.ChatMessage(role="user", content=prompt)]),
                    metadata=AUTH,
                    timeout=10,
                )
                spent += reply.accounting.cost_usd
                if sources is not None:
                    sources.append(reply.decision.threshold_source)
            out.append(spent / len(order))
    return out


def settled_from(cycles: list[float]) -> int | None:
    """The first cycle from which every later one is within the tolerance of the target."""
    for i in range(len(cycles)):
        if all(abs(c - TARGET) <= TOLERANCE * TARGET for c in cycles[i:]):
            return i
    return None


def metrics(gw: GatewayThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(gw.gateway.metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_dollar_target_is_tracked_and_comes_back_when_answers_get_longer(fakes, scorer_address):
    pool = [p for p, _ in prompts(POOL, seed=11)]
    rng = random.Random(5)
    answer_with(fakes, INPUT, OUTPUT)
    with GatewayThread(budget_config(fakes, scorer_address)) as gw:
        warm = gw.gateway.dollars.tier_usd(POLICY)
        sources: list[int] = []
        before = drive(gw, pool, 6, rng, sources)
        learnt = gw.gateway.dollars.tier_usd(POLICY)
        answer_with(fakes, INPUT, 4 * OUTPUT)
        after = drive(gw, pool, 7, rng)
        shifted = gw.gateway.dollars.tier_usd(POLICY)
        seen = metrics(gw)
        client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model=POLICY, messages=[{"role": "user", "content": pool[0]}]
        )
    # provenance as for cost_share: the artifact table while the score window fills, then online thresholds
    assert sources[0] == pb.THRESHOLD_SOURCE_ARTIFACT and set(sources[POOL:]) == {pb.THRESHOLD_SOURCE_ONLINE}
    assert raw.headers["x-ferryman-threshold-source"] == "online" and float(raw.headers["x-ferryman-cost"]) > 0
    print(
        f"\ntarget ${TARGET}/request; realised per cycle of {POOL}: before {[f'{c:.6f}' for c in before]}, "
        f"after 4x output tokens {[f'{c:.6f}' for c in after]}"
    )
    # warm-up: priced at expected_tokens (500 / 250), then at the learnt counts, then at the longer answers
    assert warm[-1] == pytest.approx((500 * 10 + 250 * 30) / 1e6)
    assert learnt == pytest.approx(tuple((INPUT * a + OUTPUT * b) / 1e6 for a, b in ((0.2, 0.2), (1, 2), (10, 30))))
    assert shifted[-1] == pytest.approx((INPUT * 10 + 4 * OUTPUT * 30) / 1e6)
    settled = settled_from(before)
    print(f"before: within ±{TOLERANCE:.0%} from cycle {settled}")
    assert settled is not None and settled <= 3, before  # within 300 requests of the start
    mean_before = sum(before[settled:]) / len(before[settled:])
    assert after[0] > TARGET * 1.5, "longer answers must raise the spend before the counts catch up"
    back = settled_from(after)
    print(f"after the shift: back within ±{TOLERANCE:.0%} from cycle {back}, i.e. within {(back or 0) * POOL} requests")
    assert back is not None and back * POOL <= 400, after
    mean_after = sum(after[back:]) / len(after[back:])
    print(f"settled cycles' mean: before ${mean_before:.6f}, after ${mean_after:.6f}")
    assert abs(mean_before - TARGET) <= MEAN_TOLERANCE * TARGET and abs(mean_after - TARGET) <= MEAN_TOLERANCE * TARGET
    labels = (("policy", POLICY),)
    assert seen[("ferryman_gateway_cost_target_usd", labels)] == TARGET
    realised = seen[("ferryman_gateway_cost_realised_usd", labels)]  # the last window (3 cycles), as the gateway saw it
    assert realised == pytest.approx(sum(after[-3:]) / 3, rel=1e-6)
    assert seen[("ferryman_gateway_cost_target_clamped", labels)] == 0
    assert seen[("ferryman_gateway_cost_expected_usd", (("policy", POLICY), ("tier", "large")))] == pytest.approx(
        shifted[-1]
    )
    assert seen[("ferryman_gateway_calibration_target_cost_share", (("policy", POLICY), ("router", "mf")))] == (
        pytest.approx(TARGET / shifted[-1])
    )


def test_a_target_out_of_reach_is_clamped_and_said_once_per_change(fakes, scorer_address, caplog):
    """Below the cheapest tier's expected cost every request goes there (WARNING once, metric -1); the same
    policy above the top tier's sends every request to the top (WARNING once, metric 1)."""
    answer_with(fakes, INPUT, OUTPUT)
    pool = [p for p, _ in prompts(POOL, seed=12)]
    fast = CALIBRATION | {"min_samples": 20, "max_step": 10.0}  # calibrated thresholds from the 20th score, unbounded
    for usd, tier, state, words in ((1e-6, "small", -1, "below the cheapest"), (1.0, "large", 1, "above the top")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gateway.cost_target"):
            config = budget_config(fakes, scorer_address, fast, cost_per_request_usd=usd)
            with GatewayThread(config) as gw, grpc.insecure_channel(gw.grpc_target) as channel:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                tiers = []
                for prompt in pool[:80]:
                    msgs = [pb.ChatMessage(role="user", content=prompt)]
                    reply = stub.ChatCompletion(pb.ChatCompletionRequest(model=POLICY, messages=msgs), metadata=AUTH)
                    tiers.append(reply.decision.tier_name)
                seen = metrics(gw)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and words in warnings[0] and POLICY in warnings[0], warnings
        assert seen[("ferryman_gateway_cost_target_clamped", (("policy", POLICY),))] == state
        # the artifact table's warm-up may send the first ones elsewhere; calibrated, every request goes there
        assert set(tiers[40:]) == {tier}, tiers


def test_the_clamp_is_said_when_it_starts_and_when_it_ends(fakes, caplog):
    """A target between the cheapest tier's cost at short answers and at long ones: clamped while answers are
    long, released when they are short again — one line at each change, none while it stays."""
    short = {"input": 200, "output": 100}
    config = budget_config(fakes, "127.0.0.1:1", cost_per_request_usd=1e-4, expected_tokens=short)
    dollars = DollarTargets(config.policies, config.tiers, config.models, config.calibration, _registry())
    small = "small"
    with caplog.at_level(logging.INFO, logger="gateway.cost_target"):
        assert dollars.target(POLICY).clamped == 0  # small costs $0.00006 at 200 / 100 tokens
        for _ in range(POOL):
            dollars.observe(POLICY, small, Usage(200, 1000), 0.00024)  # now $0.00024: out of reach
        assert [dollars.target(POLICY).clamped for _ in range(3)] == [-1, -1, -1]
        for _ in range(3 * POOL):
            dollars.observe(POLICY, small, Usage(200, 100), 0.00006)
        assert dollars.target(POLICY).clamped == 0
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "below the cheapest tier's expected cost" in lines[0][1] and "within" in lines[1][1]
    assert "priced at the last 100 answers' token counts" in lines[0][1]  # no longer the warm-up's
    assert dollars.realised_usd(POLICY) == pytest.approx(0.00006)


def test_a_clamp_at_start_says_it_is_priced_at_expected_tokens(fakes, caplog):
    """At start the tiers are priced at the warm-up's token counts, which may be far from the traffic's: the
    WARNING says so (it gave the dollar figures alone, read as the tiers' real costs)."""
    config = budget_config(
        fakes, "127.0.0.1:1", cost_per_request_usd=1e-6, expected_tokens={"input": 200, "output": 100}
    )
    with caplog.at_level(logging.INFO, logger="gateway.cost_target"):
        DollarTargets(config.policies, config.tiers, config.models, config.calibration, _registry())
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "priced at expected_tokens, 200 input and 100 output tokens, until 100 answers are seen" in line, line


def test_a_tier_is_priced_at_its_own_token_counts_once_it_answered_enough(fakes):
    config = budget_config(fakes, "127.0.0.1:1", expected_tokens={"input": 1000, "output": 1000})
    dollars = DollarTargets(config.policies, config.tiers, config.models, config.calibration, _registry())
    assert dollars.tier_usd(POLICY)[-1] == pytest.approx((1000 * 10 + 1000 * 30) / 1e6)  # the warm-up counts
    for _ in range(POOL - TIER_MIN_ANSWERS + 1):
        dollars.observe(POLICY, "small", Usage(100, 100), 0.0)
    for _ in range(TIER_MIN_ANSWERS - 1):
        dollars.observe(POLICY, "large", Usage(100, 500), 0.0)
    pooled_out = (100 * (POOL - TIER_MIN_ANSWERS + 1) + 500 * (TIER_MIN_ANSWERS - 1)) / POOL
    assert dollars.tier_usd(POLICY)[-1] == pytest.approx((100 * 10 + pooled_out * 30) / 1e6)  # all answers' means
    dollars.observe(POLICY, "large", Usage(100, 500), 0.0)
    assert dollars.tier_usd(POLICY)[-1] == pytest.approx((100 * 10 + 500 * 30) / 1e6)  # its own, at 20 answers
    assert dollars.tier_usd(POLICY)[0] == pytest.approx((100 * 0.2 + 100 * 0.2) / 1e6)


def _registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


BAD = [
    ({"cost_per_request_usd": 0}, r"policies\.p\.cost_per_request_usd: must be > 0"),
    ({"cost_per_request_usd": -0.01}, r"policies\.p\.cost_per_request_usd: must be > 0"),
    ({"cost_per_request_usd": "cheap"}, r"policies\.p\.cost_per_request_usd: expected float"),
    (
        {"cost_per_request_usd": 0.002, "cost_share": 0.3},
        r"policies\.p\.cost_per_request_usd: set it \(dollars\) or cost_share .*, not both",
    ),
    ({"cost_per_request_usd": 0.002, "threshold": 0.5}, r"policies\.p: set exactly one of"),
    (
        {
            "cost_per_request_usd": 0.002,
            "operating_points": [{"cost": 0.1, "tier": "small"}, {"cost": 1, "tier": "large"}],
        },
        r"policies\.p\.operating_points: their costs are relative to the top tier's list price",
    ),
    (
        {"cost_per_request_usd": 0.002, "expected_tokens": {"input": 0, "output": 10}},
        r"policies\.p\.expected_tokens\.input: must be > 0",
    ),
    (
        {"cost_per_request_usd": 0.002, "expected_tokens": {"input": 10, "outputs": 10}},
        r"policies\.p\.expected_tokens: unknown field\(s\) outputs",
    ),
    ({"strong_share": 0.3, "expected_tokens": {"input": 10}}, r"policies\.p\.expected_tokens: only used with"),
]


@pytest.mark.parametrize(("policy", "message"), BAD)
def test_bad_dollar_policies_fail_naming_the_field(fakes, policy, message):
    data = three_tier_dict(fakes, policies={"p": {"router": "mf"} | policy}, calibration={"online": True})
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_a_dollar_target_needs_online_calibration_and_priced_models(fakes):
    data = three_tier_dict(fakes, policies={"p": {"router": "mf", "cost_per_request_usd": 0.002}})
    with pytest.raises(ConfigError, match=r"policies\.p\.cost_per_request_usd: .*set calibration\.online: true"):
        parse_config(data)
    free = {m: {"price_in_per_mtok": 0, "price_out_per_mtok": 0} for m in ("strong-openai",)}
    data = three_tier_dict(
        fakes,
        policies={"p": {"router": "mf", "cost_per_request_usd": 0.002}},
        calibration={"online": True},
        routing={"tier_rule": "cheapest"},  # cost_aware itself needs prices rising to the top
        model_overrides=free,
    )
    with pytest.raises(ConfigError, match=r"policies\.p\.cost_per_request_usd: needs prices.*'strong-openai'"):
        parse_config(data)


def test_two_tiers_take_a_dollar_target_and_other_policies_are_unchanged(fakes):
    policies = {
        "budget": {"router": "mf", "cost_per_request_usd": 0.002, "expected_tokens": {"input": 300, "output": 50}},
        "ferryman-balanced": {"router": "mf", "strong_share": 0.3},
    }
    config = parse_config(config_dict(fakes, policies=policies, calibration={"online": True}))
    budget, balanced = config.policies["budget"], config.policies["ferryman-balanced"]
    assert budget.cost_per_request_usd == 0.002 and (budget.expected_tokens.input, budget.expected_tokens.output) == (
        300,
        50,
    )
    assert balanced.cost_per_request_usd is None and balanced.strong_share == 0.3
    dollars = DollarTargets(config.policies, config.tiers, config.models, config.calibration, _registry())
    priced = dollars.target("budget")
    top = (300 * 10 + 50 * 30) / 1e6  # strong-openai's prices in harness.gateway
    assert priced.cost_share == pytest.approx(0.002 / top)
    assert priced.weights == pytest.approx(((300 * 0.5 + 50 * 1.5) / 1e6 / top, 1.0))


def test_a_moving_dollar_target_steps_the_thresholds_instead_of_starting_again():
    """New token counts give a dollar target a new share and weights every so often: the calibration keeps its
    applied thresholds and moves them by bounded steps (a configured target that changed would start again)."""
    from gateway.calibration_online import CalibrationConfig, OnlineCalibration, Target
    from gateway.tiers import TierConfig, TierRule, Tiers

    cfg = CalibrationConfig(online=True, window=50, min_samples=10, update_every=5, max_step=0.05)
    tiers = Tiers([TierConfig("weak", ("w",), "", 0), TierConfig("strong", ("s",), "", 1)])
    calibration = OnlineCalibration(cfg, tiers, TierRule.build("cost_aware", (0.1, 1.0)), _registry(), None)
    rng = random.Random(1)

    def send(target: Target, n: int) -> tuple[float, ...]:
        got: tuple[float, ...] = ()
        for _ in range(n):
            got, _source = calibration.thresholds(POLICY, "mf", target, (0.5,), own_target=True)
            calibration.observe(POLICY, "mf", (rng.random(),), 0)
        return got

    send(Target("cost_share", (0.5,), (0.1, 1.0), usd=0.002), 30)
    settled = calibration.applied(POLICY, "mf")[0]
    assert settled is not None
    moved = Target("cost_share", (0.2,), (0.1, 1.0), usd=0.002)  # the same $, dearer top-tier requests
    assert calibration.thresholds(POLICY, "mf", moved, (0.5,), own_target=True) == (settled, "online")
    send(moved, 5)
    stepped = calibration.applied(POLICY, "mf")[0]
    assert stepped is not None and 0 < stepped[0] - settled[0] <= cfg.max_step + 1e-12


def test_a_target_clamped_at_the_cheapest_tier_comes_back_when_released():
    """Clamped below, a dollar target asks for exactly the cheapest tier's weight; the mean of 50 such weights
    rounds above it (0.06 here), so the thresholds ran to the search bound 1048575 and the bounded steps (0.05
    per update) never brought them back once the target was within reach again: every request stayed on the
    cheapest tier, spending far less than the target (the operator pass: $0.000028 against $0.0001)."""
    from gateway.calibration_online import CalibrationConfig, OnlineCalibration, Target
    from gateway.tiers import TierConfig, TierRule, Tiers

    cfg = CalibrationConfig(online=True, window=50, min_samples=10, update_every=5, max_step=0.05)
    tiers = Tiers([TierConfig("weak", ("w",), "", 0), TierConfig("strong", ("s",), "", 1)])
    calibration = OnlineCalibration(cfg, tiers, TierRule.build("cost_aware", (0.06, 1.0)), _registry(), None)
    rng = random.Random(2)

    def send(target: Target, n: int) -> tuple[float, ...]:
        got: tuple[float, ...] = ()
        for _ in range(n):
            got, _source = calibration.thresholds(POLICY, "mf", target, (0.5,), own_target=True)
            calibration.observe(POLICY, "mf", (rng.random(),), int(rng.random() >= got[0]))
        return got

    clamped = send(Target("cost_share", (0.06,), (0.06, 1.0), usd=1e-4), 60)  # every request to the cheapest
    assert 0.9 < clamped[0] <= 1.0  # just above every score, not 1048575
    released = send(Target("cost_share", (0.3,), (0.06, 1.0), usd=1e-4), 200)  # cheaper top-tier requests learnt
    assert released[0] < 0.8, released  # on its way to the share's threshold (~0.74 on uniform scores)
