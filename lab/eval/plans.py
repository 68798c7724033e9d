"""Which artifact scores each prompt of an evaluation: one artifact for every prompt, or each
prompt's own cross-fitted fold artifact (``<folder>/fold-<i>``, trained without fold ``i``).

``ferryman eval``'s benchmark sets (lab/eval/cli.py) and its Arena suites (lab/eval/arena.py)
both plan their scoring with :class:`Plan`; the rules for when a shipped artifact may score a set
stay with each (they differ), the fold bookkeeping and the manifest reading live here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.data.folds import FoldAssignment
from scorer.artifacts import MANIFEST_NAME, Manifest, load_artifact


@dataclass
class Plan:
    """The scorer router name per prompt and the artifacts behind them, or why there are none."""

    label: str
    names: list[str] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)
    source: str = ""
    note: str = ""


def read_manifest(path: Path) -> Manifest | None:
    """The artifact's manifest (hashes not verified: the scorer does that), None without one."""
    return load_artifact(path, verify_hashes=False).manifest if (path / MANIFEST_NAME).is_file() else None


def trained_on(manifest: Manifest) -> list[str]:
    """The sources in the manifest's ``trained_on`` provenance, lower case, ``_`` read as ``-``."""
    raw = manifest.provenance.get("trained_on", "")
    return [t.strip().lower().replace("_", "-") for t in raw.split(",") if t.strip()]


def crossfitted(
    label: str,
    folder: Path,
    folds: FoldAssignment,
    keys: Sequence[str],
    *,
    missing: str,
    source: Callable[[str], str],
) -> Plan:
    """Each prompt (by key) scored by ``folder/fold-<i>`` of its own fold ``i``.

    ``missing``: what to do when a fold artifact is absent (the note then reads ``missing: <path>
    (<missing>)``); ``source(trained_on)``: the plan's source line, given the first fold
    artifact's ``trained_on`` provenance as written.
    """
    plan = Plan(label)
    names: dict[int, str] = {}
    first: Manifest | None = None
    for fold in range(folds.k):
        path = folder / f"fold-{fold}"
        manifest = read_manifest(path)
        if manifest is None:
            plan.note = f"missing: {path} ({missing})"
            return plan
        first = first or manifest
        names[fold] = manifest.name
        plan.artifacts[manifest.name] = path
    plan.names = [names[folds.fold_of(key)] for key in keys]
    plan.source = source(first.provenance.get("trained_on", "?") if first else "?")
    return plan
