"""The one protocol every router implements, and what routers share.

A router turns a batch of prompts into strong-model win rates. Routers that
embed prompts (MF, SW) declare ``needs_embeddings`` and receive the shared
encoder's vectors, so one encoder pass serves every such router; the others
(BERT, random) work from the texts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from scorer.artifacts import Artifact, EncoderSpec, Manifest
from scorer.encoder import Threads
from scorer.errors import ArtifactError, UnknownModelError


@dataclass(frozen=True)
class LoadContext:
    """What loaders need besides the artifact: the encoder directory and thread budget (``Threads``)."""

    encoder_dir: Path
    encoder_name: str
    threads: Threads | int = 1
    # Sequences per ONNX run. 1 (default) makes every score independent of its batch
    # mates: padding and GEMM shapes change float rounding (~1e-7) and dynamically
    # quantised graphs pick their scales per batch. On CPU the cost is per token, so
    # padded multi-row runs are not faster (see docs in scorer.encoder.length_buckets).
    rows_per_run: int = 1
    #: SHA-256 of the base encoder files the served encoder was written from, as its ``encoder.json`` records
    #: them (``Encoder.base_digests``); None: unknown (an encoder built before they were recorded), not checked.
    encoder_base: Mapping[str, str] | None = None


class Router(Protocol):
    """A loaded router artifact."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def needs_embeddings(self) -> bool:
        """True when ``score`` needs the shared encoder's embeddings of the texts."""
        ...

    @property
    def encoder_spec(self) -> EncoderSpec | None:
        """Window/truncation of the shared encoder this router uses (None: no encoder)."""
        ...

    def known_models(self) -> tuple[str, ...]:
        """Every model name ``model_index`` accepts."""
        ...

    def model_index(self, name: str) -> int:
        """Index of a model name (or alias); raises ``UnknownModelError``."""
        ...

    def score(
        self, texts: Sequence[str], embeddings: np.ndarray | None, strong: np.ndarray, weak: np.ndarray
    ) -> np.ndarray:
        """Win rates in [0, 1] (float64 ``[B]``) of ``strong[i]`` over ``weak[i]`` on ``texts[i]``."""
        ...


class ModelNames:
    """Resolves model names (and aliases, e.g. model → tier) to indices into ``models``."""

    def __init__(self, manifest: Manifest, aliases: Mapping[str, str] | None = None) -> None:
        self._index = {m: i for i, m in enumerate(manifest.models)}
        self._models = manifest.models
        where = f"manifest {manifest.name!r}"
        for name, unit in (aliases or {}).items():
            if unit not in self._index:
                raise ArtifactError(f"{where}: alias {name!r} points to unknown model {unit!r}")
            self._index.setdefault(name, self._index[unit])
        self.router = manifest.name

    def known(self) -> tuple[str, ...]:
        """The artifact's models in manifest order, then aliases sorted."""
        return self._models + tuple(sorted(set(self._index) - set(self._models)))

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            known = ", ".join(self.known())
            raise UnknownModelError(f"router {self.router!r} has no model {name!r}; known models: {known}") from None


class RouterBase:
    """What every router shares: its manifest, model-name resolution and encoder window."""

    needs_embeddings: bool = False
    uses_encoder_window: bool = True  # False: the router never tokenizes (random)

    def __init__(self, manifest: Manifest, *, aliases: bool = True) -> None:
        self._manifest = manifest
        self._names = ModelNames(manifest, manifest.params.get("aliases") if aliases else None)
        self._spec = (manifest.encoder or EncoderSpec()) if self.uses_encoder_window else None

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def encoder_spec(self) -> EncoderSpec | None:
        return self._spec

    def known_models(self) -> tuple[str, ...]:
        return self._names.known()

    def model_index(self, name: str) -> int:
        return self._names.index(name)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64))))


def logit(p: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``log(p / (1 - p))``, the inverse of :func:`sigmoid`, with ``p`` clipped to ``[eps, 1 - eps]``."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


def load_arrays(artifact: Artifact, role: str, required: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file; ``required`` maps array name to its number of dimensions."""
    path = artifact.path(role)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable .npz file ({exc})") from exc
    for key, ndim in required.items():
        if key not in arrays:
            raise ArtifactError(f"{path}: missing array {key!r}")
        if arrays[key].ndim != ndim:
            raise ArtifactError(f"{path}: array {key!r} must have {ndim} dimensions, has {arrays[key].ndim}")
    return arrays


def check(cond: bool, path: Path, what: str) -> None:
    """Raise an ``ArtifactError`` naming ``path`` unless ``cond``."""
    if not cond:
        raise ArtifactError(f"{path}: {what}")
