"""Judged traffic for one model pair, from a file in the Chatbot Arena 55k schema.

The gateway's store exports shadow comparisons and explicit feedback in that
schema (docs/learning.md); ``ferryman data arena`` writes benchmark labels in it
too. Only battles between the given strong and weak model count (either may be
``model_a``); rows of other pairs are ignored and counted. Each kept row is one
judged sample scored on its last user turn, what the scorer routes on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.data.battles import load_battles
from lab.data.keys import prompt_key
from lab.data.report import DataError

#: Verdict of one judged sample, from the strong model's side.
STRONG_BETTER, TIE, WEAK_BETTER = 1, 0, -1


@dataclass(frozen=True)
class Judged:
    """One judged prompt: which of the two answers was better."""

    id: str
    key: str  # prompt_key of the scored text: slices keep every copy of a prompt together
    prompt: str
    verdict: int  # STRONG_BETTER, TIE or WEAK_BETTER


@dataclass(frozen=True)
class Traffic:
    """The judged samples of one pair, in file order, and what was skipped."""

    samples: tuple[Judged, ...]
    strong: str
    weak: str
    rows: int
    other_pairs: int

    @property
    def prompts(self) -> list[str]:
        """The scored text of every sample, in order."""
        return [s.prompt for s in self.samples]

    def verdicts(self) -> np.ndarray:
        """``+1`` strong better, ``0`` tie, ``-1`` weak better, per sample."""
        return np.array([s.verdict for s in self.samples], dtype=np.int64)

    def summary(self) -> str:
        """One line for progress output."""
        v = self.verdicts()
        return (
            f"{len(self.samples)} judged {self.strong} vs {self.weak} "
            f"(strong better {int((v > 0).sum())}, tie {int((v == 0).sum())}, weak better {int((v < 0).sum())}); "
            f"{self.other_pairs} of {self.rows} rows were other pairs (ignored)"
        )


def targets(verdicts: np.ndarray) -> np.ndarray:
    """Logistic targets: 1 strong better, ½ tie, 0 weak better."""
    return (np.asarray(verdicts, dtype=np.float64) + 1.0) / 2.0


def load_traffic(path: Path, strong: str, weak: str) -> Traffic:
    """Judged samples of ``strong`` vs ``weak`` from an Arena-schema file (.csv, .jsonl, .parquet)."""
    if strong == weak:
        raise ValueError(f"strong and weak model are the same ({strong!r})")
    battles, report = load_battles(path)
    samples: list[Judged] = []
    other = 0
    for b in battles:
        if {b.model_a, b.model_b} != {strong, weak}:
            other += 1
            continue
        if b.winner == "tie":
            verdict = TIE
        else:
            winner = b.model_a if b.winner == "model_a" else b.model_b
            verdict = STRONG_BETTER if winner == strong else WEAK_BETTER
        samples.append(Judged(b.id, prompt_key(b.prompt), b.prompt, verdict))
    if not samples:
        raise DataError(
            f"{path}: no judged battles of {strong!r} vs {weak!r} among {report.kept} rows "
            "(check --strong/--weak against the file's model_a/model_b)"
        )
    return Traffic(tuple(samples), strong, weak, report.kept, other)


def _unit(key: str, salt: str) -> float:
    """A salted hash of a prompt key as a number in [0, 1): stable across exports and runs."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2**64


def in_holdout(key: str, fraction: float, salt: str) -> bool:
    """Whether a prompt key falls in the held-back slice: a salted hash, stable across exports and runs."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in [0, 1), is {fraction}")
    return _unit(key, salt) < fraction


def fold_of(key: str, folds: int, salt: str) -> int:
    """Which of ``folds`` cross-fitting folds a prompt key falls in (the same salted hash: copies share a fold)."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, is {folds}")
    return min(int(_unit(key, salt) * folds), folds - 1)
