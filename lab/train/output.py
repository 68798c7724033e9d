"""Write a trained router as an artifact directory (docs/artifacts.md).

Every trainer ends here: files are hashed (or marked ``built_by`` when set-up
rebuilds them), and the manifest records provenance — training data
(``trained_on``), seed, date, git commit, wall time and counts — so that
``ferryman eval`` can refuse to score a benchmark a router trained on.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scorer.artifacts import ArtifactFile, EncoderSpec, Manifest, sha256_of, write_manifest

BUILT_BY = "ferryman build routers"


def git_commit(repo: Path | None = None) -> str:
    """HEAD of the checkout (``+dirty`` when files changed); outside git ``$FERRYMAN_GIT_COMMIT`` or ``unknown``."""
    cwd = str(repo or Path(__file__).parent)  # git finds the checkout this code runs from, if any
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # not a checkout (e.g. a copied tree on a GPU host)
        return os.environ.get("FERRYMAN_GIT_COMMIT", "unknown")
    return head + ("+dirty" if dirty else "")


def provenance(data_provenance: Mapping[str, str], *, seed: int, wall_s: float, **extra: Any) -> dict[str, str]:
    """The manifest's ``provenance``: data counts plus seed, date, commit and wall time."""
    out = dict(data_provenance)
    out.update(
        seed=str(seed),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        git_commit=git_commit(),
        wall_time_s=f"{wall_s:.1f}",
    )
    out.update({k: str(v) for k, v in extra.items()})
    return out


def write_artifact(
    out_dir: Path,
    *,
    name: str,
    kind: str,
    models: list[str],
    strong: str,
    weak: str,
    committed: Mapping[str, str],
    built: Mapping[str, str] | None = None,
    encoder: EncoderSpec | None,
    prov: Mapping[str, str],
    params: Mapping[str, Any] | None = None,
    version: str = "1",
) -> Path:
    """Write ``manifest.json``; ``committed`` role->file names are hashed, ``built`` ones get ``built_by``."""
    files = {role: ArtifactFile(path=rel, sha256=sha256_of(out_dir / rel)) for role, rel in committed.items()}
    files.update({role: ArtifactFile(path=rel, built_by=BUILT_BY) for role, rel in (built or {}).items()})
    manifest = Manifest(
        name=name,
        kind=kind,
        version=version,
        models=tuple(models),
        default_strong=strong,
        default_weak=weak,
        files=files,
        encoder=encoder,
        provenance=dict(prov),
        params=dict(params or {}),
    )
    return write_manifest(out_dir, manifest)
