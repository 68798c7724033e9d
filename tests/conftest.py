"""Fixtures shared by every test package (keep small; package-specific fixtures live beside their tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scorer import build_test_routers


@pytest.fixture(scope="session")
def test_routers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid router artifact of every kind, from ``harness.scorer.build_test_routers``."""
    return build_test_routers(tmp_path_factory.mktemp("routers"))
