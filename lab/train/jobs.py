"""Train one router into a complete artifact directory (shared by ``ferryman train`` and cross-fitting)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lab.data.embed_cache import embed_cached
from lab.train.bert import LABELS, BertConfig, BertTrainer, bert_labels, bert_weights, changed_layers, save_delta
from lab.train.data import TrainingData
from lab.train.mf import MFConfig, save_weights, train_mf
from lab.train.output import provenance, write_artifact
from lab.train.sw import SWConfig, pls_projection, projection_rows, save_sw, sw_params
from scorer.artifacts import EncoderSpec
from scorer.encoder import Encoder, model_file

# A BERT artifact's graphs are named like the encoder's: masked, and the mask-free twin for unpadded runs.
ONNX_FILE = model_file("int8")
ONNX_UNPADDED_FILE = model_file("int8", unpadded=True)


@dataclass(frozen=True)
class Target:
    """Where and under which name an artifact is written, and which pair is the default."""

    out_dir: Path
    name: str
    strong: str
    weak: str
    seed: int = 0


def _check_pair(target: Target, models: list[str]) -> None:
    for m in (target.strong, target.weak):
        if m not in models:
            raise ValueError(f"model {m!r} does not occur in the training data (models: {', '.join(models)})")


def _embedded(
    data: TrainingData, target: Target, encoder: Encoder, cache_dir: Path | None
) -> tuple[list[str], np.ndarray]:
    """The data's models (the target pair checked against them) and its prompt embeddings (cached)."""
    models = data.models
    _check_pair(target, models)
    return models, embed_cached(data.prompts(), encoder, cache_dir)


def _report(kind: str, target: Target, t0: float) -> float:
    wall = time.perf_counter() - t0
    print(f"{kind} router {target.name!r} written to {target.out_dir} in {wall:.1f} s", flush=True)
    return wall


def train_mf_artifact(
    data: TrainingData, target: Target, encoder: Encoder, config: MFConfig, *, cache_dir: Path | None
) -> Path:
    """Embed the prompts (cached), train MF, write ``weights.npz`` + manifest."""
    t0 = time.perf_counter()
    models, emb = _embedded(data, target, encoder, cache_dir)
    weights = train_mf(data, emb, config, seed=target.seed)
    save_weights(target.out_dir / "weights.npz", weights)
    prov = provenance(data.provenance(), seed=target.seed, wall_s=time.perf_counter() - t0, **_cfg(config))
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
    )
    _report("mf", target, t0)
    return target.out_dir


def train_sw_artifact(
    data: TrainingData, target: Target, encoder: Encoder, config: SWConfig, *, cache_dir: Path | None
) -> Path:
    """Embed the prompts (cached), learn the projection if asked, store them with the battles (``SWConfig``)."""
    t0 = time.perf_counter()
    models, emb = _embedded(data, target, encoder, cache_dir)
    projection = None
    extra: dict[str, str] = {}
    if config.projection_dim:
        x, y = projection_rows(data, emb, target.strong, target.weak)
        projection = pls_projection(x, y, config.projection_dim)
        extra["sw_projection"] = (
            f"PLS1, {config.projection_dim} directions, {len(y)} {target.strong} vs {target.weak} battles"
        )
    files = save_sw(target.out_dir, data, emb, models, projection)
    write_artifact(
        target.out_dir,
        name=target.name,
        kind="sw",
        models=models,
        strong=target.strong,
        weak=target.weak,
        committed=files,
        encoder=encoder.spec,
        prov=provenance(data.provenance(), seed=target.seed, wall_s=time.perf_counter() - t0, **extra, **_cfg(config)),
        params=sw_params(config),
    )
    _report("sw", target, t0)
    return target.out_dir


def train_bert_artifact(
    data: TrainingData,
    target: Target,
    spec: EncoderSpec,
    config: BertConfig,
    *,
    trainer: BertTrainer | None = None,
    device: str = "cpu",
    build_onnx: bool = True,
    cache_dir: Path | None = None,
) -> Path:
    """Probe + fine-tune, write ``delta.npz`` + manifest, then build the ONNX graph from base + delta.

    Pass a ``trainer`` built over a superset of the prompts to reuse its cached
    lower-layer states (cross-fitting trains k models on the same prompts);
    ``cache_dir`` keeps those states on disk between runs.
    """
    t0 = time.perf_counter()
    prompts, labels = bert_labels(data, target.strong, target.weak)
    if trainer is None:
        trainer = BertTrainer(prompts, spec, config.train_layers, device=device, cache_dir=cache_dir)
    elif missing := [p for p in prompts if p not in trainer.index]:
        raise ValueError(f"{len(missing)} training prompts are not in the shared trainer's pool")
    weights = bert_weights(data, target.strong, target.weak, config)
    module = trainer.train(prompts, labels, config, seed=target.seed, weights=weights)
    save_delta(target.out_dir / "delta.npz", trainer.delta(module, config))
    counts = np.bincount(labels, minlength=len(LABELS))
    prov = provenance(
        data.provenance(),
        seed=target.seed,
        wall_s=time.perf_counter() - t0,
        device=device,
        bert_rows=len(labels),
        bert_class_counts=",".join(f"{n}={c}" for n, c in zip(LABELS, counts, strict=True)),
        **_cfg(config),
    )
    write_artifact(
        target.out_dir,
        name=target.name,
        kind="bert",
        models=[target.strong, target.weak],
        strong=target.strong,
        weak=target.weak,
        committed={"delta": "delta.npz"},
        built={"onnx": ONNX_FILE, "onnx_unpadded": ONNX_UNPADDED_FILE},
        encoder=spec,
        prov=prov,
        params={"labels": list(LABELS), "tie_weight": 0.5, "train_layers": changed_layers(config)},
    )
    if build_onnx:
        from lab.train.rebuild import build_bert_onnx

        build_bert_onnx(target.out_dir, force=True)
    _report("bert", target, t0)
    return target.out_dir


def _cfg(config: MFConfig | BertConfig | SWConfig) -> dict[str, str]:
    return {f"cfg_{k}": str(v) for k, v in asdict(config).items()}


def write_random_artifact(target: Target) -> Path:
    """The random baseline: no files, a hash of the prompt and ``params.seed`` (docs/artifacts.md)."""
    write_artifact(
        target.out_dir,
        name=target.name,
        kind="random",
        models=[target.strong, target.weak],
        strong=target.strong,
        weak=target.weak,
        committed={},
        encoder=None,
        prov=provenance({"trained_on": "none"}, seed=target.seed, wall_s=0.0),
        params={"seed": target.seed},
    )
    print(f"random router {target.name!r} written to {target.out_dir}", flush=True)
    return target.out_dir
