"""Recipes (lab/recipes/*.toml) and trainers (lab/train/routers/<kind>.py) follow the router registry.

The shipped recipes must say exactly how the shipped routers were trained: their values are
checked against the provenance each committed manifest records.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lab.train.jobs import trainer_for
from lab.train.recipe import load_recipe, parse_recipe, shipped_names
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


@pytest.mark.parametrize(
    ("raw", "overrides", "message"),
    [
        ({"kind": "mf", "settings": {"depth": 3}}, [], "mf has no setting 'depth'"),
        ({"kind": "mf", "settings": {"epochs": 1.5}}, [], "epochs must be int, got 1.5"),
        ({"kind": "mf"}, ["lr=fast"], "lr must be float, got 'fast'"),
        ({"kind": "mf", "data": {"golden": ["mt-bench"]}}, [], "MT-Bench is for evaluation only"),
        ({"kind": "mf", "extra": 1}, [], "unknown key"),
        ({"kind": "knn"}, [], "unknown router kind 'knn'"),
        ({"kind": "sw", "settings": {"weight_exponent": 0}}, [], r"SW weight exponent must be in \(0, 100\]"),
        ({"kind": "mf"}, ["epochs"], r"expected \[ROUTER\.\]KEY=VALUE"),
    ],
)
def test_bad_recipes_are_clear_errors(raw: dict[str, object], overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_recipe(raw, name="x", source="x.toml", overrides=overrides)
