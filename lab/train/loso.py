"""Leave-one-source-out: every recipe trained once per public source, without that source.

``<out>/<source>/<router>/`` (``<router>``: the recipe's name) is a complete artifact named
``<router>-without-<source>``, trained on the recipe's data minus every prompt of ``source`` and
every near copy of one (equal normalised text, or cosine >= 0.95 on the serving embeddings: 277
of the 299 arena-bench-v1 prompts are also arena-human-1k prompts). ``ferryman eval --benchmark
loso`` scores each source with the artifacts that never saw it — the number that says whether a
router generalises to traffic unlike its training data (docs/evaluation.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.data.sources import SOURCES, artifact_name, held_out_keys, loso_dir
from lab.train.data import TrainingData, load_training_data
from lab.train.jobs import Target, TrainContext, trainer_for
from lab.train.recipe import Recipe, train_recipe
from scorer.artifacts import EncoderSpec


@dataclass(frozen=True)
class LosoPlan:
    """What to train and where: every recipe once per held-out source."""

    out: Path
    sources: list[str]
    recipes: list[Recipe]
    data_dir: Path
    strong: str
    weak: str


def recipe_data(recipe: Recipe, data_dir: Path) -> TrainingData:
    """A recipe's full training data."""
    return load_training_data(
        battles=recipe.battles_path(data_dir), golden=list(recipe.golden), arena=list(recipe.arena), data_dir=data_dir
    )


def run_loso(plan: LosoPlan, ctx: TrainContext) -> list[Path]:
    """Train every (held-out source, recipe) artifact; returns their directories."""
    for name in plan.sources:
        if name not in SOURCES:
            raise ValueError(f"unknown source {name!r}; expected some of {', '.join(SOURCES)}")
    for recipe in plan.recipes:
        if not trainer_for(recipe.kind).needs_data:
            raise ValueError(f"{recipe.source}: a {recipe.kind} router is not trained; nothing to leave out")
    t0 = time.perf_counter()
    excluded = held_out_keys(plan.data_dir, ctx.encoder(EncoderSpec()), ctx.cache_dir)
    print(summary(plan.sources, excluded), flush=True)
    written: list[Path] = []
    for recipe in plan.recipes:
        full = recipe_data(recipe, plan.data_dir)
        rctx = ctx.with_pool(full)
        for source in plan.sources:
            data = full.without(excluded[source])
            print(f"{recipe.name} without {source}: {data.provenance()}", flush=True)
            out_dir = loso_dir(plan.out, source, recipe.name)
            target = Target(out_dir, artifact_name(recipe.name, source), plan.strong, plan.weak, recipe.seed)
            written.append(train_recipe(recipe, data, target, rctx))
    print(f"leave-one-source-out training done in {time.perf_counter() - t0:.1f} s", flush=True)
    return written


def summary(sources: Sequence[str], keys: dict[str, set[str]]) -> str:
    """One line per source: how many prompt keys its held-out set leaves out."""
    return "; ".join(f"{s}: {len(keys[s])} prompts left out" for s in sources)
