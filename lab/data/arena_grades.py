"""arena-bench-v1 as graded prompts: 299 Chatbot Arena prompts, GPT-4 grades (1-10) of 16 models' answers.

What the N-tier and transfer evaluations read (``lab.eval.arena``) and what their cross-fitting
folds cover (``lab.train.arena_crossfit``). A prompt is its last user turn (what the scorer
scores); its key is :func:`lab.data.keys.prompt_key` of that text, as for every other source.
Models lack a grade on a few prompts; an evaluation over some models uses the prompts every one
of them is graded on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.data.battles import load_grades
from lab.data.benchmarks import LabeledPrompt
from lab.data.keys import prompt_key
from lab.data.report import DataError
from lab.data.sources import ARENA_BENCH as ARENA

BATTLES = f"{ARENA}/battles.csv"


@dataclass(frozen=True)
class ArenaPrompt:
    """One prompt and every model's grade on it."""

    question_id: str
    prompt: str
    key: str
    grades: dict[str, float]


@dataclass(frozen=True)
class ArenaGrades:
    """Every arena-bench-v1 prompt with its grades, in question-id order."""

    prompts: tuple[ArenaPrompt, ...]

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({m for p in self.prompts for m in p.grades}))

    def graded_by(self, models: Sequence[str]) -> list[ArenaPrompt]:
        """The prompts every one of ``models`` has a grade on (an unknown model is an error)."""
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise DataError(f"{ARENA} has no grades for {', '.join(unknown)} (it grades {', '.join(self.models)})")
        return [p for p in self.prompts if all(m in p.grades for m in models)]

    def fold_items(self) -> list[LabeledPrompt]:
        """The prompts as fold items (the cross-fitting folds of ``lab.data.folds``)."""
        return [LabeledPrompt(p.key, p.prompt, ARENA, ARENA, 0.0, 0.0) for p in self.prompts]


def load_arena_grades(data_dir: Path) -> ArenaGrades:
    """``<data_dir>/arena-bench-v1/{questions,scores}.jsonl``."""
    folder = data_dir / ARENA
    turns_of, grades, _ = load_grades(folder / "questions.jsonl", folder / "scores.jsonl")
    prompts = tuple(
        ArenaPrompt(qid, turns_of[qid][-1], prompt_key(turns_of[qid][-1]), dict(grades.get(qid, {})))
        for qid in sorted(turns_of)
    )
    return ArenaGrades(prompts)


#: The N-tier evaluation's default tiers, cheapest first: a 7B-class, a GPT-3.5-class and a GPT-4-class model.
THREE_TIERS: tuple[str, ...] = ("mistralai/Mistral-7B-Instruct-v0.1", "gpt-3.5-turbo-1106", "gpt-4-1106-preview")
#: The transfer evaluation's default (strong, weak) pairs, none of them the routers' default pair.
TRANSFER_PAIRS: tuple[tuple[str, str], ...] = (
    ("claude-2.1", "claude-instant-1"),
    ("gpt-4-0314", "gpt-3.5-turbo"),
    ("Llama-2-70b-chat", "mistralai/Mistral-7B-Instruct-v0.1"),
)


def pair_slug(strong: str, weak: str) -> str:
    """A file- and router-name-safe name of a pair, e.g. ``claude-2.1-vs-claude-instant-1``."""
    clean = [re.sub(r"[^A-Za-z0-9.]+", "-", m.rsplit("/", 1)[-1]).strip("-") for m in (strong, weak)]
    return f"{clean[0]}-vs-{clean[1]}"


def parse_pair(text: str) -> tuple[str, str]:
    """``STRONG:WEAK`` (model names may contain '/', not ':')."""
    strong, sep, weak = text.partition(":")
    if not sep or not strong or not weak or strong == weak:
        raise ValueError(f"expected STRONG:WEAK (two different model names), got {text!r}")
    return strong, weak
