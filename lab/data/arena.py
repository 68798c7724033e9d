"""Benchmark correctness labels written as battles in the Chatbot Arena 55k schema.

The learning commands (``ferryman learn``) read judged traffic in the schema the
gateway's store exports (``id, model_a, model_b, prompt, response_a, response_b,
winner_model_a, winner_model_b, winner_tie``). To simulate a user's traffic from
a source that a router never trained on, a benchmark's labels become that file:
one battle per prompt between the benchmark's strong and weak model — the model
that alone answered correctly wins, a tie when both or neither did (what a judge
comparing the two answers would say). Which model is ``model_a`` is drawn per
prompt from a seeded hash, so that position says nothing about the tier. An
extra ``source`` column (``<benchmark>/<subject>``) is written; readers of the
schema ignore columns they do not know (docs/learning.md).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from ferryman.arena import ARENA_COLUMNS
from lab.data.benchmarks import GOLDEN_BENCHMARKS, STRONG, WEAK, LabeledPrompt

EXTRA_COLUMNS = ("source",)


def _strong_first(key: str, seed: int) -> bool:
    return hashlib.sha1(f"{seed}:{key}".encode()).digest()[0] % 2 == 0


def arena_rows(items: Sequence[LabeledPrompt], *, seed: int = 0) -> list[dict[str, str]]:
    """One Arena-schema row per labelled prompt (strong vs weak, position drawn per prompt)."""
    rows = []
    for it in items:
        strong_first = _strong_first(it.key, seed)
        a, b = (STRONG, WEAK) if strong_first else (WEAK, STRONG)
        strong_won, weak_won = it.strong > it.weak, it.weak > it.strong
        a_won = strong_won if strong_first else weak_won
        b_won = weak_won if strong_first else strong_won
        rows.append(
            {
                "id": f"{it.benchmark}-{it.key}",
                "model_a": a,
                "model_b": b,
                "prompt": json.dumps([it.prompt], ensure_ascii=False),
                "response_a": "",
                "response_b": "",
                "winner_model_a": str(int(a_won)),
                "winner_model_b": str(int(b_won)),
                "winner_tie": str(int(not (a_won or b_won))),
                "source": f"{it.benchmark}/{it.group}",
            }
        )
    return rows


def write_arena_csv(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    """Write rows (Arena columns, then the extra ones) as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*ARENA_COLUMNS, *EXTRA_COLUMNS], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def check_benchmark(name: str) -> str:
    """Only the golden benchmarks may become traffic: the learning commands train on it (never MT-Bench)."""
    if name not in GOLDEN_BENCHMARKS:
        raise ValueError(f"cannot convert {name!r}: only {', '.join(GOLDEN_BENCHMARKS)} (MT-Bench is never trained on)")
    return name
