"""Cross-fitting folds: which held-out fold each labelled prompt belongs to.

When benchmark labels are used for training, every prompt must be scored by a
router that never saw it, nor a near copy of it. Fold ``i``'s router is trained
on the prompts of every other fold and scores the prompts of fold ``i``.

Two schemes:

- ``prompt``: random folds over near-duplicate clusters (equal normalised text,
  or cosine similarity >= ``dup_threshold`` between embeddings), so copies of a
  prompt never straddle folds;
- ``subject``: whole groups (MMLU subjects) per fold, for the honest
  held-out-subject number; GSM8K, a single group, is split into random chunks,
  one per fold. Near-duplicate clusters that span groups in different folds are
  moved into one fold (the prompt-leak rule wins over keeping a subject whole).

Folds are balanced greedily by size (largest unit first into the smallest fold)
with a seeded order, so an assignment is reproducible from ``(scheme, k, seed)``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lab.data.benchmarks import LabeledPrompt
from lab.data.keys import prompt_key
from lab.data.report import DataError

Scheme = Literal["prompt", "subject"]
SCHEMES: tuple[Scheme, ...] = ("prompt", "subject")
_SPLIT_GROUPS = frozenset({"gsm8k"})  # single-group benchmarks chunked in the subject scheme


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def duplicate_clusters(
    texts: Sequence[str], embeddings: np.ndarray | None = None, threshold: float = 0.95, block: int = 2048
) -> np.ndarray:
    """Cluster id per item: equal normalised text, or cosine >= ``threshold`` (transitively).

    ``embeddings`` must be L2-normalised rows (as the encoder returns). The id of
    a cluster is the index of its first member.
    """
    n = len(texts)
    uf = _UnionFind(n)
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        first.setdefault(prompt_key(text), i)
        uf.union(first[prompt_key(text)], i)
    if embeddings is not None:
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.shape[0] != n or emb.ndim != 2:
            raise ValueError(f"embeddings must have shape [{n}, dim], got {emb.shape}")
        for start in range(0, n, block):
            sims = emb[start : start + block] @ emb.T
            rows, cols = np.nonzero(sims >= threshold)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if c > start + r:
                    uf.union(start + r, c)
    return np.array([uf.find(i) for i in range(n)], dtype=np.int64)


def _balance(
    units: dict[int, list[int]], k: int, rng: np.random.Generator, n: int, fixed: dict[int, int] | None = None
) -> np.ndarray:
    """Assign whole units to k folds, largest first into the currently smallest fold.

    ``fixed`` pins some units to a fold before the others are balanced around them.
    """
    pinned = fixed or {}
    sizes = [0] * k
    folds = np.full(n, -1, dtype=np.int64)
    for u, f in pinned.items():
        folds[units[u]] = f
        sizes[f] += len(units[u])
    ids = [u for u in units if u not in pinned]
    rng.shuffle(ids)
    ids.sort(key=lambda u: -len(units[u]))  # stable: equal sizes keep the seeded order
    for u in ids:
        f = min(range(k), key=lambda j: (sizes[j], j))
        folds[units[u]] = f
        sizes[f] += len(units[u])
    return folds


def assign_folds(
    items: Sequence[LabeledPrompt],
    k: int,
    *,
    scheme: Scheme,
    seed: int = 0,
    embeddings: np.ndarray | None = None,
    dup_threshold: float = 0.95,
) -> np.ndarray:
    """Fold index (``0..k-1``) per item; see the module docstring for the schemes."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown fold scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    n = len(items)
    if n < k:
        raise ValueError(f"cannot split {n} items into {k} folds")
    rng = np.random.default_rng(seed)
    clusters = duplicate_clusters([it.prompt for it in items], embeddings, dup_threshold)
    if scheme == "prompt":
        units: dict[int, list[int]] = defaultdict(list)
        for i, c in enumerate(clusters.tolist()):
            units[c].append(i)
        return _balance(units, k, rng, n)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[f"{it.benchmark}/{it.group}"].append(i)
    units = {}
    fixed: dict[int, int] = {}
    for name in sorted(groups):
        members = groups[name]
        if name.split("/", 1)[1] in _SPLIT_GROUPS:
            order = rng.permutation(len(members))
            for fold, chunk in enumerate(np.array_split(order, k)):
                fixed[len(units)] = fold
                units[len(units)] = [members[x] for x in chunk.tolist()]
        else:
            units[len(units)] = members
    folds = _balance(units, k, rng, n, fixed)
    # Pull every near-duplicate cluster that straddles folds into its most common fold.
    members_of: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(clusters.tolist()):
        members_of[c].append(i)
    for members in members_of.values():
        if len(members) > 1 and len(set(folds[members].tolist())) > 1:
            folds[members] = Counter(folds[members].tolist()).most_common(1)[0][0]
    return folds


@dataclass
class FoldAssignment:
    """A saved fold assignment: prompt key -> fold, with how it was made."""

    scheme: str
    k: int
    seed: int
    assignments: dict[str, int]

    @classmethod
    def from_items(cls, items: Sequence[LabeledPrompt], folds: np.ndarray, *, scheme: str, seed: int) -> FoldAssignment:
        """Pair items' keys with the folds ``assign_folds`` returned."""
        if len(items) != len(folds):
            raise ValueError(f"{len(items)} items but {len(folds)} folds")
        k = int(folds.max()) + 1 if len(folds) else 0
        assignments = {it.key: int(f) for it, f in zip(items, folds, strict=True)}
        return cls(scheme=scheme, k=k, seed=seed, assignments=assignments)

    def fold_of(self, key: str) -> int:
        """The fold of a prompt key; KeyError names the key if it was not assigned."""
        try:
            return self.assignments[key]
        except KeyError:
            raise KeyError(f"prompt {key} is not in the fold assignment ({self.scheme}, k={self.k})") from None

    def save(self, path: Path) -> None:
        """Write as JSON (keys sorted, so the file is stable)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        assignments = dict(sorted(self.assignments.items()))
        data = {"scheme": self.scheme, "k": self.k, "seed": self.seed, "assignments": assignments}
        path.write_text(json.dumps(data, indent=0) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> FoldAssignment:
        """Read and validate a saved assignment."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: fold assignment not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not a valid fold assignment ({exc})") from exc
        try:
            k = int(raw["k"])
            assignments = {str(key): int(f) for key, f in raw["assignments"].items()}
            out = cls(scheme=str(raw["scheme"]), k=k, seed=int(raw.get("seed", 0)), assignments=assignments)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path}: not a valid fold assignment ({exc!r})") from exc
        bad = [f for f in assignments.values() if not 0 <= f < k]
        if bad:
            raise DataError(f"{path}: fold {bad[0]} out of range for k={k}")
        return out
