"""Cross-fitting: k folds of the golden-label prompts, one artifact per held-out fold.

``build/crossfit/<scheme>/folds.json`` assigns every MMLU/GSM8K prompt key to
a fold (``prompt``: random folds with near-duplicates kept together;
``subject``: whole MMLU subjects per fold, for the held-out-subject number).
``<scheme>/<router>/fold-<i>/`` (``<router>``: the recipe's name) is a complete artifact named
``<router>-fold<i>``, trained on everything except fold ``i``'s prompts (the
recipe's arena sources and battles are always included, but a battle on a held-out prompt's
text is left out with it; MT-Bench never). ``ferryman eval --crossfit-dir``
scores each prompt with its own fold's artifact. An existing ``folds.json``
is reused (so runs on other machines train on the same folds); ``--folds-only``
remakes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lab.data.benchmarks import LabeledPrompt, load_benchmark
from lab.data.embed_cache import embed_cached
from lab.data.folds import FoldAssignment, Scheme, assign_folds
from lab.train.data import TrainingData, heldout_keys, load_training_data
from lab.train.jobs import Target, TrainContext, trainer_for
from lab.train.recipe import Recipe, train_recipe
from scorer.artifacts import EncoderSpec
from scorer.encoder import Encoder


@dataclass(frozen=True)
class CrossfitPlan:
    """What to cross-fit and where to write it."""

    out: Path
    schemes: list[str]
    recipes: list[Recipe]
    k: int
    seed: int  # of the fold assignment
    data_dir: Path | None
    strong: str
    weak: str
    folds_only: bool = False


def fold_dir(out: Path, scheme: str, router: str, fold: int) -> Path:
    """``<out>/<scheme>/<router>/fold-<i>``."""
    return out / scheme / router / f"fold-{fold}"


def make_folds(
    items: list[LabeledPrompt], encoder: Encoder, cache_dir: Path | None, scheme: str, k: int, seed: int
) -> FoldAssignment:
    """Fold assignment with near-duplicates (cosine >= 0.95 on serving embeddings) kept in one fold."""
    emb = embed_cached([it.prompt for it in items], encoder, cache_dir)
    scheme_name: Scheme = "subject" if scheme == "subject" else "prompt"
    folds = assign_folds(items, k, scheme=scheme_name, seed=seed, embeddings=emb)
    return FoldAssignment.from_items(items, folds, scheme=scheme, seed=seed)


def run_crossfit(plan: CrossfitPlan, ctx: TrainContext) -> None:
    """Write folds.json per scheme and every (recipe, fold) artifact."""
    goldens = {r.golden for r in plan.recipes}
    if len(goldens) != 1 or not next(iter(goldens)):
        raise ValueError("cross-fitting needs golden labels, the same benchmarks in every recipe (data.golden)")
    (golden,) = goldens
    if plan.data_dir is None:
        raise ValueError("cross-fitting needs the benchmark data directory")
    for recipe in plan.recipes:
        if not trainer_for(recipe.kind).needs_data:
            raise ValueError(f"{recipe.source}: a {recipe.kind} router is not trained; nothing to cross-fit")
    t0 = time.perf_counter()
    items = [it for name in golden for it in load_benchmark(name, plan.data_dir)]
    full: dict[tuple[str | None, tuple[str, ...]], TrainingData] = {}  # per (battles file, arena sources)
    for recipe in plan.recipes:
        if (recipe.battles, recipe.arena) not in full:
            battles = recipe.battles_path(plan.data_dir)
            data = load_training_data(
                battles=battles, golden=list(golden), arena=list(recipe.arena), data_dir=plan.data_dir
            )
            full[(recipe.battles, recipe.arena)] = data
            print(f"cross-fitting on {data.provenance()}", flush=True)
    # One context per recipe: a trainer may prepare work once for all folds (ctx.pool = its full data).
    contexts = {r.name: ctx.with_pool(full[(r.battles, r.arena)]) for r in plan.recipes}
    for scheme in plan.schemes:
        folds_path = plan.out / scheme / "folds.json"
        if folds_path.is_file() and not plan.folds_only:
            folds = FoldAssignment.load(folds_path)
            _check_folds(folds, items, plan.k, folds_path)
            print(f"{scheme}: reusing {folds_path}", flush=True)
        else:
            folds = make_folds(items, ctx.encoder(EncoderSpec()), ctx.cache_dir, scheme, plan.k, plan.seed)
            folds.save(folds_path)
            print(f"{scheme}: {plan.k} folds written to {folds_path}", flush=True)
        if plan.folds_only:
            continue
        for fold in range(plan.k):
            held_out = heldout_keys(folds, fold)
            for recipe in plan.recipes:
                data = full[(recipe.battles, recipe.arena)].without(held_out)
                out_dir = fold_dir(plan.out, scheme, recipe.name, fold)
                target = Target(out_dir, f"{recipe.name}-fold{fold}", plan.strong, plan.weak, recipe.seed)
                train_recipe(recipe, data, target, contexts[recipe.name])
    print(f"cross-fitting done in {time.perf_counter() - t0:.1f} s", flush=True)


def _check_folds(folds: FoldAssignment, items: list[LabeledPrompt], k: int, path: Path) -> None:
    missing = sum(1 for it in items if it.key not in folds.assignments)
    if folds.k != k or missing:
        raise ValueError(
            f"{path}: made for other data (k={folds.k}, {missing} prompts unassigned); delete it to remake"
        )
