"""Training the mf kind: embed the prompts, fit matrix factorisation, write ``weights.npz``."""

from __future__ import annotations

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
from lab.train.mf import MFConfig, save_weights, train_mf
from lab.train.output import provenance, write_artifact
from scorer.artifacts import EncoderSpec
from scorer.encoder import Encoder
from scorer.routers.length_head import PARAM as LENGTH_HEAD


def train_mf_artifact(
    data: TrainingData, target: Target, encoder: Encoder, config: MFConfig, *, cache_dir: Path | None
) -> Path:
    """Embed the prompts (cached), train MF, write ``weights.npz`` + manifest."""
    t0 = time.perf_counter()
    models, emb = embedded(data, target, encoder, cache_dir)
    fit = train_mf(data, emb, config, seed=target.seed)
    save_weights(target.out_dir / "weights.npz", fit.weights)
    head = fit.length_head(models.index(target.strong), models.index(target.weak))
    extra = {} if head is None else {"length_beta": f"{head.beta:g}"}
    prov = provenance(
        data.provenance(), seed=target.seed, wall_s=time.perf_counter() - t0, **settings_provenance(config), **extra
    )
    write_artifact(
        target.out_dir,
        name=target.name,
        kind="mf",
        models=models,
        strong=target.strong,
        weak=target.weak,
        committed={"weights": "weights.npz"},
        encoder=encoder.spec,
        prov=prov,
        params=None if head is None else {LENGTH_HEAD: head.to_params()},
    )
    report("mf", target, t0)
    return target.out_dir


def _train(data: TrainingData | None, target: Target, spec: EncoderSpec, settings: MFConfig, ctx: TrainContext) -> Path:
    return train_mf_artifact(require_data(data, "mf"), target, ctx.encoder(spec), settings, cache_dir=ctx.cache_dir)


def _example(dest: Path, ex: ExampleInputs) -> None:
    """Random projections and model vectors (16-d), biases falling from the strongest model."""
    d, m = 16, len(ex.models)
    np.savez(
        dest / "weights.npz",
        text_proj=ex.rng.normal(0, 1.0, (d, 384)).astype(np.float32),
        model_emb=ex.rng.normal(0, 1.0, (m, d)).astype(np.float32),
        classifier=ex.rng.normal(0, 0.3, d).astype(np.float32),
        model_bias=np.linspace(0.5, -0.5, m).astype(np.float32),
    )
    write_example(dest, "mf", ex, {"weights": "weights.npz"}, encoder=EncoderSpec())


TRAINER = Trainer(
    kind="mf",
    settings=MFConfig,
    train=_train,
    example=_example,
    help="matrix factorisation over prompt and model embeddings",
)
