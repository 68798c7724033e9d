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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The image smoke test's figures (sizes, start and drain times), after the run."""
    from .podman import REPORT

    if REPORT:
        terminalreporter.section("image smoke")
        for line in REPORT:
            terminalreporter.write_line(line)
