"""Three tiers end to end: a real scorer (test routers), fake providers, the openai SDK and gRPC stubs.

Tiers (``harness.tiers``): small (GPT-3.5-turbo-1106, weak-openai), medium (Mixtral,
weak-anthropic), large (GPT-4-1106, strong-openai then strong-anthropic). Every decision is checked
against the rule computed from the scorer's own scores for the two pairs (large vs small, large vs
medium): the cheapest tier whose score is below its threshold, else the top tier.
"""

from __future__ import annotations

from typing import Any

import anthropic
import grpc
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.tiers import TierRule
from harness.fake_provider import status
from harness.gateway import CLIENT_KEY, GatewayThread, config_dict
from harness.scorer import SAMPLE_PROMPTS, STRONG, WEAK
from harness.tiers import SMALL, THREE_TIERS, three_tier_dict

AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)
PAIRS = ((STRONG, SMALL), (STRONG, WEAK))
TIER_OF = {"small": "weak-openai", "medium": "weak-anthropic", "large": "strong-openai"}
KIND = {"small": pb.TIER_WEAK, "medium": pb.TIER_INTERMEDIATE, "large": pb.TIER_STRONG}
#: The default rule (cost_aware) over the harness tiers' prices (in + out of each tier's first model).
_PRICES = [p_in + p_out for _, _, p_in, p_out in THREE_TIERS.values()]
RULE = TierRule.build("cost_aware", [p / _PRICES[-1] for p in _PRICES])


def scores(address: str, prompt: str, router: str = "mf") -> tuple[float, float]:
    """The scorer's own win rates of the top tier over small and medium, for the rule."""
    with grpc.insecure_channel(address) as channel:
        reply = scorer_pb2_grpc.ScorerServiceStub(channel).BatchScore(
            scorer_pb2.BatchScoreRequest(
                requests=[
                    scorer_pb2.ScoreRequest(router=router, prompt=prompt, strong_model=s, weak_model=w)
                    for s, w in PAIRS
                ]
            )
        )
    small, medium = (r.strong_win_rate for r in reply.responses)
    return small, medium


def expected_tier(pair: tuple[float, float], threshold: float) -> str:
    return ("small", "medium", "large")[RULE.choose(pair, RULE.thresholds(threshold))]


def thresholds_covering_every_tier(address: str, prompts: list[str]) -> list[tuple[str, float, str]]:
    """(prompt, threshold, expected tier) cases that send some prompt to each of the three tiers."""
    cases: dict[str, tuple[str, float, str]] = {}
    for prompt in prompts:
        small, medium = scores(address, prompt)
        cut = RULE.top_cut((small, medium))
        for threshold in (small + 1e-3, 0.5 + (medium - 0.5) / RULE.ratios[1] + 1e-3, cut - 1e-3, cut + 0.2, 0.5):
            threshold = min(1.0, max(0.0, threshold))
            tier = expected_tier((small, medium), threshold)
            cases.setdefault(tier, (prompt, round(threshold, 6), tier))
        if len(cases) == 3:
            break
    assert set(cases) == {"small", "medium", "large"}, "the test router never ranks medium above small"
    return list(cases.values())


def rendered(gw: GatewayThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(gw.gateway.metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(gw: GatewayThread, name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in rendered(gw).items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items())
    )


@pytest.fixture
def gw(fakes, scorer_address):
    with GatewayThread(parse_config(three_tier_dict(fakes, scorer_target=f"dns:///{scorer_address}"))) as g:
        yield g


def test_grpc_route_and_chat_follow_the_rule_and_name_every_score(gw, fakes, scorer_address):
    cases = thresholds_covering_every_tier(scorer_address, list(SAMPLE_PROMPTS))
    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for prompt, threshold, tier in cases:
            msgs = [pb.ChatMessage(role="user", content=prompt)]
            model = f"router-mf-{threshold}"
            small, medium = scores(scorer_address, prompt)
            d = stub.Route(pb.RouteRequest(model=model, messages=msgs), metadata=AUTH).decision
            assert (d.tier_name, d.tier, d.model) == (tier, KIND[tier], TIER_OF[tier])
            assert d.source == pb.DECISION_SOURCE_SCORED and d.threshold_source == pb.THRESHOLD_SOURCE_FIXED
            assert [(t.tier, t.router_model) for t in d.tier_scores] == [("small", SMALL), ("medium", WEAK)]
            assert [t.score for t in d.tier_scores] == pytest.approx([small, medium], abs=1e-6)
            assert [t.threshold for t in d.tier_scores] == pytest.approx(list(RULE.thresholds(threshold)))
            decisive = {"small": 0, "medium": 1}.get(tier)
            if decisive is None:  # the top tier: the closest call
                decisive = min((0, 1), key=lambda i: (small, medium)[i] - RULE.thresholds(threshold)[i])
            assert d.score == pytest.approx((small, medium)[decisive], abs=1e-6)
            reply = stub.ChatCompletion(pb.ChatCompletionRequest(model=model, messages=msgs), metadata=AUTH)
            assert reply.decision.tier_name == tier and reply.model == TIER_OF[tier]
            assert reply.message.content == f"Answer from {TIER_OF[tier]}."
            acc = reply.accounting
            assert acc.served_tier_name == tier and acc.served_tier == KIND[tier]
            assert [a.tier_name for a in acc.attempts] == [tier]
    assert metric(gw, "ferryman_gateway_routed_total", tier="medium", model="weak-anthropic") >= 2
    assert metric(gw, "ferryman_gateway_route_scores_count", router="mf", tier="small") >= 6


def test_http_sdk_headers_name_tier_model_and_every_score(gw, fakes, scorer_address):
    client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
    for prompt, threshold, tier in thresholds_covering_every_tier(scorer_address, list(SAMPLE_PROMPTS)):
        small, medium = scores(scorer_address, prompt)
        raw = client.chat.completions.with_raw_response.create(
            model=f"router-mf-{threshold}", messages=[{"role": "user", "content": prompt}]
        )
        h = raw.headers
        assert h["x-ferryman-tier"] == tier and h["x-ferryman-served-tier"] == tier
        assert h["x-ferryman-model"] == TIER_OF[tier]
        got = dict(kv.split("=") for kv in h["x-ferryman-scores"].split(","))
        assert list(got) == ["small", "medium"]
        assert float(got["small"]) == pytest.approx(small, abs=1e-5)
        assert float(got["medium"]) == pytest.approx(medium, abs=1e-5)
        t_small, t_medium = RULE.thresholds(threshold)
        assert h["x-ferryman-thresholds"] == f"small={t_small:.6g},medium={t_medium:.6g}"
        assert h["x-ferryman-threshold-source"] == "fixed"
        body = raw.parse()
        assert body.choices[0].message.content == f"Answer from {TIER_OF[tier]}."
        decision: Any = body.model_extra["ferryman"]["decision"]
        assert decision["tier_name"] == tier and [t["tier"] for t in decision["tier_scores"]] == ["small", "medium"]
        # streamed: the same decision in the headers, the answer from the same tier
        with client.chat.completions.with_streaming_response.create(
            model=f"router-mf-{threshold}", messages=[{"role": "user", "content": prompt}], stream=True
        ) as stream:
            assert stream.headers["x-ferryman-tier"] == tier
            text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
        assert text == f"Answer from {TIER_OF[tier]}."


def test_share_policy_with_three_tiers_uses_the_artifact_table(gw, scorer_address):
    """Without online calibration a strong_share policy takes the table's threshold for every tier."""
    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        msgs = [pb.ChatMessage(role="user", content=SAMPLE_PROMPTS[0])]
        d = stub.Route(pb.RouteRequest(model="ferryman-balanced", messages=msgs), metadata=AUTH).decision
    assert d.threshold_source == pb.THRESHOLD_SOURCE_ARTIFACT and len(d.tier_scores) == 2
    theta = d.tier_scores[0].threshold  # the cheapest tier's threshold is the policy's
    assert [t.threshold for t in d.tier_scores] == pytest.approx(list(RULE.thresholds(theta)))
    assert d.tier_name == expected_tier(scores(scorer_address, SAMPLE_PROMPTS[0]), theta)


def test_a_failing_tier_falls_back_upwards_first(gw, fakes, scorer_address):
    """medium's only model fails: the large tier serves (quality kept before money), not the small one."""
    prompt, threshold, _ = next(
        c for c in thresholds_covering_every_tier(scorer_address, list(SAMPLE_PROMPTS)) if c[2] == "medium"
    )
    fakes["weak-anthropic"].reset(default=status(500))
    with grpc.insecure_channel(gw.grpc_target) as channel:
        reply = gateway_pb2_grpc.GatewayServiceStub(channel).ChatCompletion(
            pb.ChatCompletionRequest(
                model=f"router-mf-{threshold}", messages=[pb.ChatMessage(role="user", content=prompt)]
            ),
            metadata=AUTH,
        )
    assert reply.decision.tier_name == "medium"
    acc = reply.accounting
    assert [(a.model, a.tier_name) for a in acc.attempts] == [("weak-anthropic", "medium"), ("strong-openai", "large")]
    assert acc.degraded and acc.served_tier_name == "large" and acc.served_tier == pb.TIER_STRONG
    assert fakes["weak-openai"].requests == 0


def test_scorer_down_uses_the_named_tier(fakes):
    data = three_tier_dict(fakes, policies={"p": {"router": "mf", "threshold": 0.5, "scorer_down_tier": "medium"}})
    with GatewayThread(parse_config(data)) as g, grpc.insecure_channel(g.grpc_target) as channel:
        d = (
            gateway_pb2_grpc.GatewayServiceStub(channel)
            .Route(pb.RouteRequest(model="p", messages=[pb.ChatMessage(role="user", content="hi")]), metadata=AUTH)
            .decision
        )
    assert d.source == pb.DECISION_SOURCE_SCORER_UNAVAILABLE
    assert (d.tier_name, d.tier, d.model) == ("medium", pb.TIER_INTERMEDIATE, "weak-anthropic")


def test_bert_is_refused_for_three_tiers(fakes, scorer_address):
    data = three_tier_dict(
        fakes, scorer_target=f"dns:///{scorer_address}", policies={"bert-policy": {"router": "bert", "threshold": 0.5}}
    )
    gateway = GatewayThread(parse_config(data))
    with pytest.raises(ConfigError, match=r"router 'bert' \(ROUTER_TYPE_BERT\) knows only one model pair"):
        gateway.__enter__()


def test_a_router_that_cannot_tell_the_tiers_apart_is_a_clear_config_error(fakes, scorer_address):
    """Like the shipped two-model routers with three tiers: the error says why and what to train."""
    target = f"dns:///{scorer_address}"
    policies = {"p": {"router": "mf", "threshold": 0.5}}
    data = three_tier_dict(fakes, scorer_target=target, policies=policies)
    data["tiers"][1]["router_model"] = "mistralai/Mistral-7B-Instruct-v0.1"
    with pytest.raises(
        ConfigError,
        match=r"router 'mf' does not know the router_model of tier\(s\) medium \(mistralai/Mistral-7B-Instruct-v0.1\);"
        r" it knows gpt-4-1106-preview, ",
    ):
        GatewayThread(parse_config(data)).__enter__()
    # five tiers: one more than the four models the test router was trained on
    data = three_tier_dict(fakes, scorer_target=target, policies=policies)
    for name, price in (("extra-1", 0.5), ("extra-2", 3.0)):
        data["models"][name] = data["models"]["weak-openai"] | {"price_in_per_mtok": price, "price_out_per_mtok": price}
    small, medium, large = data["tiers"]
    data["tiers"] = [
        small,
        {"name": "t2", "models": ["extra-1"], "router_model": "claude-2.1"},
        medium,
        {"name": "t4", "models": ["extra-2"], "router_model": "some/other-model"},
        large,
    ]
    with pytest.raises(
        ConfigError,
        match=r"router 'mf' \(ROUTER_TYPE_MF\) was trained on 4 models \(.*\) and cannot tell 5 tiers apart; train "
        r"one on battles between the models the tiers stand for \(e.g. `ferryman train mf --arena arena-bench-v1`",
    ):
        GatewayThread(parse_config(data)).__enter__()


def test_bert_asked_for_by_a_request_is_a_clear_400(gw):
    client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError, match="knows only one model pair"):
        client.chat.completions.create(
            model="three-way", messages=[{"role": "user", "content": "hi"}], extra_body={"routing": {"router": "bert"}}
        )


BAD_TIERS = [
    ([{"name": "a", "models": ["weak-openai"], "router_model": "x"}], "at least two tiers"),
    (
        [
            {"name": "a", "models": ["weak-openai"], "router_model": "x"},
            {"name": "b", "models": ["weak-anthropic"]},
            {"name": "c", "models": ["strong-openai"], "router_model": "z"},
        ],
        r"tiers\[1\] \(b\): router_model is required with more than two tiers",
    ),
    (
        [
            {"name": "a", "models": ["weak-openai"], "router_model": "x"},
            {"name": "a", "models": ["strong-openai"], "router_model": "y"},
        ],
        "tier name.* a used twice",
    ),
    (
        [
            {"name": "a", "models": ["weak-openai"], "router_model": "x"},
            {"name": "b", "models": ["weak-openai"], "router_model": "y"},
        ],
        "weak-openai are in both tiers a and b",
    ),
    ([{"name": "a b", "models": ["weak-openai"]}, {"name": "c", "models": ["strong-openai"]}], r"tiers\[0\].name"),
]


@pytest.mark.parametrize(("tiers", "message"), BAD_TIERS)
def test_bad_tier_lists_fail_naming_the_field(fakes, tiers, message):
    data = three_tier_dict(fakes)
    data["tiers"] = tiers
    data["policies"] = {"p": {"router": "mf", "threshold": 0.5}}
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


BAD_POLICIES = [
    ({"tier_shares": {"small": 0.5, "medium": 0.3, "large": 0.3}}, "shares must sum to 1"),
    ({"tier_shares": {"small": 0.5, "large": 0.5}}, "every tier needs a share; missing medium"),
    ({"tier_shares": {"tiny": 0.5, "medium": 0.3, "large": 0.2}}, "'tiny' is not a tier"),
    ({"cost_share": 0.4}, "set calibration.online: true"),
    ({"threshold": 0.5, "scorer_down_tier": "huge"}, "must be a tier name .small, medium, large."),
    ({"threshold": 0.5, "strong_share": 0.2}, "set exactly one of"),
    ({"tier_shares": {"small": 0.5, "medium": 0.3, "large": 0.2}}, "per-tier shares need routing.tier_rule: cheapest"),
    (
        {"threshold": 0.5, "operating_points": [{"cost": 0.1, "tier": "small"}, {"cost": 1, "tier": "large"}]},
        "operating_points: need a cost_share target",
    ),
    ({"cost_share": 0.5, "operating_points": [{"cost": 0.1, "tier": "small"}]}, "at least two points"),
    (
        {"cost_share": 0.5, "operating_points": [{"cost": 0.6, "tier": "small"}, {"cost": 0.2, "tier": "large"}]},
        r"operating_points\[1\].cost: costs must rise strictly",
    ),
    (
        {"cost_share": 0.5, "operating_points": [{"cost": 0.1, "tier": "tiny"}, {"cost": 1, "tier": "large"}]},
        r"operating_points\[0\].tier: 'tiny' is not a tier",
    ),
    (
        {
            "cost_share": 0.5,
            "operating_points": [{"cost": 0.1, "tier": "small", "threshold": 0.3}, {"cost": 1, "tier": "large"}],
        },
        r"operating_points\[0\]: set exactly one of threshold or tier",
    ),
    (
        {"cost_share": 0.5, "operating_points": [{"cost": 0.1, "threshold": 0.3}, {"cost": 1.5, "tier": "large"}]},
        r"operating_points\[1\].cost: must be in \[0, 1\]",
    ),
    (
        {"cost_share": 0.05, "operating_points": [{"cost": 0.1, "threshold": 0.3}, {"cost": 1, "tier": "large"}]},
        "cost_share: 0.05 is outside the operating points' costs",
    ),
]


@pytest.mark.parametrize(("policy", "message"), BAD_POLICIES)
def test_bad_three_tier_policies_fail_naming_the_field(fakes, policy, message):
    data = three_tier_dict(fakes, policies={"p": {"router": "mf"} | policy})
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_weak_and_strong_name_the_cheapest_and_top_tiers(fakes):
    data = three_tier_dict(fakes, policies={"p": {"router": "mf", "threshold": 0.5, "scorer_down_tier": "weak"}})
    data["routing"] = {"scorer_down_tier": "strong"}
    config = parse_config(data)
    assert config.policies["p"].scorer_down_tier == "small"
    assert config.routing.scorer_down_tier == "large"


def test_a_top_share_over_three_tiers_without_online_calibration_is_logged(fakes, caplog):
    """The artifact's table is for the router's default pair: with three tiers the share is approximate."""
    policies = {"approx": {"router": "mf", "strong_share": 0.3}, "fixed": {"router": "mf", "threshold": 0.5}}
    with caplog.at_level("WARNING", logger="gateway.policy_config"):
        parse_config(three_tier_dict(fakes, policies=policies))
    warned = [r.getMessage() for r in caplog.records if r.name == "gateway.policy_config"]
    assert len(warned) == 1 and warned[0].startswith("policies.approx: strong_share 0.30 with 3 tiers")
    caplog.clear()
    with caplog.at_level("WARNING", logger="gateway.policy_config"):
        parse_config(three_tier_dict(fakes, policies=policies, calibration={"online": True}))
        parse_config(config_dict(fakes))  # two tiers: the table is the rule's
    assert not [r for r in caplog.records if r.name == "gateway.policy_config"]


def test_every_answer_surface_names_the_served_tier(gw, fakes, scorer_address):
    """The served tier by its name in every answer: the ``ferryman`` object of whole answers and of
    every stream chunk (OpenAI and Anthropic SDKs), gRPC stream events, and the headers."""
    kind = {"small": "weak", "medium": "intermediate", "large": "strong"}
    client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
    claude = anthropic.Anthropic(base_url=gw.http_url, api_key=CLIENT_KEY, max_retries=0, timeout=10)
    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for prompt, threshold, tier in thresholds_covering_every_tier(scorer_address, list(SAMPLE_PROMPTS)):
            model, model_name = f"router-mf-{threshold}", TIER_OF[tier]
            messages = [{"role": "user", "content": prompt}]
            body: Any = client.chat.completions.create(model=model, messages=messages).model_extra["ferryman"]
            assert (body["model"], body["tier"]) == (model_name, tier)
            assert (body["served_tier"], body["served_tier_name"]) == (kind[tier], tier)
            chunks = [
                c.model_extra["ferryman"]
                for c in client.chat.completions.create(model=model, messages=messages, stream=True)
            ]
            assert chunks and all((c["model"], c["tier"]) == (model_name, tier) for c in chunks)
            events = list(
                stub.StreamChatCompletion(
                    pb.StreamChatCompletionRequest(model=model, messages=[pb.ChatMessage(role="user", content=prompt)]),
                    metadata=AUTH,
                )
            )
            assert events[0].decision.tier_name == tier
            assert {(e.served_model, e.served_tier) for e in events} == {(model_name, tier)}
            assert events[-1].summary.accounting.served_tier_name == tier
            raw = claude.messages.with_raw_response.create(model=model, max_tokens=50, messages=messages)
            assert raw.headers["x-ferryman-tier"] == tier and raw.headers["x-ferryman-served-tier"] == tier
            assert list(dict(kv.split("=") for kv in raw.headers["x-ferryman-scores"].split(","))) == [
                "small",
                "medium",
            ]
            answer: Any = raw.parse()
            assert answer.model == model_name and answer.content[0].text == f"Answer from {model_name}."
            assert answer.model_extra["ferryman"]["tier"] == tier
            assert answer.model_extra["ferryman"]["decision"]["tier_name"] == tier
            streamed = list(claude.messages.create(model=model, max_tokens=50, messages=messages, stream=True))
            assert {(e.model_extra["ferryman"]["model"], e.model_extra["ferryman"]["tier"]) for e in streamed} == {
                (model_name, tier)
            }


def _medium_cost() -> float:
    return _PRICES[1] / _PRICES[-1]


def test_operating_points_mix_two_neighbouring_points_at_random(fakes, scorer_address):
    """A cost_share policy with calibrated operating points: each request goes to one of the two points around
    the target, drawn with the weights that average to it; a tier point sends it there, a threshold point
    routes by the rule; no online calibration is needed."""
    mid = _medium_cost()
    points = [{"cost": 0.01, "tier": "small"}, {"cost": mid, "tier": "medium"}, {"cost": 1.0, "tier": "large"}]
    target = mid + 0.25 * (1.0 - mid)  # a quarter of the way from the medium point to the large one
    policies = {
        "budget": {"router": "mf", "cost_share": target, "operating_points": points},
        "by-rule": {"router": "mf", "cost_share": 0.5,
                    "operating_points": [{"cost": 0.0, "threshold": 0.3}, {"cost": 1.0, "threshold": 0.3}]},
    }  # fmt: skip
    config = parse_config(three_tier_dict(fakes, scorer_target=f"dns:///{scorer_address}", policies=policies))
    assert config.policies["budget"].operating_points[1].tier == 1
    with GatewayThread(config) as g, grpc.insecure_channel(g.grpc_target) as channel:
        assert g.gateway._policy is not None
        g.gateway._policy._draw.seed(7)  # a fixed draw: the test does not flake
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        tiers: dict[str, int] = {}
        n = 200
        for i in range(n):
            msgs = [pb.ChatMessage(role="user", content=SAMPLE_PROMPTS[i % len(SAMPLE_PROMPTS)])]
            d = stub.Route(pb.RouteRequest(model="budget", messages=msgs), metadata=AUTH).decision
            assert d.source == pb.DECISION_SOURCE_SCORED and d.threshold_source == pb.THRESHOLD_SOURCE_FIXED
            assert len(d.tier_scores) == 2  # still scored: the provenance names every score
            tiers[d.tier_name] = tiers.get(d.tier_name, 0) + 1
        assert set(tiers) == {"medium", "large"}  # never the small tier: not a neighbour of the target
        assert 0.15 <= tiers["large"] / n <= 0.35  # 0.25 expected (binomial sd 0.03)
        # a threshold point routes by the rule, with that threshold
        for prompt in SAMPLE_PROMPTS[:4]:
            d = stub.Route(
                pb.RouteRequest(model="by-rule", messages=[pb.ChatMessage(role="user", content=prompt)]),
                metadata=AUTH,
            ).decision
            assert d.tier_name == expected_tier(scores(scorer_address, prompt), 0.3)
            assert [t.threshold for t in d.tier_scores] == pytest.approx(list(RULE.thresholds(0.3)))
        # over HTTP with the openai SDK: the chosen tier's model answers
        client = openai.OpenAI(base_url=g.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="budget", messages=[{"role": "user", "content": SAMPLE_PROMPTS[0]}]
        )
        tier = raw.headers["x-ferryman-tier"]
        assert tier in ("medium", "large") and raw.headers["x-ferryman-threshold-source"] == "fixed"
        assert raw.parse().choices[0].message.content == f"Answer from {TIER_OF[tier]}."
