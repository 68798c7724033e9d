"""Cross-fitting on arena-bench-v1: fold artifacts for the N-tier and transfer evaluations.

``build/crossfit/arena/folds.json`` splits the 299 arena-bench-v1 prompts into k folds (prompt
scheme: near-duplicates kept together). Two kinds of artifact are trained per fold ``i``, each
without fold ``i``'s prompts and without any training prompt that is a near-duplicate (cosine >=
0.95 on the serving embeddings) of one of them, in any source:

- ``arena/<recipe>/fold-<i>`` (``<recipe>-arena-fold<i>``): the recipe's own data plus the
  arena-bench-v1 battles of all 16 models (when the recipe does not already train on them), so
  that the router knows every model an N-tier configuration may name;
- ``arena/pair-<slug>/<recipe>/fold-<i>`` (``<recipe>-<slug>-fold<i>``): the recipe's kind and
  settings trained in-pair, on that pair's arena-bench-v1 battles only (the transfer evaluation's
  "trained in-pair" reference), its default pair being that pair.

``ferryman eval --suite tiers`` and ``--suite transfer`` score each prompt with its own fold's
artifact, which never saw it. An existing ``folds.json`` is reused.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.data.arena_grades import ARENA, BATTLES, load_arena_grades, pair_slug
from lab.data.battles import load_battles
from lab.data.embed_cache import embed_cached
from lab.data.folds import FoldAssignment
from lab.data.keys import prompt_key
from lab.train.crossfit import make_folds
from lab.train.data import Pair, TrainingData, battle_pairs, heldout_keys, load_training_data
from lab.train.jobs import Target, TrainContext, trainer_for
from lab.train.recipe import Recipe, train_recipe
from scorer.artifacts import EncoderSpec

#: Training prompts at least this similar to a held-out prompt are left out with it.
NEAR_DUPLICATE = 0.95


@dataclass(frozen=True)
class ArenaCrossfitPlan:
    """What to cross-fit on arena-bench-v1 and where."""

    out: Path  # writes <out>/arena/...
    recipes: list[Recipe]
    k: int
    seed: int
    data_dir: Path
    pairs: list[tuple[str, str]]  # in-pair routers to train
    strong: str  # default pair of the all-model artifacts
    weak: str
    folds_only: bool = False


def arena_root(out: Path) -> Path:
    return out / "arena"


def all_models_dir(root: Path, recipe: str, fold: int) -> Path:
    """``<root>/<recipe>/fold-<i>``: the recipe plus every model's arena battles, without fold i."""
    return root / recipe / f"fold-{fold}"


def in_pair_dir(root: Path, strong: str, weak: str, recipe: str, fold: int) -> Path:
    """``<root>/pair-<slug>/<recipe>/fold-<i>``: the pair's arena battles only, without fold i."""
    return root / f"pair-{pair_slug(strong, weak)}" / recipe / f"fold-{fold}"


def _without(data: TrainingData, prompts: set[str], source_note: str) -> TrainingData:
    kept = [p for p in data.pairs if p.prompt not in prompts]
    if not kept:
        raise ValueError(f"no training data left after leaving out a fold ({source_note})")
    counts = dict(Counter(p.source for p in kept))
    return TrainingData(kept, list(data.sources), data.excluded + len(data.pairs) - len(kept), counts, data.info)


class _Exclusions:
    """Per fold, the training prompts to leave out: the fold's own and their near-duplicates."""

    def __init__(self, prompts: list[str], folds: FoldAssignment, emb: np.ndarray, held_emb: dict[str, np.ndarray]):
        self._prompts = prompts
        self._keys = [prompt_key(p) for p in prompts]
        self._emb = emb
        self._folds = folds
        self._held = held_emb

    def of(self, fold: int) -> set[str]:
        held = heldout_keys(self._folds, fold)
        out = {p for p, k in zip(self._prompts, self._keys, strict=True) if k in held}
        vectors = [v for k, v in self._held.items() if k in held]
        if vectors:
            sims = np.stack(vectors) @ self._emb.T
            out |= {self._prompts[j] for j in np.nonzero((sims >= NEAR_DUPLICATE).any(axis=0))[0].tolist()}
        return out


def run_arena_crossfit(plan: ArenaCrossfitPlan, ctx: TrainContext) -> None:
    """Write ``arena/folds.json`` and every fold artifact of every recipe (and in-pair recipe)."""
    t0 = time.perf_counter()
    for recipe in plan.recipes:
        if not trainer_for(recipe.kind).needs_data:
            raise ValueError(f"{recipe.source}: a {recipe.kind} router is not trained; nothing to cross-fit")
    root = arena_root(plan.out)
    grades = load_arena_grades(plan.data_dir)
    items = grades.fold_items()
    folds_path = root / "folds.json"
    encoder = ctx.encoder(EncoderSpec())
    if folds_path.is_file() and not plan.folds_only:
        folds = FoldAssignment.load(folds_path)
        missing = [it.key for it in items if it.key not in folds.assignments]
        if folds.k != plan.k or missing:
            raise ValueError(f"{folds_path}: made for other data (k={folds.k}, {len(missing)} unassigned); delete it")
        print(f"arena: reusing {folds_path}", flush=True)
    else:
        folds = make_folds(items, encoder, ctx.cache_dir, "prompt", plan.k, plan.seed)
        folds.save(folds_path)
        print(f"arena: {plan.k} folds of {len(items)} {ARENA} prompts written to {folds_path}", flush=True)
    if plan.folds_only:
        return
    held_emb = dict(
        zip([it.key for it in items], embed_cached([it.prompt for it in items], encoder, ctx.cache_dir), strict=True)
    )
    arena_battles, report = load_battles(plan.data_dir / BATTLES)
    print(report.summary(), flush=True)
    arena = battle_pairs(arena_battles, ARENA)
    for recipe in plan.recipes:
        full = _with_arena(recipe, plan.data_dir, arena)
        print(f"arena cross-fitting {recipe.name} on {full.provenance()}", flush=True)
        prompts = full.prompts()
        exclusions = _Exclusions(prompts, folds, embed_cached(prompts, encoder, ctx.cache_dir), held_emb)
        context = ctx.with_pool(full)
        for fold in range(plan.k):
            data = _without(full, exclusions.of(fold), f"{recipe.name} fold {fold}")
            target = Target(
                all_models_dir(root, recipe.name, fold), f"{recipe.name}-arena-fold{fold}", plan.strong, plan.weak
            )
            train_recipe(recipe, data, _seeded(target, recipe), context)
        for strong, weak in plan.pairs:
            pair = [p for p in arena if {p.model_a, p.model_b} == {strong, weak}]
            if not pair:
                raise ValueError(f"{ARENA} has no battles between {strong} and {weak}")
            in_pair = TrainingData(pair, [ARENA], counts={ARENA: len(pair)})
            pair_exclusions = _Exclusions(
                in_pair.prompts(), folds, embed_cached(in_pair.prompts(), encoder, ctx.cache_dir), held_emb
            )
            for fold in range(plan.k):
                data = _without(in_pair, pair_exclusions.of(fold), f"{strong} vs {weak} fold {fold}")
                out_dir = in_pair_dir(root, strong, weak, recipe.name, fold)
                name = f"{recipe.name}-{pair_slug(strong, weak)}-fold{fold}"
                target = Target(out_dir, name, strong, weak)
                train_recipe(recipe, data, _seeded(target, recipe), ctx.with_pool(in_pair))
    print(f"arena cross-fitting done in {time.perf_counter() - t0:.1f} s", flush=True)


def _with_arena(recipe: Recipe, data_dir: Path, arena: list[Pair]) -> TrainingData:
    """The recipe's data, plus every model's arena-bench-v1 battles when the recipe lacks them."""
    battles = recipe.battles_path(data_dir)
    has_arena = ARENA in recipe.arena or (battles is not None and battles.resolve() == (data_dir / BATTLES).resolve())
    if battles is None and not recipe.golden and not recipe.arena:
        return TrainingData(list(arena), [ARENA], counts={ARENA: len(arena)})
    base = load_training_data(battles=battles, golden=list(recipe.golden), arena=list(recipe.arena), data_dir=data_dir)
    if has_arena:
        return base
    pairs = [*base.pairs, *arena]
    return TrainingData(pairs, [*base.sources, ARENA], counts=dict(Counter(p.source for p in pairs)), info=base.info)


def _seeded(target: Target, recipe: Recipe) -> Target:
    return Target(target.out_dir, target.name, target.strong, target.weak, recipe.seed)
