"""Versioned router directories: immutable versions plus a pointer to the serving one.

Layout of ``routers/<name>/`` (docs/artifacts.md, "Versions")::

    manifest.json, weights.npz ...   the base version: today's layout, what the repository ships
    versions/v0001/manifest.json ... immutable versions (written once, by ``ferryman learn retrain``)
    CURRENT                          one line: the serving version ("base" or "v0001"); absent = base
    history.jsonl                    one JSON object per pointer move (promote, rollback), oldest first

A directory without ``CURRENT`` is served exactly as before versions existed. A
version directory is written under a temporary name and renamed into place, so a
reader never sees half a version; the pointer is replaced atomically
(``os.replace``), so a scorer that re-reads it sees the old or the new version,
never neither. The scorer re-reads pointers while serving (``scorer.reload``).

The *artifact version* every Score answer carries is ``<version>@<digest>``:
the version id and the first 12 hex digits of the SHA-256 of that version's
``manifest.json`` (which holds the SHA-256 of every committed file), so a
decision names the exact bytes that scored it even if the base is replaced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scorer.artifacts import MANIFEST_NAME, sha256_of, write_text_atomic
from scorer.errors import ArtifactError

BASE = "base"
POINTER = "CURRENT"
VERSIONS_DIR = "versions"
HISTORY = "history.jsonl"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class Resolved:
    """The serving version of a router directory."""

    router_dir: Path
    version: str  # "base" or "vNNNN"
    path: Path  # the artifact directory of that version

    @property
    def artifact_version(self) -> str:
        """``<version>@<first 12 hex digits of the manifest's SHA-256>``."""
        return f"{self.version}@{sha256_of(self.path / MANIFEST_NAME)[:12]}"


def is_router_dir(path: Path) -> bool:
    """A base artifact (``manifest.json``) or a versioned directory (``CURRENT``)."""
    return (path / MANIFEST_NAME).is_file() or (path / POINTER).is_file()


def check_version_id(version: str) -> str:
    """``base`` or ``v`` followed by at least four digits; anything else is an error (no path tricks)."""
    if version != BASE and not _VERSION_RE.match(version):
        raise ArtifactError(f"bad version id {version!r}: expected {BASE!r} or v0001, v0002, ...")
    return version


def version_path(router_dir: Path, version: str) -> Path:
    """Artifact directory of ``version`` (``base``: the router directory itself)."""
    check_version_id(version)
    return router_dir if version == BASE else router_dir / VERSIONS_DIR / version


def existing_version_path(router_dir: Path, version: str) -> Path:
    """:func:`version_path` of a version that is there; else an error naming the versions that are."""
    path = version_path(router_dir, version)
    if not (path / MANIFEST_NAME).is_file():
        there = ", ".join(list_versions(router_dir)) or "none"
        raise ArtifactError(f"{router_dir}: version {version!r} does not exist (there: {there})")
    return path


def current_version(router_dir: Path) -> str:
    """The id in ``CURRENT`` (``base`` when there is no pointer)."""
    pointer = router_dir / POINTER
    try:
        text = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return BASE
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{pointer}: unreadable version pointer ({exc})") from exc
    try:
        return check_version_id(text)
    except ArtifactError as exc:
        raise ArtifactError(f"{pointer}: {exc}") from None


def resolve(router_dir: Path) -> Resolved:
    """The serving version of ``router_dir``; a pointer to a missing version is an error naming it."""
    version = current_version(router_dir)
    path = version_path(router_dir, version)
    if not (path / MANIFEST_NAME).is_file():
        raise ArtifactError(f"{router_dir / POINTER}: points to {version!r}, but {path / MANIFEST_NAME} does not exist")
    return Resolved(router_dir, version, path)


def list_versions(router_dir: Path) -> list[str]:
    """Every version present: ``base`` (if the directory has a top-level manifest), then ``vNNNN`` in order."""
    out = [BASE] if (router_dir / MANIFEST_NAME).is_file() else []
    folder = router_dir / VERSIONS_DIR
    if folder.is_dir():
        found = [p.name for p in folder.iterdir() if _VERSION_RE.match(p.name) and (p / MANIFEST_NAME).is_file()]
        out += sorted(found, key=lambda v: int(v[1:]))
    return out


def discover(routers_dir: Path) -> list[Resolved]:
    """The serving version of every router directory under ``routers_dir``, sorted by directory name."""
    if not routers_dir.is_dir():
        raise ArtifactError(f"{routers_dir}: routers directory not found")
    return [resolve(p) for p in sorted(routers_dir.iterdir()) if p.is_dir() and is_router_dir(p)]


def _next_id(router_dir: Path) -> str:
    folder = router_dir / VERSIONS_DIR
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))] if folder.is_dir() else []
    return f"v{max(numbers, default=0) + 1:04d}"


@contextlib.contextmanager
def new_version(router_dir: Path) -> Iterator[tuple[str, Path]]:
    """Write a new version: yields ``(id, directory)`` to fill; on success it is renamed into ``versions/<id>``.

    The id is claimed when the block ends (the next free ``vNNNN``; a concurrent
    writer that takes it first makes this one take the next), so ids never collide.
    The manifest's ``version`` field should be set to the yielded id, which is the
    one it gets unless another writer finishes first (then ``ArtifactError``).
    """
    folder = router_dir / VERSIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    version = _next_id(router_dir)
    try:
        yield version, tmp
        target = folder / version
        try:
            os.rename(tmp, target)  # fails if another writer created the id meanwhile
        except OSError as exc:
            raise ArtifactError(f"{target}: version id taken by a concurrent writer; run again") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def set_current(router_dir: Path, version: str, *, action: str, evidence: Mapping[str, Any] | None = None) -> str:
    """Point ``CURRENT`` at ``version`` atomically and append the move to ``history.jsonl``; returns the old id."""
    existing_version_path(router_dir, version)
    old = current_version(router_dir)
    write_text_atomic(router_dir / POINTER, version + "\n")
    entry = {
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": action,
        "from": old,
        "to": version,
        "evidence": dict(evidence or {}),
    }
    with (router_dir / HISTORY).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
    return old


def history(router_dir: Path) -> list[dict[str, Any]]:
    """Pointer moves, oldest first (unreadable lines are skipped)."""
    path = router_dir / HISTORY
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(line)
            if isinstance(row, dict):
                out.append(row)
    return out


def previous_version(router_dir: Path) -> str:
    """The version a rollback returns to: the one the current version replaced when it was promoted.

    Rollbacks themselves are skipped, so rolling back twice after two promotions
    walks back two steps (v0002 -> v0001 -> base). A current version that was never
    promoted (set by hand) rolls back to the base.
    """
    current = current_version(router_dir)
    for entry in reversed(history(router_dir)):
        if entry.get("action") == "promote" and entry.get("to") == current and isinstance(entry.get("from"), str):
            return check_version_id(str(entry["from"]))
    if current == BASE:
        raise ArtifactError(f"{router_dir}: already serving {BASE!r}; there is nothing earlier to roll back to")
    return BASE
