"""The causal-LLM router end to end: a fake rating model on loopback, a real scorer as the fallback.

The fake rater (``harness.fake_rater``) rates proofs 5, code 4, summaries and poems 3, greetings 1,
anything else 2. When it is slower than the router's deadline or answers something that is not a
rating, the scorer's MF router decides and the decision says why.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import openai
import pytest

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from gateway.config import parse_config
from harness.fake_provider import slow, status
from harness.fake_rater import FakeRater, by_keywords, nonsense, out_of_range
from harness.gateway import CLIENT_KEY, GatewayThread, config_dict
from harness.tiers import three_tier_dict

AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)
PROOF = "Prove that there are infinitely many primes of the form 4k+3."
HELLO = "hello, how are you today?"
POEM = "Write a short poem about autumn leaves."


@pytest.fixture(scope="module")
def _rater_server() -> Iterator[FakeRater]:
    rater = FakeRater().start()
    yield rater
    rater.stop()


@pytest.fixture
def rater(_rater_server: FakeRater) -> FakeRater:
    _rater_server.reset()
    _rater_server.rule = by_keywords
    _rater_server.prompts.clear()
    return _rater_server


def sections(deadline_ms: float = 1000) -> dict:
    return {
        "llm_routers": {"rater": {"model": "rater-local", "fallback_router": "mf", "deadline_ms": deadline_ms}},
        "policies": {"llm": {"router": "rater", "threshold": 0.5}, "plain": {"router": "mf", "threshold": 0.5}},
    }


def two_tier(fakes, rater, scorer_target: str, deadline_ms: float = 1000):
    data = config_dict(
        {**fakes, "rater-local": rater},
        scorer_target=scorer_target,
        model_overrides={"rater-local": {"api_key_env": None}},
    )
    return parse_config(data | sections(deadline_ms))


def route(gw: GatewayThread, prompt: str, model: str = "llm") -> pb.RoutingDecision:
    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = pb.RouteRequest(model=model, messages=[pb.ChatMessage(role="user", content=prompt)])
        return stub.Route(request, metadata=AUTH, timeout=10).decision


def mf_score(address: str, prompt: str) -> float:
    with grpc.insecure_channel(address) as channel:
        return (
            scorer_pb2_grpc.ScorerServiceStub(channel)
            .Score(scorer_pb2.ScoreRequest(router="mf", prompt=prompt))
            .strong_win_rate
        )


def test_ratings_route_and_are_explained(fakes, rater, scorer_address):
    with GatewayThread(two_tier(fakes, rater, f"dns:///{scorer_address}")) as gw:
        d = route(gw, PROOF)
        assert (d.tier_name, d.router, d.source) == ("strong", "rater", pb.DECISION_SOURCE_SCORED)
        assert (d.llm.rating, d.llm.model, d.llm.cached, d.llm.fallback_reason) == (5, "rater-local", False, "")
        assert d.llm.reason == "a proof needs careful multi-step reasoning" and d.llm.latency_ms > 0
        assert [t.score for t in d.tier_scores] == [1.0] and d.score == 1.0
        assert route(gw, HELLO).tier_name == "weak"
        assert rater.prompts == [PROOF, HELLO]  # the prompt is what was rated
        # cached: the same prompt is not rated twice
        again = route(gw, PROOF)
        assert again.llm.cached and again.llm.rating == 5 and len(rater.prompts) == 2
        # over HTTP with the openai SDK: the rating and reason in the headers and the body
        client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="llm", messages=[{"role": "user", "content": POEM}]
        )
        h = raw.headers
        assert (h["x-ferryman-router"], h["x-ferryman-llm-rating"], h["x-ferryman-tier"]) == ("rater", "3", "strong")
        assert h["x-ferryman-llm-reason"] == "writing quality matters here" and "x-ferryman-llm-fallback" not in h
        assert raw.parse().model_extra["ferryman"]["decision"]["llm"]["rating"] == 3
        calls = gw.gateway.llm_routers.routers["rater"]._metrics.calls
        assert calls.labels("rater", "ok")._value.get() == 3 and calls.labels("rater", "cached")._value.get() == 1


def test_three_tiers_read_the_rating_as_a_ladder(fakes, rater, scorer_address):
    data = three_tier_dict(
        {**fakes, "rater-local": rater},
        scorer_target=f"dns:///{scorer_address}",
        model_overrides={"rater-local": {"api_key_env": None}},
        policies=sections()["policies"],
    )
    data["llm_routers"] = sections()["llm_routers"]
    with GatewayThread(parse_config(data)) as gw:
        got = {p: route(gw, p) for p in (HELLO, POEM, PROOF)}
    assert {p: d.tier_name for p, d in got.items()} == {HELLO: "small", POEM: "medium", PROOF: "large"}
    assert [t.score for t in got[POEM].tier_scores] == [0.5, 0.0]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("slow", "timeout"), ("nonsense", "unparseable"), ("out_of_range", "unparseable"), ("500", "error")],
)
def test_a_rater_that_fails_falls_back_to_the_scorer(fakes, rater, scorer_address, fault, reason):
    if fault == "slow":
        rater.reset(default=slow(1.0))
    elif fault == "500":
        rater.reset(default=status(500))
    else:
        rater.rule = nonsense if fault == "nonsense" else out_of_range
    with GatewayThread(two_tier(fakes, rater, f"dns:///{scorer_address}", deadline_ms=300)) as gw:
        d = route(gw, PROOF)
        expected = mf_score(scorer_address, PROOF)
        assert (d.router, d.source, d.threshold_source) == ("mf", pb.DECISION_SOURCE_SCORED, pb.THRESHOLD_SOURCE_FIXED)
        assert d.score == pytest.approx(expected, abs=1e-6)
        assert d.tier_name == ("strong" if expected >= 0.5 else "weak")
        assert (d.llm.router, d.llm.rating, d.llm.fallback_reason) == ("rater", 0, reason)
        if fault == "slow":
            assert 250 <= d.llm.latency_ms < 900
        client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="llm", messages=[{"role": "user", "content": HELLO}]
        )
        assert raw.headers["x-ferryman-llm-fallback"] == reason and raw.headers["x-ferryman-router"] == "mf"
        assert "x-ferryman-llm-rating" not in raw.headers
        calls = gw.gateway.llm_routers.routers["rater"]._metrics.calls
        assert calls.labels("rater", reason)._value.get() == 2


def test_rater_and_scorer_both_down_serves_the_scorer_down_tier(fakes, rater):
    rater.reset(default=slow(1.0))
    with GatewayThread(two_tier(fakes, rater, "dns:///127.0.0.1:1", deadline_ms=200)) as gw:
        d = route(gw, PROOF)
    assert (d.source, d.tier_name) == (pb.DECISION_SOURCE_SCORER_UNAVAILABLE, "strong")
    assert d.llm.fallback_reason == "timeout"


def test_rater_breaker_open_skips_the_call(fakes, rater, scorer_address):
    """The rating model's breaker, opened by failing client requests to it, makes the router skip it."""
    rater.reset(default=status(500))
    with GatewayThread(two_tier(fakes, rater, f"dns:///{scorer_address}")) as gw:
        client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
        for i in range(30):
            if gw.gateway.resilience.breakers["rater-local"].state == "open":
                break
            with pytest.raises(openai.APIError):  # distinct requests: the breaker counts each once
                client.chat.completions.create(model="rater-local", messages=[{"role": "user", "content": f"x{i}"}])
        assert gw.gateway.resilience.breakers["rater-local"].state == "open"
        rater.reset()
        d = route(gw, PROOF)
    assert d.llm.fallback_reason == "breaker_open" and d.router == "mf" and rater.requests == 0


def test_llm_router_config_errors(fakes, rater):
    base = config_dict({**fakes, "rater-local": rater}, model_overrides={"rater-local": {"api_key_env": None}})
    bad = [
        ({"r": {"model": "nope", "fallback_router": "mf"}}, "llm_routers.r.model: 'nope' is not defined"),
        ({"r": {"model": "rater-local"}}, "llm_routers.r.fallback_router: required"),
        ({"r-x": {"model": "rater-local", "fallback_router": "mf"}}, "letters, digits and '_' only"),
        ({"r": {"model": "rater-local", "fallback_router": "mf", "deadline_ms": 0}}, "deadline_ms: must be > 0"),
    ]
    from gateway.errors import ConfigError

    for routers, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config(base | {"llm_routers": routers})
