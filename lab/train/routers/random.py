"""The random kind: no training; a hash of the prompt and ``params.seed`` (docs/artifacts.md)."""

from __future__ import annotations

from pathlib import Path

from lab.train.data import TrainingData
from lab.train.jobs import ExampleInputs, NoSettings, Target, TrainContext, Trainer, write_example
from lab.train.output import provenance, write_artifact
from scorer.artifacts import EncoderSpec


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


def _train(
    data: TrainingData | None, target: Target, spec: EncoderSpec, settings: NoSettings, ctx: TrainContext
) -> Path:
    return write_random_artifact(target)


def _example(dest: Path, ex: ExampleInputs) -> None:
    write_example(dest, "random", ex, {}, params={"seed": ex.seed})


TRAINER = Trainer(
    kind="random",
    settings=NoSettings,
    train=_train,
    example=_example,
    help="the random baseline (no training data)",
    needs_data=False,
)
