"""No silent fallback: each request routed without a score is logged and counted; a high share warns, rate-limited;
the start-up self-check warns when a full-window Score misses the deadline."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from ferryman import keepalive
from gateway.config import ScorerClientConfig
from gateway.metrics import Metrics
from gateway.scorer_client import ScorerClient
from gateway.scorer_watch import MIN_REQUESTS, FallbackWatch, self_check
from harness.scorer import scorer_in_thread


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fallbacks(metrics: Metrics, router: str, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "ferryman_gateway_scorer_fallbacks_total", {"router": router, "reason": reason}
    )
    return value or 0.0


def test_every_fallback_is_logged_and_counted_and_a_high_share_warns_once_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = Clock(), Metrics()
    watch = FallbackWatch(ScorerClientConfig(fallback_warn_share=0.1, fallback_window_s=60), metrics, clock)
    caplog.set_level(logging.INFO, logger="gateway.scorer_watch")
    for _ in range(MIN_REQUESTS):
        watch.scored()
        clock.now += 0.1
    watch.fallback("mf", "DEADLINE_EXCEEDED", 81.5, 12_000)  # 1 of 21: under 10 %
    assert _fallbacks(metrics, "mf", "DEADLINE_EXCEEDED") == 1.0
    lines = [r for r in caplog.records if "routed without a score" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "reason=DEADLINE_EXCEEDED" in lines[0].getMessage() and "prompt_chars=12000" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    for _ in range(3):  # 3 of 23 (13 %) crosses 10 %: warned once, not again at 4 of 24
        watch.fallback("mf", "UNAVAILABLE", 0.4, 10)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "13 % of routed requests (3 of 23)" in warnings[0].getMessage()
    assert metrics.registry.get_sample_value("ferryman_gateway_scorer_fallback_share") == pytest.approx(4 / 24)
    assert len([r for r in caplog.records if "routed without a score" in r.getMessage()]) == 4  # every one logged
    clock.now += 30
    watch.fallback("mf", "UNAVAILABLE", 0.4, 10)  # still within the window of the last warning
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    clock.now += 31  # the earlier requests left the window; this one alone is not enough to warn
    watch.fallback("mf", "UNAVAILABLE", 0.4, 10)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert watch.share() == 1.0  # two fallbacks, nothing else in the last 60 s
    clock.now += 120
    assert watch.share() == 0.0


@pytest.mark.parametrize(("deadline_ms", "warns"), [(0.5, True), (60_000.0, False)])
def test_self_check_warns_when_a_full_window_would_miss_the_deadline(
    test_routers_dir: Path, caplog: pytest.LogCaptureFixture, deadline_ms: float, warns: bool
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.scorer_watch")
    with scorer_in_thread(test_routers_dir, routers=("mf", "bert")) as address:
        cfg = ScorerClientConfig(target=f"dns:///{address}", deadline_ms=deadline_ms)

        async def main() -> dict[str, float]:
            client = ScorerClient(cfg, Metrics())
            try:
                return await self_check(client, ["mf", "bert", "mf", "missing"], cfg, retry_for_s=30)
            finally:
                await client.close()

        times = asyncio.run(main())
    assert set(times) == {"mf", "bert"} and all(ms > 0 for ms in times.values())
    over = [r for r in caplog.records if "over scorer.deadline_ms" in r.getMessage()]
    assert (len(over) == 2) == warns and (not over) == (not warns)
    assert any("router missing" in r.getMessage() for r in caplog.records)  # a router the scorer lacks is named


def test_a_scorer_that_does_not_answer_list_routers_is_logged_once_then_its_return(fakes, test_routers, caplog):
    """Was: 'scorer ListRouters failed; keeping the previous calibration tables' at WARNING every second for as
    long as the scorer was away (and with no table fetched yet there were none to keep), without the address."""
    import time

    from gateway.config import parse_config
    from harness.gateway import GatewayThread, config_dict
    from harness.processes import free_port

    port = free_port()
    data = config_dict(fakes, scorer_target=f"dns:///127.0.0.1:{port}")

    def said(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "gateway.policy" and text in r.getMessage()]

    with caplog.at_level(logging.INFO, logger="gateway.policy"), GatewayThread(parse_config(data)):
        time.sleep(3.5)  # about three refreshes at 1 s
        with scorer_in_thread(test_routers, port=port):
            deadline = time.monotonic() + 30  # the channel's reconnect back-off
            while not said("answers ListRouters again") and time.monotonic() < deadline:
                time.sleep(0.2)
    down = said("does not answer ListRouters")
    assert down == [
        f"scorer dns:///127.0.0.1:{port} does not answer ListRouters (UNAVAILABLE); share-based policies route by "
        "their scorer-down tier, until it does (logged once)"
    ]
    assert said("answers ListRouters again") == [
        f"scorer dns:///127.0.0.1:{port} answers ListRouters again; calibration tables refreshed"
    ]


def test_the_scorer_keeps_a_connection_whose_idle_keepalive_pings_are_the_gateways(
    test_routers: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The gateway's channel pings an idle scorer every ``keepalive_time_ms``; the scorer must not answer
    GOAWAY too_many_pings (gRPC's server defaults allow an idle ping every 2 hours). Scaled down: both sides
    at 300 ms instead of 10 s."""
    monkeypatch.setattr(keepalive, "MIN_PING_INTERVAL_MS", 300)
    capfd.readouterr()

    async def idle_with_pings(target: str) -> None:
        client = ScorerClient(replace(ScorerClientConfig(target=f"dns:///{target}"), keepalive_time_ms=300), Metrics())
        try:
            assert "mf" in {r.name for r in await client.list_routers()}
            await asyncio.sleep(5)  # no call: only keepalive pings cross the connection (GOAWAY came after ~3 s)
        finally:
            await client.close()

    with scorer_in_thread(test_routers) as target:
        asyncio.run(idle_with_pings(target))
    assert "too_many_pings" not in capfd.readouterr().err
