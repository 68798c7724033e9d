"""Fixtures: fake providers (real HTTP servers on loopback) and a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fake_provider import FakeProvider
from harness.processes import RedisServer

NAMES = ("strong-openai", "strong-anthropic", "weak-openai", "weak-anthropic")


@pytest.fixture(scope="session")
def _fake_servers() -> Iterator[dict[str, FakeProvider]]:
    fakes = {name: FakeProvider(reply=f"Answer from {name}.", name=name).start() for name in NAMES}
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture
def fakes(_fake_servers: dict[str, FakeProvider]) -> dict[str, FakeProvider]:
    """The four fake providers, each reset to answer correctly."""
    for fake in _fake_servers.values():
        fake.reset()
    return _fake_servers


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def test_routers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small valid router artifacts with calibration tables (harness.scorer)."""
    from harness.scorer import build_test_routers

    return build_test_routers(tmp_path_factory.mktemp("routers"))


@pytest.fixture(scope="session")
def scorer_address(test_routers: Path) -> Iterator[str]:
    """A real scorer (harness.scorer) serving the test routers on loopback."""
    from harness.scorer import scorer_in_thread

    with scorer_in_thread(test_routers) as address:
        yield address
