"""How a router kind is trained: the lab's half of the router registry.

The kinds are the scorer's (``scorer.routers.ROUTERS``, declared once). The kind ``K`` is trained
by the module ``lab/train/routers/K.py``, which defines ``TRAINER``: its settings (a frozen
dataclass whose fields a recipe's ``[settings]`` table sets), the function that trains an
artifact, and a writer of a small untrained example artifact for tests. ``ferryman train``,
cross-fitting and the harness's test routers all find trainers through :func:`trainer_for`.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferryman import paths
from lab.data.embed_cache import embed_cached
from lab.train.data import TrainingData
from scorer.artifacts import EncoderSpec
from scorer.encoder import Encoder, model_file
from scorer.graphs.build import build_encoder
from scorer.routers import ROUTER_KINDS


@dataclass(frozen=True)
class Target:
    """Where and under which name an artifact is written, and which pair is the default."""

    out_dir: Path
    name: str
    strong: str
    weak: str
    seed: int = 0


@dataclass
class TrainContext:
    """What a training run provides besides data and settings: files, threads, device, caches."""

    encoder_dir: Path = field(default_factory=paths.encoder_dir)
    cache_dir: Path | None = None
    threads: int = 2
    device: str = "cpu"
    build_onnx: bool = True
    #: Every prompt a series of runs will train on (cross-fitting: the full data), so a trainer can
    #: prepare work once for all of them (BERT caches the frozen layers' states of these prompts).
    pool: TrainingData | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    _encoders: dict[EncoderSpec, Encoder] = field(default_factory=dict)

    def encoder(self, spec: EncoderSpec) -> Encoder:
        """The int8 ONNX encoder with this window and depth (one per spec, loaded on first use).

        A truncated depth (``spec.layers``) whose graphs are not in ``encoder_dir`` yet is built
        there first (``ferryman build encoder --layers N``), so a recipe that names one trains as is.
        """
        if spec not in self._encoders:
            if not (self.encoder_dir / model_file("int8", unpadded=True, layers=spec.layers)).is_file():
                build_encoder(self.encoder_dir, layers=[spec.layers])
            self._encoders[spec] = Encoder(self.encoder_dir, precision="int8", spec=spec, threads=self.threads)
        return self._encoders[spec]

    def with_pool(self, pool: TrainingData) -> TrainContext:
        """This context for a series of runs over subsets of ``pool`` (its own ``shared``, the same encoders)."""
        return dataclasses.replace(self, pool=pool, shared={})


@dataclass(frozen=True)
class ExampleInputs:
    """Synthetic inputs for an untrained example artifact (the harness's test routers)."""

    models: tuple[str, ...]  # every model, strongest first
    strong: str
    weak: str
    prompts: tuple[str, ...]
    strong_rate: np.ndarray  # per prompt: how often the stronger model tends to win
    rng: np.random.Generator
    encoder: Encoder
    seed: int


TrainFn = Callable[[TrainingData | None, Target, EncoderSpec, Any, TrainContext], Path]
ExampleFn = Callable[[Path, ExampleInputs], None]


@dataclass(frozen=True)
class Trainer:
    """One router kind's training: ``settings`` type, ``train`` and ``example`` functions."""

    kind: str
    settings: type  # a frozen dataclass with defaults
    train: TrainFn
    example: ExampleFn
    help: str
    needs_data: bool = True  # False: the artifact is written without training data (random)

    def __post_init__(self) -> None:
        if not (isinstance(self.settings, type) and is_dataclass(self.settings)):
            raise TypeError(f"{self.kind}: Trainer.settings must be a dataclass type")


def trainer_for(kind: str) -> Trainer:
    """The trainer of a router kind the scorer serves (``lab/train/routers/<kind>.py``)."""
    if kind not in ROUTER_KINDS:
        raise ValueError(f"unknown router kind {kind!r}; the scorer serves {', '.join(ROUTER_KINDS)}")
    module = importlib.import_module(f"lab.train.routers.{kind}")
    trainer = getattr(module, "TRAINER", None)
    if not isinstance(trainer, Trainer) or trainer.kind != kind:
        raise TypeError(f"lab/train/routers/{kind}.py must define TRAINER = Trainer(kind={kind!r}, ...)")
    return trainer


def embedded(
    data: TrainingData, target: Target, encoder: Encoder, cache_dir: Path | None
) -> tuple[list[str], np.ndarray]:
    """The data's models (the target pair checked against them) and its prompt embeddings (cached)."""
    models = data.models
    for m in (target.strong, target.weak):
        if m not in models:
            raise ValueError(f"model {m!r} does not occur in the training data (models: {', '.join(models)})")
    return models, embed_cached(data.prompts(), encoder, cache_dir)


def report(kind: str, target: Target, t0: float) -> float:
    """Print and return the wall time of a run."""
    wall = time.perf_counter() - t0
    print(f"{kind} router {target.name!r} written to {target.out_dir} in {wall:.1f} s", flush=True)
    return wall


def settings_provenance(settings: object) -> dict[str, str]:
    """``cfg_<field>`` provenance entries of a settings dataclass."""
    return {f"cfg_{k}": str(v) for k, v in asdict(settings).items()}  # type: ignore[call-overload]


def require_data(data: TrainingData | None, kind: str) -> TrainingData:
    if data is None:
        raise ValueError(f"{kind} needs training data")
    return data


@dataclass(frozen=True)
class NoSettings:
    """Settings of a kind that has none."""


def write_example(
    dest: Path,
    kind: str,
    ex: ExampleInputs,
    files: dict[str, str],
    *,
    models: tuple[str, ...] | None = None,
    params: dict[str, Any] | None = None,
    encoder: EncoderSpec | None = None,
) -> None:
    """The manifest of an example artifact whose ``files`` are already in ``dest`` (version ``test-1``)."""
    from lab.train.output import write_artifact

    write_artifact(
        dest,
        name=dest.name,
        kind=kind,
        models=list(models or ex.models),
        strong=ex.strong,
        weak=ex.weak,
        committed=files,
        encoder=encoder,
        prov={"data": "synthetic example artifact (untrained)", "builder": f"lab.train.routers.{kind}"},
        params=params,
        version="test-1",
    )
