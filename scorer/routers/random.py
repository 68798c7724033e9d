"""Random baseline router: a uniform number from a hash of the prompt and a seed.

Deterministic (same prompt, same score, in any batch) so that batch scoring equals
one-by-one scoring and evaluations are reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from scorer.artifacts import Artifact
from scorer.routers.base import LoadContext, RouterBase


def uniform_hash(text: str, seed: str) -> float:
    """A number in [0, 1) from BLAKE2b of ``seed`` and ``text``."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=seed.encode("utf-8")[:64]).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class RandomRouter(RouterBase):
    """Ignores the models; the score depends only on the prompt and ``params.seed``."""

    uses_encoder_window = False

    def __init__(self, artifact: Artifact, ctx: LoadContext) -> None:
        super().__init__(artifact.manifest)
        self.seed = str(artifact.manifest.params.get("seed", 0))

    def score(
        self, texts: Sequence[str], embeddings: np.ndarray | None, strong: np.ndarray, weak: np.ndarray
    ) -> np.ndarray:
        return np.array([uniform_hash(t, self.seed) for t in texts], dtype=np.float64)
