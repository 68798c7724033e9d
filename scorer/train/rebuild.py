"""Rebuild router files that artifacts do not commit (filled in by the training work)."""

from __future__ import annotations

from pathlib import Path


def rebuild_routers(routers_dir: Path, *, force: bool = False) -> None:
    """Build every ``built_by`` file of the artifacts under ``routers_dir``."""
    if not routers_dir.is_dir():
        print(f"no routers directory at {routers_dir}; nothing to build")
        return
    print(f"no router files to build under {routers_dir}")
