"""Training data for every trainer: pairwise comparisons, and what is known about each prompt.

Three kinds of data become one list of :class:`Pair` (prompt, model_a, model_b, outcome,
source), plus per-prompt facts (:class:`lab.data.sources.SourcePrompt`: the default pair's
quality and a difficulty, where a source knows them):

- benchmark correctness labels (``--golden mmlu,gsm8k``): each prompt gives one
  comparison of the benchmark's strong and weak model — strong wins when only
  the strong model was right, weak wins when only the weak one was, a tie when
  both were right or both wrong (most of the data, so trainers must model ties);
- the named Arena sources (``--arena arena-bench-v1,arena-human-1k``): every pair of the 16
  GPT-4-graded models per prompt, and human-voted battles between 2023 models;
- any battles file in the Chatbot Arena 55k schema (``--battles FILE``).

Every pair carries its prompt's key, so held-out prompts (a cross-fitting fold, a held-out
source and its near copies) leave training wherever they occur. MT-Bench is evaluation-only
and refused here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lab.data.battles import Battle, load_battles
from lab.data.benchmarks import GOLDEN_BENCHMARKS, STRONG, WEAK, LabeledPrompt
from lab.data.folds import FoldAssignment
from lab.data.keys import prompt_key
from lab.data.sources import ARENA_SOURCES, SourcePrompt, load_source

A_WINS, B_WINS, TIE = 0, 1, 2
_WINNER_OUTCOME = {"model_a": A_WINS, "model_b": B_WINS, "tie": TIE}


@dataclass(frozen=True)
class Pair:
    """One comparison: which of two models answered ``prompt`` better."""

    prompt: str
    model_a: str
    model_b: str
    outcome: int  # A_WINS, B_WINS or TIE
    source: str  # "arena-bench-v1", "mmlu", ...
    key: str = ""  # prompt key (lab.data.keys.prompt_key): held-out prompts are excluded by key


@dataclass
class TrainingData:
    """Pairs, per-prompt facts (by prompt text) and the provenance a manifest records."""

    pairs: list[Pair]
    sources: list[str]
    excluded: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    info: dict[str, SourcePrompt] = field(default_factory=dict)

    @property
    def trained_on(self) -> str:
        """Comma-separated data sets, as the manifest's ``trained_on``."""
        return ",".join(self.sources)

    @property
    def models(self) -> list[str]:
        """Every model that occurs, sorted (the golden pair's models first)."""
        seen = {m for p in self.pairs for m in (p.model_a, p.model_b)}
        head = [m for m in (STRONG, WEAK) if m in seen]
        return head + sorted(seen - set(head))

    def without(self, keys: set[str]) -> TrainingData:
        """A copy without the pairs (and prompt facts) whose prompt key is in ``keys`` (held-out prompts)."""
        kept = [p for p in self.pairs if not (p.key and p.key in keys)]
        if not kept:
            raise ValueError("training data is empty after exclusions")
        counts = Counter(p.source for p in kept)
        prompts = {p.prompt for p in kept}
        info = {text: fact for text, fact in self.info.items() if text in prompts}
        sources = [s for s in self.sources if s in counts]
        return TrainingData(kept, sources, self.excluded + len(self.pairs) - len(kept), dict(counts), info)

    def plus(self, other: TrainingData) -> TrainingData:
        """This data followed by ``other``'s pairs (its sources after these; prompt facts: this data's first)."""
        pairs = [*self.pairs, *other.pairs]
        counts = Counter(p.source for p in pairs)
        sources = [s for s in dict.fromkeys([*self.sources, *other.sources]) if s in counts]
        return TrainingData(pairs, sources, self.excluded + other.excluded, dict(counts), {**other.info, **self.info})

    def prompts(self) -> list[str]:
        """Distinct prompts in first-seen order."""
        return list(dict.fromkeys(p.prompt for p in self.pairs))

    def provenance(self) -> dict[str, str]:
        """Counts for the manifest's ``provenance``."""
        out = {"trained_on": self.trained_on, "pairs": str(len(self.pairs)), "prompts": str(len(self.prompts()))}
        out.update({f"pairs_{k}": str(v) for k, v in sorted(self.counts.items())})
        if self.excluded:
            out["excluded_heldout_prompts"] = str(self.excluded)
        return out


def pair_groups(data: TrainingData) -> tuple[np.ndarray, list[str]]:
    """Per pair the index of its prompt's group, and the group names.

    A group is ``source/group`` where a source groups its prompts (MMLU: its 57 subjects), else the
    pair's source (GSM8K, the Arena sources, a battles file). Trainers that fit within groups
    (``MFConfig.group_intercepts``, ``SWConfig.within_groups``) use it.
    """
    names: dict[str, int] = {}
    out = np.empty(len(data.pairs), dtype=np.int64)
    for k, p in enumerate(data.pairs):
        fact = data.info.get(p.prompt)
        grouped = fact is not None and fact.source == p.source and fact.group != p.source
        name = f"{p.source}/{fact.group}" if grouped and fact is not None else p.source
        out[k] = names.setdefault(name, len(names))
    return out, list(names)


def battle_pairs(battles: Sequence[Battle], source: str) -> list[Pair]:
    """Battles as pairs, scored by their last user turn (what the scorer sees)."""
    return [
        Pair(b.prompt, b.model_a, b.model_b, _WINNER_OUTCOME[b.winner], source, prompt_key(b.prompt)) for b in battles
    ]


def golden_outcome(item: LabeledPrompt) -> int:
    """Strong (model_a) wins, weak (model_b) wins, or tie, from correctness labels."""
    if item.strong > item.weak:
        return A_WINS
    if item.weak > item.strong:
        return B_WINS
    return TIE


def golden_pairs(items: Sequence[LabeledPrompt]) -> list[Pair]:
    """One strong-vs-weak comparison per labelled prompt."""
    return [Pair(it.prompt, STRONG, WEAK, golden_outcome(it), it.benchmark, it.key) for it in items]


def parse_golden(spec: str) -> list[str]:
    """``"mmlu,gsm8k"`` -> names; MT-Bench and unknown names are errors."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    for name in names:
        if name in ("mt-bench", "mt_bench", "mtbench"):
            raise ValueError("MT-Bench is for evaluation only; never train on it")
        if name not in GOLDEN_BENCHMARKS:
            raise ValueError(f"unknown golden benchmark {name!r}; expected some of {', '.join(GOLDEN_BENCHMARKS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"golden benchmark listed twice in {spec!r}")
    return names


def heldout_keys(folds: FoldAssignment, fold: int) -> set[str]:
    """Keys of the prompts assigned to ``fold`` (to leave out of training)."""
    if not 0 <= fold < folds.k:
        raise ValueError(f"fold {fold} out of range for k={folds.k}")
    return {key for key, f in folds.assignments.items() if f == fold}


def parse_arena(spec: str | Sequence[str]) -> list[str]:
    """``"arena-bench-v1,arena-human-1k"`` (or a list) -> names; unknown names are errors."""
    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    for name in names:
        if name not in ARENA_SOURCES:
            raise ValueError(f"unknown arena source {name!r}; expected some of {', '.join(ARENA_SOURCES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"arena source listed twice in {spec!r}")
    return names


def load_training_data(
    *,
    battles: Path | None,
    golden: Sequence[str],
    data_dir: Path | None,
    arena: Sequence[str] = (),
    exclude: FoldAssignment | None = None,
    fold: int | None = None,
) -> TrainingData:
    """Gather pairs and prompt facts from the given sources, leaving out fold ``fold`` of ``exclude``."""
    if battles is None and not golden and not arena:
        raise ValueError("no training data: give --golden mmlu,gsm8k, --arena SOURCES and/or --battles FILE")
    if (exclude is None) != (fold is None):
        raise ValueError("--exclude-folds and --fold go together")
    pairs: list[Pair] = []
    sources: list[str] = []
    info: dict[str, SourcePrompt] = {}
    if battles is not None:
        loaded, report = load_battles(battles)
        print(report.summary(), flush=True)
        source = battles.parent.name if battles.stem == "battles" else battles.stem
        pairs += battle_pairs(loaded, source)
        sources.append(source)
    named = [*golden, *arena]
    if named and data_dir is None:
        raise ValueError("--golden and --arena need the data directory (--data-dir or $FERRYMAN_DATA)")
    for name in named:
        assert data_dir is not None
        src = load_source(name, data_dir)
        pairs += battle_pairs(src.battles, name) if name in ARENA_SOURCES else golden_pairs(src.graded())
        for fact in src.prompts:
            info.setdefault(fact.prompt, fact)
        sources.append(name)
    if not pairs:
        raise ValueError("training data is empty")
    data = TrainingData(pairs=pairs, sources=sources, counts=dict(Counter(p.source for p in pairs)), info=info)
    if exclude is not None and fold is not None:
        data = data.without(heldout_keys(exclude, fold))
    return data
