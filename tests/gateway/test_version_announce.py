"""A promoted router version is announced once, however many scorer replicas answer the gateway; replicas
answering with different versions (a rollout under way) are said once too."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ferryman.scorer.v1 import scorer_pb2
from gateway.config import parse_config
from gateway.metrics import Metrics
from gateway.policy import Policy
from gateway.scorer_client import PairScores
from gateway.scorer_watch import FallbackWatch
from gateway.types import ChatRequest, Message

POINTS = [(0.1, 0.9), (0.5, 0.5), (0.9, 0.1)]


def _model(price: float) -> dict[str, object]:
    return {
        "provider": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "K",
        "price_in_per_mtok": price,
        "price_out_per_mtok": price,
    }


CONFIG = {
    "models": {"big": _model(10.0), "small": _model(0.1)},
    "tiers": {"strong": {"models": ["big"]}, "weak": {"models": ["small"]}},
    "policies": {"p": {"router": "mf", "strong_share": 0.3}},
    "scorer": {"self_check": False, "calibration_refresh_s": 3600},
}


class TwoReplicas:
    """A scorer client over two replicas taking calls in turn (round robin): ``versions[i]`` is what replica
    ``i`` serves; every call, Score or ListRouters, goes to the next replica."""

    def __init__(self, versions: list[str]) -> None:
        self.versions = versions
        self.calls = 0

    def _next(self) -> str:
        version = self.versions[self.calls % len(self.versions)]
        self.calls += 1
        return version

    async def list_routers(self) -> list[scorer_pb2.RouterInfo]:
        version = self._next()
        calibration = [scorer_pb2.CalibrationPoint(strong_share=s, threshold=t) for s, t in POINTS]
        return [scorer_pb2.RouterInfo(name="mf", artifact_version=version, calibration=calibration)]

    async def score_pairs(self, router: str, messages: object, pairs: object) -> PairScores:
        return PairScores((0.5,), 1.0, self._next())


def _announcements(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.policy" or r.name == "gateway.scorer_watch"]


def test_a_version_change_seen_through_two_replicas_is_announced_once(caplog: pytest.LogCaptureFixture) -> None:
    """Was: 'router mf now scores with v2 ... refreshing' once for every refresh that a replica still on v1
    answered (13 times in 19 requests here, a Score reaching one replica and each ListRouters the other),
    so an operator saw one change announced again and again."""
    config = parse_config(CONFIG)
    scorer = TwoReplicas(["v1@a", "v1@a"])
    request = ChatRequest(model="p", messages=(Message("user", "Prove that 2 is prime."),))
    policy = Policy(config, scorer, FallbackWatch(config.scorer, Metrics()))  # type: ignore[arg-type]

    async def main() -> None:
        await policy.start()
        try:
            await policy.decide(request)
            scorer.versions = ["v2@b", "v1@a"]  # one replica promoted v2, the other not yet: a rollout
            for _ in range(12):
                await policy.decide(request)
                await asyncio.sleep(0)  # the background refresh runs
                await asyncio.sleep(0)
            scorer.versions = ["v2@b", "v2@b"]  # both serve v2
            for _ in range(6):
                await policy.decide(request)
                await asyncio.sleep(0)
        finally:
            await policy.close()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    said = _announcements(caplog)
    changes = [m for m in said if "now scores with v2@b" in m]
    disagree = [m for m in said if "different versions" in m]
    assert len(changes) == 1, said
    assert len(disagree) == 1 and "v2@b" in disagree[0] and "v1@a" in disagree[0], said
