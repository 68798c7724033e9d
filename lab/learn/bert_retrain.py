"""A bert prior retrained: its recipe's data plus the judged training part as battles, trained as ``ferryman train``.

A BERT router's score is a 3-class head compiled into its ONNX graph (the shipped one: a linear probe on the
frozen, served int8 encoder's pooled vectors, ``lab/recipes/bert.toml``), so no correction folds into it and it
keeps no battles to append to. A retrain therefore trains it again: the recipe it was trained with
(:func:`recorded_recipe`, rebuilt from the manifest's provenance, or a recipe file the operator names), on the
recipe's data plus every judged sample of the training part as one battle of the router's strong model
(``model_a``) against its weak one (``lab.learn.candidate.judged_battles``, the same battles an sw prior takes),
weighted like the recipe's arena battles. Training, the length head and the graphs are ``ferryman train``'s
(:func:`lab.train.recipe.train_recipe`, which builds the graphs as ``ferryman build routers`` does, with their
build record); the candidate is then written, calibrated and versioned like every other
(``lab.learn.retrain.write_candidate``). The recipe's settings are used as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.data.benchmarks import GOLDEN_BENCHMARKS
from lab.data.sources import ARENA_SOURCES
from lab.learn.candidate import judged_battles
from lab.learn.scoring import Embedder, ScoringRouter
from lab.learn.traffic import Judged
from lab.train.bert import BertConfig
from lab.train.data import TrainingData
from lab.train.jobs import Target, TrainContext
from lab.train.recipe import Recipe, parse_recipe, recipe_data, train_recipe
from scorer.artifacts import MANIFEST_NAME, Manifest, parse_manifest, read_json_file
from scorer.routers import length_head

RECIPE_FLAG = "--recipe FILE"


@dataclass(frozen=True)
class BertRetrain:
    """What a retrain on a bert prior learns from: the prior's recipe, and the training part's judged samples."""

    recipe: Recipe
    samples: tuple[Judged, ...]
    data_dir: Path | None = None  # where the recipe's named data is (None: $FERRYMAN_DATA)

    def summary(self) -> str:
        """One line for the operator: the recipe and how many judged battles it trains on besides its data."""
        prompts = len({s.prompt for s in self.samples})
        return f"{self.recipe.source} + {len(self.samples)} judged battles on {prompts} prompts"

    def training_data(self, strong: str, weak: str) -> TrainingData:
        """The recipe's data, then the judged samples as battles of ``strong`` (model_a) vs ``weak``."""
        data = recipe_data(self.recipe, self.data_dir)
        return data.plus(judged_battles(self.samples, strong, weak)) if self.samples else data


def recorded_recipe(manifest: Manifest, root: Path) -> Recipe:
    """The recipe a bert artifact was trained with, rebuilt from what its manifest records: the seed and every
    ``cfg_<setting>`` in ``provenance``, the data it names in ``trained_on`` (golden benchmarks and arena
    sources), its encoder window and its length head's beta. ``ValueError`` (saying to pass ``--recipe FILE``)
    when something it trained with is not recorded: a battles file (only its name is), a cross-fitting fold,
    a setting, or when the artifact is itself a retrain candidate."""
    where = root / MANIFEST_NAME
    prov = manifest.provenance
    problems: list[str] = []
    if "learn_prior_version" in prov:
        problems.append("it is a candidate written by `ferryman learn retrain`, not a base trained by a recipe")
    if "excluded_heldout_prompts" in prov:
        problems.append(f"it was trained without {prov['excluded_heldout_prompts']} held-out prompts (a fold)")
    sources = [s for s in prov.get("trained_on", "").split(",") if s]
    golden = [s for s in sources if s in GOLDEN_BENCHMARKS]
    arena = [s for s in sources if s in ARENA_SOURCES]
    other = [s for s in sources if s not in golden and s not in arena]
    if not sources:
        problems.append("its provenance names no training data (trained_on)")
    if other:
        named = ", ".join(repr(s) for s in other)
        problems.append(f"it trained on {named}, a battles file whose path it does not record")
    settings = [f.name for f in dataclasses.fields(BertConfig)]
    missing = [k for k in settings if f"cfg_{k}" not in prov] + (["seed"] if "seed" not in prov else [])
    if missing:
        problems.append(f"its provenance does not record {', '.join(missing)}")
    if manifest.encoder is None:
        problems.append("it records no encoder window")
    if problems:
        raise ValueError(
            f"{root}: retraining a bert router trains it again from the recipe it was trained with plus the judged "
            f"battles, and that recipe cannot be recovered from {where}: {'; '.join(problems)}. Pass "
            f"{RECIPE_FLAG} (the recipe to train the candidate with, e.g. lab/recipes/bert.toml)"
        )
    assert manifest.encoder is not None
    head = length_head.parse(manifest.params, where)
    raw: Mapping[str, object] = {
        "kind": "bert",
        "seed": prov["seed"],
        "length_beta": head.beta if head is not None else 0.0,
        "data": {"golden": golden, "arena": arena, "battles": ""},
        "encoder": {
            "max_tokens": manifest.encoder.max_tokens,
            "head_tokens": manifest.encoder.head_tokens,
            "layers": manifest.encoder.layers,
        },
        "settings": {k: prov[f"cfg_{k}"] for k in settings},
    }
    return parse_recipe(raw, name=manifest.name, source=f"the recipe recorded in {where}")


def prior_recipe(prior: ScoringRouter, recipe: Recipe | None) -> Recipe:
    """``recipe`` (the operator's ``--recipe``, which must train a bert router), else the prior's recorded one."""
    if recipe is None:
        return recorded_recipe(prior.artifact.manifest, prior.artifact.root)
    if recipe.kind != "bert":
        raise ValueError(f"{recipe.source} trains a {recipe.kind} router; the prior is a bert router")
    return recipe


def train_bert_candidate(prior: ScoringRouter, update: BertRetrain, out_dir: Path, embedder: Embedder) -> Manifest:
    """Train ``update``'s recipe on its data into ``out_dir`` (delta, length head, built graphs); its manifest."""
    m = prior.artifact.manifest
    ctx = TrainContext(encoder_dir=embedder.encoder_dir, cache_dir=embedder.cache_dir, threads=embedder.threads)
    data = update.training_data(prior.strong, prior.weak)
    print(f"training data: {data.provenance()}", flush=True)
    train_recipe(update.recipe, data, Target(out_dir, m.name, prior.strong, prior.weak, update.recipe.seed), ctx)
    path = out_dir / MANIFEST_NAME
    return parse_manifest(read_json_file(path, missing="manifest not found"), path)
