"""The public training sources by name: prompts with what is known about them, and their battles.

Four sources (``../shared/data``; docs/training.md, "Data"):

- ``mmlu``, ``gsm8k``: whether GPT-4-1106 (strong) and Mixtral (weak) answered each prompt
  correctly (the golden labels; :mod:`lab.data.benchmarks`), one strong-vs-weak battle each;
- ``arena-bench-v1``: GPT-4 grades (1-10) of 16 models' answers to 299 Chatbot Arena prompts;
  every pair of graded models is a battle (:func:`lab.data.battles.battles_from_grades`), and the
  default pair is graded on 292 of them, so their grades are that pair's quality;
- ``arena-human-1k``: 1,133 human-voted Arena battles between 2023 models (904 distinct last user
  turns), and, for 478 of them, the mean GPT-4 grade of 11 models' answers (``prompts.jsonl``).

Every prompt (its last user turn: what the scorer scores) gets, where known, the default pair's
quality (``strong``, ``weak``) and a ``difficulty`` in [0, 1]: one minus the mean quality of every
graded answer to it (golden: the two models' correctness; arena-bench-v1: the 16 grades / 10;
arena-human-1k: ``mean_answer_score`` / 10, averaged over the battles of one prompt).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.data.battles import Battle, battles_from_grades, load_battles, load_questions
from lab.data.benchmarks import GOLDEN_BENCHMARKS, STRONG, WEAK, LabeledPrompt, load_benchmark
from lab.data.embed_cache import embed_cached
from lab.data.folds import duplicate_clusters
from lab.data.keys import prompt_key
from lab.data.records import read_jsonl
from lab.data.report import DataError, LoadReport
from scorer.encoder import Encoder

ARENA_BENCH = "arena-bench-v1"
ARENA_HUMAN = "arena-human-1k"
ARENA_SOURCES: tuple[str, ...] = (ARENA_BENCH, ARENA_HUMAN)
SOURCES: tuple[str, ...] = (*GOLDEN_BENCHMARKS, *ARENA_SOURCES)
_MAX_GRADE = 10.0
#: Near copies: cosine of the serving embeddings at or above this (as cross-fitting's folds).
DUP_THRESHOLD = 0.95


@dataclass(frozen=True)
class SourcePrompt:
    """One distinct prompt of a source, with the default pair's quality and its difficulty where known."""

    key: str
    prompt: str
    source: str
    group: str
    strong: float | None = None
    weak: float | None = None
    difficulty: float | None = None

    def labeled(self) -> LabeledPrompt:
        """As a benchmark item (needs the default pair's quality)."""
        if self.strong is None or self.weak is None:
            raise ValueError(f"{self.source} prompt {self.key} has no quality for {STRONG} and {WEAK}")
        return LabeledPrompt(self.key, self.prompt, self.source, self.group, self.strong, self.weak)


@dataclass
class Source:
    """A source's distinct prompts and its battles (each on one of those prompts' text)."""

    name: str
    prompts: list[SourcePrompt]
    battles: list[Battle] = field(default_factory=list)
    reports: list[LoadReport] = field(default_factory=list)

    def graded(self) -> list[LabeledPrompt]:
        """The prompts on which both default models were graded, as benchmark items."""
        return [p.labeled() for p in self.prompts if p.strong is not None and p.weak is not None]


def _golden(name: str, data_dir: Path) -> Source:
    reports: list[LoadReport] = []
    items = load_benchmark(name, data_dir, reports=reports)
    prompts = [
        SourcePrompt(it.key, it.prompt, name, it.group, it.strong, it.weak, 1.0 - (it.strong + it.weak) / 2)
        for it in items
    ]
    battles = [
        Battle(it.key, (it.prompt,), STRONG, WEAK, "model_a" if it.gain > 0 else "model_b" if it.gain < 0 else "tie")
        for it in items
    ]
    return Source(name, prompts, battles, reports)


def _arena_bench(folder: Path) -> Source:
    questions, scores = folder / "questions.jsonl", folder / "scores.jsonl"
    battles, report = battles_from_grades(questions, scores)
    turns, _ = load_questions(questions)
    grades: dict[str, dict[str, float]] = defaultdict(dict)
    for _, row in read_jsonl(scores):
        if isinstance(row, dict) and str(row.get("question_id")) in turns:
            score = row.get("score")
            if isinstance(score, int | float) and not isinstance(score, bool) and score >= 0:
                grades[str(row["question_id"])][str(row.get("model"))] = float(score)
    prompts = []
    for qid in sorted(turns):
        text, g = turns[qid][-1], grades.get(qid, {})
        difficulty = 1.0 - sum(g.values()) / len(g) / _MAX_GRADE if g else None
        prompts.append(
            SourcePrompt(prompt_key(text), text, ARENA_BENCH, ARENA_BENCH, g.get(STRONG), g.get(WEAK), difficulty)
        )
    return Source(ARENA_BENCH, prompts, battles, [report])


def _arena_human(folder: Path) -> Source:
    battles, report = load_battles(folder / "battles.csv")
    scores: dict[str, list[float]] = defaultdict(list)
    path = folder / "prompts.jsonl"
    for line, row in read_jsonl(path):
        if isinstance(row, str):
            raise DataError(f"{path}:{line}: {row}")
        turns = row.get("turns")
        value = row.get("mean_answer_score")
        if not isinstance(turns, list) or not turns or not isinstance(turns[-1], str):
            raise DataError(f"{path}:{line}: expected a non-empty list of turns")
        if isinstance(value, int | float) and not isinstance(value, bool):
            scores[turns[-1].strip()].append(float(value))
    prompts: dict[str, SourcePrompt] = {}
    for b in battles:
        if b.prompt not in prompts:
            mas = scores.get(b.prompt.strip())
            difficulty = 1.0 - sum(mas) / len(mas) / _MAX_GRADE if mas else None
            prompts[b.prompt] = SourcePrompt(
                prompt_key(b.prompt), b.prompt, ARENA_HUMAN, ARENA_HUMAN, None, None, difficulty
            )
    return Source(ARENA_HUMAN, list(prompts.values()), battles, [report])


def load_source(name: str, data_dir: Path) -> Source:
    """One source by name (``SOURCES``) from the data root (``../shared/data``)."""
    if name in GOLDEN_BENCHMARKS:
        return _golden(name, data_dir)
    folder = data_dir / name
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; expected one of {', '.join(SOURCES)}")
    if not folder.is_dir():
        raise DataError(f"{folder}: source folder not found (is {data_dir} the data root?)")
    return _arena_bench(folder) if name == ARENA_BENCH else _arena_human(folder)


def parse_sources(names: Sequence[str]) -> list[str]:
    """Validated source names; MT-Bench and unknown names are errors."""
    out = []
    for raw in names:
        name = raw.strip().lower()
        if name in ("mt-bench", "mt_bench", "mtbench"):
            raise ValueError("MT-Bench is for evaluation only; never train on it")
        if name not in SOURCES:
            raise ValueError(f"unknown source {raw!r}; expected some of {', '.join(SOURCES)}")
        if name in out:
            raise ValueError(f"source {name!r} listed twice")
        out.append(name)
    return out


# Leave-one-source-out layout (``ferryman train loso`` writes it, ``ferryman eval --benchmark loso`` reads it).


def loso_dir(out: Path, source: str, router: str) -> Path:
    """``<out>/<source>/<router>``."""
    return out / source / router


def artifact_name(router: str, source: str) -> str:
    """The manifest name of ``router`` trained without ``source``."""
    return f"{router}-without-{source}"


def held_out_keys(data_dir: Path, encoder: Encoder, cache_dir: Path | None) -> dict[str, set[str]]:
    """Per source: the keys of its prompts and of every near copy of one in any other source."""
    keys: list[str] = []
    texts: list[str] = []
    owner: list[str] = []
    for name in SOURCES:
        for fact in load_source(name, data_dir).prompts:
            keys.append(fact.key)
            texts.append(fact.prompt)
            owner.append(name)
    clusters = duplicate_clusters(texts, embed_cached(texts, encoder, cache_dir), DUP_THRESHOLD)
    members: dict[int, set[str]] = {}
    for c, key in zip(clusters.tolist(), keys, strict=True):
        members.setdefault(c, set()).add(key)
    out: dict[str, set[str]] = {name: set() for name in SOURCES}
    for c, name in zip(clusters.tolist(), owner, strict=True):
        out[name] |= members[c]
    return out
