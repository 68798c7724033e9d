"""Fixtures shared by every test package (keep small; package-specific fixtures live beside their tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.faults import FaultTable
from harness.scorer import build_test_routers

_FAULT_TABLE = FaultTable()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-table",
        type=Path,
        metavar="PATH",
        help="write the fault suite's table (tests/gateway) between the fault-table markers of PATH",
    )


@pytest.fixture(scope="session")
def fault_table() -> FaultTable:
    """The rows of the fault suite (printed at the end of the run; see ``--fault-table``)."""
    return _FAULT_TABLE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _FAULT_TABLE.rows:
        terminalreporter.write_sep("=", "fault table (sent / answered / after fallback / clean error / lost)")
        terminalreporter.write_line(_FAULT_TABLE.markdown())
    path = config.getoption("--fault-table")
    if path is not None and _FAULT_TABLE.rows:
        if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
            terminalreporter.write_line(f"tests failed: {path} left as it was")
            return
        _FAULT_TABLE.write_into(path)
        terminalreporter.write_line(f"fault table written into {path}")


@pytest.fixture(scope="session")
def test_routers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid router artifact of every kind, from ``harness.scorer.build_test_routers``."""
    return build_test_routers(tmp_path_factory.mktemp("routers"))
