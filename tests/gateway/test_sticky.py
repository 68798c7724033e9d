"""Sticky conversations across two gateway replicas sharing a real Redis (and without it).

A conversation opens with a prompt the router sends to one tier; its follow-up turn, alone, would
go to the other tier. With ``sticky: true`` the follow-up keeps the first turn's tier on either
replica; without it, it is routed afresh.
"""

from __future__ import annotations

import time

import anthropic
import grpc
import openai
import pytest

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from gateway.config import parse_config
from harness.gateway import CLIENT_KEY, GatewayThread, config_dict
from harness.scorer import SAMPLE_PROMPTS

AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)


def score(address: str, prompt: str) -> float:
    with grpc.insecure_channel(address) as channel:
        stub = scorer_pb2_grpc.ScorerServiceStub(channel)
        return stub.Score(scorer_pb2.ScoreRequest(router="mf", prompt=prompt)).strong_win_rate


@pytest.fixture(scope="module")
def prompts(scorer_address) -> tuple[str, str, float]:
    """(a prompt that goes strong, one that goes weak, a threshold between them)."""
    ranked = sorted(SAMPLE_PROMPTS, key=lambda p: score(scorer_address, p))
    low, high = ranked[0], ranked[-1]
    return high, low, round((score(scorer_address, low) + score(scorer_address, high)) / 2, 6)


def config(fakes, scorer_address, threshold, **sticky):
    data = config_dict(
        fakes,
        scorer_target=f"dns:///{scorer_address}",
        policies={
            "chat": {"router": "mf", "threshold": threshold, "sticky": True},
            "plain": {"router": "mf", "threshold": threshold},
        },
        # This test proves sharing, not latency: the product's 50 ms Redis timeout falls back to
        # per-replica state when a loaded CI machine answers late, which the test would read as a bug.
        sticky={"ttl_s": 60, "redis_timeout_s": 2.0} | sticky,
    )
    return parse_config(data)


def route(gw: GatewayThread, policy: str, turns: list[tuple[str, str]], conversation: str = "") -> pb.RoutingDecision:
    with grpc.insecure_channel(gw.grpc_target) as channel:
        request = pb.RouteRequest(
            model=policy,
            messages=[pb.ChatMessage(role=r, content=c) for r, c in turns],
            routing=pb.RoutingOptions(conversation_id=conversation),
        )
        return gateway_pb2_grpc.GatewayServiceStub(channel).Route(request, metadata=AUTH, timeout=10).decision


def test_follow_ups_keep_their_tier_on_the_other_replica(fakes, scorer_address, redis_server, prompts):
    hard, easy, threshold = prompts
    cfg = config(fakes, scorer_address, threshold)
    with GatewayThread(cfg, redis_url=redis_server.url) as a, GatewayThread(cfg, redis_url=redis_server.url) as b:
        for first, second, tier in ((hard, easy, "strong"), (easy, hard, "weak")):
            opening = [("system", "Be brief."), ("user", first)]
            d1 = route(a, "chat", opening)
            assert (d1.tier_name, d1.source) == (tier, pb.DECISION_SOURCE_SCORED)
            follow = [*opening, ("assistant", "An answer."), ("user", second)]
            d2 = route(b, "chat", follow)
            assert (d2.tier_name, d2.source) == (tier, pb.DECISION_SOURCE_STICKY)
            assert not d2.tier_scores  # nothing was scored
            # without stickiness the same follow-up would move
            assert route(b, "plain", follow).tier_name != tier
            # and a third turn on the first replica stays too
            third = [*follow, ("assistant", "Another answer."), ("user", second)]
            assert route(a, "chat", third).source == pb.DECISION_SOURCE_STICKY
        hits = b.gateway.sticky.lookups.labels("hit", "redis")._value.get()
        assert hits >= 2


def test_explicit_conversation_id_over_http_and_grpc(fakes, scorer_address, redis_server, prompts):
    hard, easy, threshold = prompts
    cfg = config(fakes, scorer_address, threshold)
    with GatewayThread(cfg, redis_url=redis_server.url) as a, GatewayThread(cfg, redis_url=redis_server.url) as b:
        client = openai.OpenAI(base_url=a.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="chat",
            messages=[{"role": "user", "content": hard}],
            extra_headers={"x-ferryman-conversation-id": "c-42"},
        )
        assert raw.headers["x-ferryman-tier"] == "strong"
        # a follow-up whose first user turn differs: only the explicit id ties it to the conversation
        later = [("user", "Something else entirely."), ("assistant", "ok"), ("user", easy)]
        d = route(b, "chat", later, conversation="c-42")
        assert (d.tier_name, d.source) == ("strong", pb.DECISION_SOURCE_STICKY)
        assert route(b, "chat", later, conversation="c-43").source == pb.DECISION_SOURCE_SCORED
        # a follow-up over HTTP with the id in routing.conversation_id, on the other replica
        client_b = openai.OpenAI(base_url=b.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
        raw = client_b.chat.completions.with_raw_response.create(
            model="chat",
            messages=[{"role": r, "content": c} for r, c in later],
            extra_body={"routing": {"conversation_id": "c-42"}},
        )
        assert raw.headers["x-ferryman-tier"] == "strong" and raw.headers["x-ferryman-decision-source"] == "sticky"
        assert raw.parse().choices[0].message.content == "Answer from strong-openai."
        # and over /v1/messages (Anthropic SDK) with the id in the header
        claude = anthropic.Anthropic(base_url=b.http_url, api_key=CLIENT_KEY, max_retries=0, timeout=10)
        raw_message = claude.messages.with_raw_response.create(
            model="chat",
            max_tokens=50,
            messages=[{"role": r, "content": c} for r, c in later],
            extra_headers={"x-ferryman-conversation-id": "c-42"},
        )
        assert raw_message.headers["x-ferryman-tier"] == "strong"
        assert raw_message.headers["x-ferryman-decision-source"] == "sticky"


def test_time_to_live(fakes, scorer_address, redis_server, prompts):
    hard, easy, threshold = prompts
    cfg = config(fakes, scorer_address, threshold, ttl_s=1)
    with GatewayThread(cfg, redis_url=redis_server.url) as a:
        opening = [("user", hard)]
        follow = [*opening, ("assistant", "An answer."), ("user", easy)]
        assert route(a, "chat", opening).tier_name == "strong"
        assert route(a, "chat", follow).source == pb.DECISION_SOURCE_STICKY
        time.sleep(2.2)
        d = route(a, "chat", follow)
        assert (d.source, d.tier_name) == (pb.DECISION_SOURCE_SCORED, "weak")


def test_without_redis_each_replica_keeps_its_own(fakes, scorer_address, redis_server, prompts):
    hard, easy, threshold = prompts
    cfg = config(fakes, scorer_address, threshold)
    with GatewayThread(cfg, redis_url=redis_server.url) as a, GatewayThread(cfg, redis_url=redis_server.url) as b:
        redis_server.stop()
        opening = [("user", hard)]
        follow = [*opening, ("assistant", "An answer."), ("user", easy)]
        assert route(a, "chat", opening).tier_name == "strong"  # stored on a only (Redis is gone)
        assert route(a, "chat", follow).source == pb.DECISION_SOURCE_STICKY
        d = route(b, "chat", follow)  # b never saw the conversation: routed afresh, no error
        assert (d.source, d.tier_name) == (pb.DECISION_SOURCE_SCORED, "weak")


def test_a_first_turn_without_a_score_is_not_pinned(fakes, prompts):
    hard, easy, threshold = prompts
    cfg = config(fakes, "127.0.0.1:1", threshold)  # no scorer: the scorer-down tier (strong)
    with GatewayThread(cfg) as a:
        opening = [("user", hard)]
        assert route(a, "chat", opening).source == pb.DECISION_SOURCE_SCORER_UNAVAILABLE
        follow = [*opening, ("assistant", "An answer."), ("user", easy)]
        assert route(a, "chat", follow).source == pb.DECISION_SOURCE_SCORER_UNAVAILABLE
