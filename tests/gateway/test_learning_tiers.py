"""Learning from traffic with three tiers: the shadow asks the partner tier, records name the stronger side.

Three tiers over the fake providers (``harness.tiers``): small (weak-openai), medium (weak-anthropic),
large (strong-openai, strong-anthropic). No scorer: each policy serves from its scorer-down tier, so
the served tier is known. The fake judge prefers the answer that contains "strong".
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from gateway.config import parse_config
from harness.fake_judge import FakeJudge
from harness.gateway import CLIENT_KEY, GatewayThread
from harness.tiers import three_tier_dict


@pytest.fixture
def judge() -> Iterator[FakeJudge]:
    judge = FakeJudge().start()
    yield judge
    judge.stop()


@pytest.mark.parametrize(
    ("served_tier", "served", "partner", "served_role", "verdict"),
    [
        ("medium", "weak-anthropic", "strong-openai", "weak", "strong"),
        ("small", "weak-openai", "strong-openai", "weak", "strong"),
        ("large", "strong-openai", "weak-anthropic", "strong", "strong"),
    ],
)
def test_shadow_asks_the_partner_tier(fakes, judge, tmp_path, served_tier, served, partner, served_role, verdict):
    data = three_tier_dict(
        {**fakes, "judge-local": judge},
        model_overrides={"judge-local": {"api_key_env": None}},
        policies={"p": {"router": "mf", "threshold": 0.5, "scorer_down_tier": served_tier}},
    )
    data["learning"] = {
        "policies": ["p"],
        "store": {"url": f"sqlite://{tmp_path / 'learning.db'}"},
        "shadow": {"sample_rate": 1.0, "daily_budget_usd": 10.0, "timeout_s": 2.0},
        "judge": {"model": "judge-local"},
        "feedback": {"enabled": True},
    }
    with GatewayThread(parse_config(data)) as gw:
        client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
        answer = client.chat.completions.create(model="p", messages=[{"role": "user", "content": "Why?"}])
        assert answer.choices[0].message.content == f"Answer from {served}."
        assert gw.call(gw.gateway.learning.quiesce(20))
        rec = gw.call(gw.gateway.learning.store.store.get(answer.id))
    assert fakes[partner].requests == 1
    assert (rec.served_model, rec.shadow_model, rec.routed_tier) == (served, partner, served_tier)
    assert rec.served_tier == served_role and rec.shadow_tier == ("weak" if served_role == "strong" else "strong")
    assert rec.verdict == verdict  # the answer containing "strong" won: the large tier's, on its strong side
    strong_answer, weak_answer = rec.answers()
    assert "strong" in strong_answer and "weak" in weak_answer
