"""Random baseline router: a uniform number from a hash of the prompt and a seed.

Deterministic (same prompt, same score, in any batch) so that batch scoring equals
one-by-one scoring and evaluations are reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from scorer.artifacts import Artifact, Manifest
from scorer.routers.base import LoadContext, ModelNames


def uniform_hash(text: str, seed: str) -> float:
    """A number in [0, 1) from BLAKE2b of ``seed`` and ``text``."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=seed.encode("utf-8")[:64]).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class RandomRouter:
    """Ignores the models; the score depends only on the prompt and ``params.seed``."""

    needs_embeddings = False
    encoder_spec = None

    def __init__(self, artifact: Artifact, ctx: LoadContext) -> None:
        self._manifest = artifact.manifest
        self._names = ModelNames(artifact.manifest, artifact.manifest.params.get("aliases"))
        self.seed = str(artifact.manifest.params.get("seed", 0))

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    def known_models(self) -> tuple[str, ...]:
        return self._names.known()

    def model_index(self, name: str) -> int:
        return self._names.index(name)

    def score(
        self, texts: Sequence[str], embeddings: np.ndarray | None, strong: np.ndarray, weak: np.ndarray
    ) -> np.ndarray:
        return np.array([uniform_hash(t, self.seed) for t in texts], dtype=np.float64)
