"""The public sources as the registry loads them from ../shared/data (counts from its README)."""

from __future__ import annotations

import pytest

from lab.data.benchmarks import STRONG, WEAK, default_data_dir
from lab.data.sources import ARENA_BENCH, ARENA_HUMAN, load_source


def test_arena_bench_prompts_grades_and_battles() -> None:
    src = load_source(ARENA_BENCH, default_data_dir())
    assert len(src.prompts) == 299  # one MT-Bench prompt removed
    assert len(src.battles) == 35292
    graded = src.graded()  # both default models graded
    assert len(graded) == 292
    assert all(0.0 <= p.difficulty <= 1.0 for p in src.prompts if p.difficulty is not None)
    assert {b.model_a for b in src.battles} | {b.model_b for b in src.battles} >= {STRONG, WEAK}


def test_arena_human_battles_and_difficulty() -> None:
    src = load_source(ARENA_HUMAN, default_data_dir())
    assert len(src.battles) == 1133
    assert sum(b.winner == "tie" for b in src.battles) == 360
    with_difficulty = [p for p in src.prompts if p.difficulty is not None]
    assert 0 < len(with_difficulty) <= 478 and len(src.prompts) <= 1133
    assert not src.graded()  # neither default model takes part in a human battle


def test_unknown_source_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown source 'reddit'"):
        load_source("reddit", default_data_dir())
