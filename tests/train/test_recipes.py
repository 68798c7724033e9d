"""Recipes (lab/recipes/*.toml) and trainers (lab/train/routers/<kind>.py) follow the router registry.

The shipped recipes must say exactly how the shipped routers were trained: their values are
checked against the provenance each committed manifest records.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harness.scorer import DEFAULT_ENCODER_DIR
from lab.data.benchmarks import STRONG, WEAK
from lab.train.data import Pair, TrainingData
from lab.train.jobs import Target, TrainContext, trainer_for
from lab.train.recipe import describe, load_recipe, parse_recipe, shipped_names, train_recipe
from scorer.artifacts import load_artifact
from scorer.routers import ROUTER_KINDS

SHIPPED_ROUTERS = Path(__file__).resolve().parents[2] / "routers"


def test_every_kind_has_a_trainer() -> None:
    for kind in ROUTER_KINDS:
        trainer = trainer_for(kind)
        assert trainer.kind == kind and dataclasses.is_dataclass(trainer.settings)
    with pytest.raises(ValueError, match="unknown router kind 'knn'"):
        trainer_for("knn")


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_recipe_matches_the_shipped_router(name: str) -> None:
    recipe = load_recipe(name)
    manifest = load_artifact(SHIPPED_ROUTERS / name, verify_hashes=False).manifest
    prov = manifest.provenance
    assert manifest.kind == recipe.kind
    assert prov["seed"] == str(recipe.seed)
    sources = ([Path(recipe.battles).parent.name] if recipe.battles else []) + [*recipe.golden, *recipe.arena]
    assert prov["trained_on"] == (",".join(sources) or "none")
    settings = {f"cfg_{k}": str(v) for k, v in dataclasses.asdict(recipe.settings).items()}
    assert settings == {k: v for k, v in prov.items() if k.startswith("cfg_")}
    head = manifest.params.get("length_head")
    assert (head["beta"] if head else 0.0) == recipe.length_beta
    assert prov.get("length_beta", "0") == f"{recipe.length_beta:g}"
    if manifest.encoder is not None:
        assert (manifest.encoder.max_tokens, manifest.encoder.head_tokens) == (
            recipe.encoder.max_tokens,
            recipe.encoder.head_tokens,
        )


def test_overrides_apply_to_their_recipe_only() -> None:
    recipe = load_recipe("sw", ["sw.top_k=5", "mf.epochs=1", "seed=3", "max_tokens=64"])
    assert (recipe.settings.top_k, recipe.settings.weight_exponent, recipe.seed) == (5, 8.0, 3)
    assert recipe.encoder.max_tokens == 64
    assert load_recipe("mf", ["sw.top_k=5"]).settings.epochs == 15
    assert load_recipe("sw", ["sw.length_beta=0.5"]).length_beta == 0.5
    assert load_recipe("sw", ["length_beta=0"]).length_beta == 0.0


def test_train_recipe_adds_a_length_head_standardised_on_the_training_prompts(tmp_path: Path) -> None:
    """Whatever the kind, the artifact's head is the recipe's beta with the mean / std of its training prompts."""
    prompts = ["hi", "What is 2 + 2?", "Prove that sqrt(2) is irrational. " * 3, "Write a haiku about rain."]
    pairs = [Pair(p, STRONG, WEAK, i % 3, "mmlu", f"k{i}") for i, p in enumerate(prompts * 2)]
    data = TrainingData(pairs, ["mmlu"], counts={"mmlu": len(pairs)})
    recipe = parse_recipe({"kind": "sw", "length_beta": 0.4}, name="sw", source="x.toml")
    out = train_recipe(recipe, data, Target(tmp_path / "sw", "sw", STRONG, WEAK), TrainContext(DEFAULT_ENCODER_DIR))
    manifest = load_artifact(out).manifest
    z = np.log1p([len(p) for p in prompts])
    assert manifest.params["length_head"] == pytest.approx({"beta": 0.4, "mean": z.mean(), "std": z.std()})
    assert manifest.provenance["length_beta"] == "0.4"
    assert "length_beta=0.4" in describe(recipe)


@pytest.mark.parametrize(
    ("raw", "overrides", "message"),
    [
        ({"kind": "mf", "settings": {"depth": 3}}, [], "mf has no setting 'depth'"),
        ({"kind": "mf", "settings": {"epochs": 1.5}}, [], "epochs must be int, got 1.5"),
        # a --set value's error names the --set, not the recipe file (was 'x.toml: lr must be ...')
        ({"kind": "mf"}, ["lr=fast"], "^--set lr=fast: lr must be float, got 'fast'"),
        ({"kind": "mf"}, ["x.depth=3"], "^--set x.depth=3: mf has no setting 'depth'"),
        ({"kind": "mf", "data": {"golden": ["mt-bench"]}}, [], "MT-Bench is for evaluation only"),
        ({"kind": "mf", "extra": 1}, [], "unknown key"),
        ({"kind": "knn"}, [], "unknown router kind 'knn'"),
        ({"kind": "sw", "settings": {"weight_exponent": 0}}, [], r"SW weight exponent must be in \(0, 100\]"),
        ({"kind": "mf"}, ["epochs"], r"expected \[ROUTER\.\]KEY=VALUE"),
        ({"kind": "mf", "length_beta": -1}, [], "length_beta must be a number >= 0"),
        ({"kind": "mf"}, ["length_beta=nan"], "length_beta must be a number >= 0"),
        ({"kind": "random", "length_beta": 1}, [], "no training prompts to standardise a length head on"),
    ],
)
def test_bad_recipes_are_clear_errors(raw: dict[str, object], overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_recipe(raw, name="x", source="x.toml", overrides=overrides)
