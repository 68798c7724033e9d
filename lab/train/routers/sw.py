"""Training the sw kind: store the training prompts' embeddings (optionally PLS-projected) with the battles."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

from lab.train.data import TrainingData
from lab.train.jobs import (
    ExampleInputs,
    Target,
    TrainContext,
    Trainer,
    embedded,
    report,
    require_data,
    settings_provenance,
    write_example,
)
from lab.train.output import provenance, write_artifact
from lab.train.sw import SW_PARAMS, SWConfig, learn_projection, save_sw, sw_params
from scorer.artifacts import EncoderSpec
from scorer.encoder import Encoder


def train_sw_artifact(
    data: TrainingData, target: Target, encoder: Encoder, config: SWConfig, *, cache_dir: Path | None
) -> Path:
    """Embed the prompts (cached), learn the projection if asked, store them with the battles (``SWConfig``)."""
    t0 = time.perf_counter()
    models, emb = embedded(data, target, encoder, cache_dir)
    projection = None
    extra: dict[str, str] = {}
    if config.projection_dim:
        projection, battles = learn_projection(data, emb, target.strong, target.weak, config)
        extra["sw_projection"] = (
            f"PLS1, {config.projection_dim} directions, {battles} {target.strong} vs {target.weak} battles"
        )
    files = save_sw(target.out_dir, data, emb, models, projection)
    wall = time.perf_counter() - t0
    write_artifact(
        target.out_dir,
        name=target.name,
        kind="sw",
        models=models,
        strong=target.strong,
        weak=target.weak,
        committed=files,
        encoder=encoder.spec,
        prov=provenance(data.provenance(), seed=target.seed, wall_s=wall, **extra, **settings_provenance(config)),
        params=sw_params(config),
    )
    report("sw", target, t0)
    return target.out_dir


def _train(data: TrainingData | None, target: Target, spec: EncoderSpec, settings: SWConfig, ctx: TrainContext) -> Path:
    return train_sw_artifact(require_data(data, "sw"), target, ctx.encoder(spec), settings, cache_dir=ctx.cache_dir)


def _example(dest: Path, ex: ExampleInputs) -> None:
    """The example prompts' embeddings and one synthetic battle per prompt and model pair."""
    emb = ex.encoder.encode(list(ex.prompts))
    np.save(dest / "embeddings.npy", emb.astype(np.float16))
    rows = []
    for p, pair in itertools.product(range(len(ex.prompts)), itertools.combinations(range(len(ex.models)), 2)):
        a, b = pair
        # Lower index = stronger model; the prompt decides how often strength shows.
        u = ex.rng.random()
        edge = ex.strong_rate[p] * (1.0 - 0.15 * (b - a - 1))
        outcome = 0 if u < edge * 0.8 else (2 if u < edge * 0.8 + 0.15 else 1)
        rows.append((p, a, b, outcome) if ex.rng.random() < 0.5 else (p, b, a, {0: 1, 1: 0, 2: 2}[outcome]))
    arr = np.array(rows)
    np.savez(
        dest / "battles.npz",
        prompt_idx=arr[:, 0].astype(np.int32),
        model_a=arr[:, 1].astype(np.int16),
        model_b=arr[:, 2].astype(np.int16),
        outcome=arr[:, 3].astype(np.int8),
    )
    files = {"embeddings": "embeddings.npy", "battles": "battles.npz"}
    write_example(dest, "sw", ex, files, params=dict(SW_PARAMS), encoder=EncoderSpec())


TRAINER = Trainer(
    kind="sw",
    settings=SWConfig,
    train=_train,
    example=_example,
    help="similarity-weighted Bradley-Terry over stored battles (RouteLLM's SW ranking)",
)
