"""Fixtures: small router artifacts and a live local scorer + gateway (real processes on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster import LocalCluster
from harness.scorer import build_test_routers

from .k8s import ROOT


@pytest.fixture(scope="session")
def test_routers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_routers(tmp_path_factory.mktemp("routers"), encoder_dir=ROOT / "build" / "encoder")


@pytest.fixture(scope="module")
def one_of_each(test_routers: Path) -> Iterator[LocalCluster]:
    """One scorer and one gateway processes, dev-overlay config, fake provider, Redis."""
    # A generous scorer deadline: the tests compare decisions, which must not depend on load.
    with LocalCluster(scorers=1, gateways=1, routers_dir=test_routers, scorer_overrides={"deadline_ms": 5000}) as c:
        yield c


#: The dev overlay's models in three tiers, standing for three of the test routers' models.
THREE_TIERS = {
    "tiers": [
        {"name": "small", "models": ["gpt-4o-mini"], "router_model": "gpt-3.5-turbo-1106"},
        {"name": "medium", "models": ["claude-haiku"], "router_model": "mistralai/Mixtral-8x7B-Instruct-v0.1"},
        {"name": "large", "models": ["gpt-4o", "claude-sonnet"], "router_model": "gpt-4-1106-preview"},
    ],
    "policies": {"ferryman-balanced": {"router": "mf", "strong_share": 0.3}},
}


@pytest.fixture(scope="module")
def three_tiers(test_routers: Path) -> Iterator[LocalCluster]:
    """One scorer and one gateway process serving a three-tier configuration."""
    with LocalCluster(
        scorers=1,
        gateways=1,
        routers_dir=test_routers,
        scorer_overrides={"deadline_ms": 5000},
        gateway_overrides=THREE_TIERS,
    ) as c:
        yield c


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The image smoke test's figures (sizes, start and drain times), after the run."""
    from .podman import REPORT

    if REPORT:
        terminalreporter.section("image smoke")
        for line in REPORT:
            terminalreporter.write_line(line)
