"""Score prompts with a router artifact in-process, with the scorer's own router code.

Retraining, the promotion gate and the learning-curve simulation score many
artifacts on the same prompts; they load each artifact with
:func:`scorer.routers.load_router` (exactly what the scorer serves) and feed it
embeddings from the serving encoder through the on-disk cache
(:mod:`lab.data.embed_cache`), so a prompt is embedded once however many
candidates score it. A test checks these scores against a real scorer's
``Score`` answers for the same artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lab.data.embed_cache import embed_cached
from scorer.artifacts import Artifact, EncoderSpec, load_artifact
from scorer.encoder import Encoder
from scorer.routers import LoadContext, Router, load_router


@dataclass
class Embedder:
    """Serving-encoder embeddings per encoder window, cached on disk and in memory."""

    encoder_dir: Path
    cache_dir: Path | None = Path("build/cache")
    threads: int = 1
    progress: bool = True
    _encoders: dict[EncoderSpec, Encoder] = field(default_factory=dict)
    _memo: dict[tuple[EncoderSpec, str], np.ndarray] = field(default_factory=dict)

    def encoder_name(self) -> str:
        """Name of the encoder in ``encoder_dir`` (what artifacts must match)."""
        return str(Encoder.read_meta(self.encoder_dir).get("name", ""))

    def embed(self, prompts: Sequence[str], spec: EncoderSpec) -> np.ndarray:
        """``[len(prompts), 384]`` float32 embeddings with ``spec``'s window."""
        missing = list(dict.fromkeys(p for p in prompts if (spec, p) not in self._memo))
        if missing:
            if spec not in self._encoders:
                self._encoders[spec] = Encoder(self.encoder_dir, precision="int8", spec=spec, threads=self.threads)
            vecs = embed_cached(missing, self._encoders[spec], self.cache_dir, progress=self.progress)
            self._memo.update({(spec, p): v for p, v in zip(missing, vecs, strict=True)})
        if not prompts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._memo[(spec, p)] for p in prompts])


@dataclass(frozen=True)
class ScoringRouter:
    """A loaded artifact and the model pair it is asked to compare."""

    artifact: Artifact
    router: Router
    strong: str
    weak: str

    def score(self, prompts: Sequence[str], embedder: Embedder) -> np.ndarray:
        """Strong-model win rates for ``prompts`` (float64), as the scorer computes them."""
        n = len(prompts)
        spec = self.router.encoder_spec
        emb = embedder.embed(prompts, spec) if self.router.needs_embeddings and spec is not None else None
        si, wi = self.router.model_index(self.strong), self.router.model_index(self.weak)
        strong = np.full(n, si, dtype=np.int64)
        weak = np.full(n, wi, dtype=np.int64)
        return np.asarray(self.router.score(list(prompts), emb, strong, weak), dtype=np.float64)


def load_scoring_router(path: Path, embedder: Embedder, *, strong: str = "", weak: str = "") -> ScoringRouter:
    """Load an artifact directory as the scorer would; the pair defaults to the artifact's default pair."""
    artifact = load_artifact(path)
    ctx = LoadContext(embedder.encoder_dir, embedder.encoder_name(), threads=embedder.threads)
    router = load_router(artifact, ctx)
    m = artifact.manifest
    return ScoringRouter(artifact, router, strong or m.default_strong, weak or m.default_weak)
