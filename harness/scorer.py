"""Test helpers for every part of Ferryman: small valid router artifacts and a real in-process scorer.

``build_test_routers(dest)`` writes an artifact of every router kind that follows
``docs/artifacts.md`` exactly (manifests with hashes and a calibration table), with untrained
but deterministic weights (each kind's trainer writes its example). ``scorer_in_thread(dir)``
starts a real scorer on 127.0.0.1 (port 0) in a background thread with its own event loop and
yields its address (it wraps ``scorer.server.serving_in_thread``, the scorer's embedded runner;
async code uses ``scorer.server.serving`` directly). Only tests and benchmarks use this module;
the example BERT graph is built with the ``onnx`` package (train extra), imported lazily.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from ferryman import paths
from lab.train.jobs import ExampleInputs, trainer_for
from scorer import versions
from scorer.artifacts import ArtifactFile, Calibration, CalibrationPoint, load_artifact, sha256_of, write_manifest
from scorer.config import ScorerConfig
from scorer.encoder import ENCODER_META, TOKENIZER_FILE, Encoder, model_file
from scorer.routers import ROUTER_KINDS
from scorer.server import ScorerServer, serving_in_thread

DEFAULT_ENCODER_DIR = paths.encoder_dir().resolve()  # $FERRYMAN_ENCODER_DIR or build/encoder (ferryman.paths)
STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
TEST_MODELS = (STRONG, WEAK, "claude-2.1", "gpt-3.5-turbo-1106")
TEST_ROUTERS = ROUTER_KINDS  # one test artifact of every kind the scorer serves


def copy_full_encoder(dest: Path, src: Path = DEFAULT_ENCODER_DIR) -> Path:
    """A copy of an encoder directory's full-depth files only (no truncated ``.LN`` graphs), at ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    names = (ENCODER_META, TOKENIZER_FILE, model_file("fp32"), model_file("int8"), model_file("int8", unpadded=True))
    for name in names:
        shutil.copyfile(src / name, dest / name)
    return dest


_TOPICS = {
    # topic -> how much the strong model tends to win (SW battles are drawn from this)
    "prove this theorem about prime numbers": 0.85,
    "write a Python function that merges two sorted lists": 0.8,
    "debug this SQL query that joins three tables": 0.75,
    "derive the gradient of the softmax cross-entropy loss": 0.8,
    "summarise this paragraph about the French revolution": 0.45,
    "write a short poem about autumn leaves": 0.35,
    "say hello to my friend in Spanish": 0.2,
    "suggest a name for my new puppy": 0.25,
    "what is the capital of Australia": 0.15,
    "plan a three-day trip to Rome on a budget": 0.4,
}
_STYLES = ("Please {t}.", "Can you {t}?", "I need help: {t}.", "Quickly {t}, thanks.", "{t} — explain step by step.")
SAMPLE_PROMPTS: tuple[str, ...] = tuple(s.format(t=t) for t, s in itertools.product(_TOPICS, _STYLES))


def _calibrate(dest: Path, encoder_dir: Path) -> None:
    """Fill each manifest's calibration table from its scores on ``SAMPLE_PROMPTS``."""
    from scorer.core import ScoreQuery, ScorerCore

    core = ScorerCore.load(dest, encoder_dir)
    shares = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    for name in core.routers:
        scores = np.array([r.strong_win_rate for r in core.score([ScoreQuery(name, p) for p in SAMPLE_PROMPTS])])
        # Share s goes strong when score >= the (1 - s) quantile; share 0 needs a threshold above every score.
        points = tuple(
            CalibrationPoint(s, float(np.nextafter(scores.max(), 2.0)) if s == 0 else float(np.quantile(scores, 1 - s)))
            for s in shares
        )
        artifact = load_artifact(dest / name)
        cal = Calibration(reference="harness.scorer.SAMPLE_PROMPTS", points=points)
        write_manifest(dest / name, replace(artifact.manifest, calibration=cal))


def build_test_routers(
    dest: Path, encoder: Encoder | None = None, *, encoder_dir: Path = DEFAULT_ENCODER_DIR, seed: int = 7
) -> Path:
    """Write a small valid artifact ``dest/<kind>`` of every router kind and return ``dest``.

    The kinds are the scorer's registry (``scorer.routers.ROUTERS``); each artifact is its
    trainer's untrained example (``lab/train/routers/<kind>.py``), over ``TEST_MODELS`` and
    ``SAMPLE_PROMPTS``, then calibrated on ``SAMPLE_PROMPTS``. ``encoder`` embeds the example
    prompts (default: the int8 encoder in ``encoder_dir``, which must be built: ``ferryman build
    encoder``). Deterministic for a given seed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    inputs = ExampleInputs(
        models=TEST_MODELS,
        strong=STRONG,
        weak=WEAK,
        prompts=SAMPLE_PROMPTS,
        strong_rate=np.repeat(np.array(list(_TOPICS.values())), len(_STYLES)),
        rng=np.random.default_rng(seed),
        encoder=encoder or Encoder(encoder_dir),
        seed=seed,
    )
    for kind in TEST_ROUTERS:
        (dest / kind).mkdir(exist_ok=True)
        trainer_for(kind).example(dest / kind, inputs)
    _calibrate(dest, encoder_dir)
    return dest


def add_flipped_mf_version(router_dir: Path) -> str:
    """A new version of an MF router directory whose every preference is reversed (score -> 1 - score).

    Written with ``scorer.versions.new_version`` and not serving until its pointer moves; for
    reload tests, where each answer's score tells which version produced it. Its calibration is
    the base's mirrored (share s: 1 - the base's threshold for 1 - s), as the flipped scores need.
    """
    base = load_artifact(router_dir)
    cal = base.manifest.calibration
    if cal is not None:
        mirrored = [CalibrationPoint(1 - p.strong_share, 1 - p.threshold) for p in reversed(cal.points)]
        cal = Calibration(reference=f"mirrored {cal.reference}", points=tuple(mirrored))
    with versions.new_version(router_dir) as (version, tmp), np.load(base.path("weights")) as data:
        weights = {k: data[k] for k in data.files}
        for key in ("classifier", "model_bias"):
            weights[key] = -weights[key]
        np.savez(tmp / "weights.npz", **weights)  # type: ignore[arg-type]
        files = {"weights": ArtifactFile("weights.npz", sha256_of(tmp / "weights.npz"))}
        write_manifest(tmp, replace(base.manifest, version=version, files=files, calibration=cal))
    return version


def config_for_tests(routers_dir: Path, encoder_dir: Path = DEFAULT_ENCODER_DIR, **overrides: object) -> ScorerConfig:
    """A ``ScorerConfig`` for tests: loopback, port 0, no metrics endpoint."""
    base: dict[str, object] = {
        "routers_dir": routers_dir,
        "encoder_dir": encoder_dir,
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "grace_s": 5.0,
    }
    base.update(overrides)
    return ScorerConfig(**base)  # type: ignore[arg-type]


@contextmanager
def scorer_in_thread(routers_dir: Path, encoder_dir: Path = DEFAULT_ENCODER_DIR, **overrides: object) -> Iterator[str]:
    """Run a real scorer on its own event loop in a daemon thread; yields ``"127.0.0.1:PORT"``."""
    with serving_in_thread(config_for_tests(routers_dir, encoder_dir, **overrides)) as address:
        yield address


@contextmanager
def loading_scorer(routers_dir: Path, encoder_dir: Path = DEFAULT_ENCODER_DIR, **overrides: object) -> Iterator[str]:
    """A real scorer stuck where a restarted one is until its routers are loaded: listening, health
    NOT_SERVING, every Score UNAVAILABLE ("routers are still loading"); yields ``"HOST:PORT"``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loading-scorer", daemon=True)
    thread.start()
    config = config_for_tests(routers_dir, encoder_dir, **overrides)

    async def start() -> tuple[ScorerServer, int]:
        server = ScorerServer(config)  # its grpc.aio server belongs to the loop that creates it
        return server, await server.start()

    server: ScorerServer | None = None
    try:
        server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        yield f"{config.host}:{port}"
    finally:
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
