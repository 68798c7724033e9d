"""An optional prompt-length term on any router's logit: ``params.length_head`` in a manifest.

Prompt length is the one signal in the public data that carries over to sources a router never
saw (docs/training.md, "What was tried"), so an artifact may add it to whatever the router learnt:

    served logit = the router's logit + beta * clamp((log(1 + characters) - mean) / std, -3, +3)

``characters``: of the text the router scores (the scorer tokenizes only a long prompt's head and
tail, so characters, not tokens, are what it knows exactly). ``mean`` and ``std``: of
``log(1 + characters)`` over the router's training prompts, so ``beta`` is in logit units per
standard deviation of the training lengths. The standardised length is clamped at
:data:`Z_LIMIT` = 3 training standard deviations: the head was fitted on the lengths of its
training prompts and is not extrapolated beyond them (a 96,000-character RAG prompt is z ~ 7.5 on
the shipped routers' lengths: unclamped that would add 2.25 logits; clamped the term is at most
3 * beta). The constant is fixed, not tuned on any score. The term changes the strong model's
win rate against the weak one for every pair alike. The term is applied here, in one place for every router kind:
``scorer.routers.load_router`` wraps the kind's router, so the scorer, calibration, evaluation
and the learning loop all see the same win rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scorer.artifacts import LENGTH_HEAD_PARAM, EncoderSpec, Manifest
from scorer.errors import ArtifactError
from scorer.routers.base import Router, logit, sigmoid

PARAM = LENGTH_HEAD_PARAM
Z_LIMIT = 3.0  # the standardised length is clamped to [-Z_LIMIT, +Z_LIMIT]: three training sd, fixed
_FIELDS = ("beta", "mean", "std")


@dataclass(frozen=True)
class LengthHead:
    """``beta * clamp((log1p(len(text)) - mean) / std, -Z_LIMIT, Z_LIMIT)``, added to a router's logit."""

    beta: float
    mean: float
    std: float

    def __post_init__(self) -> None:
        values = (self.beta, self.mean, self.std)
        if not all(math.isfinite(v) for v in values) or self.std <= 0:
            raise ValueError(f"length head needs finite beta, mean and std > 0, got {values}")

    @classmethod
    def of_lengths(cls, beta: float, texts: Sequence[str]) -> LengthHead:
        """The head with ``beta`` whose mean and std are those of ``texts`` (a router's training prompts)."""
        z = log_chars(texts)
        if len(z) < 2 or float(z.std()) <= 0:
            raise ValueError("a length head needs at least two training prompts of different lengths")
        return cls(float(beta), float(z.mean()), float(z.std()))

    def z(self, texts: Sequence[str]) -> np.ndarray:
        """The standardised log-length ``[B]`` of each text, unclamped."""
        return np.asarray((log_chars(texts) - self.mean) / self.std)

    def clamped_z(self, texts: Sequence[str]) -> np.ndarray:
        """The standardised log-length ``[B]`` of each text, clamped to +-:data:`Z_LIMIT`."""
        return np.asarray(np.clip(self.z(texts), -Z_LIMIT, Z_LIMIT))

    def shift(self, texts: Sequence[str]) -> np.ndarray:
        """The logit term ``[B]`` of each text (beta times its clamped z)."""
        return np.asarray(self.beta * self.clamped_z(texts))

    def apply(self, rates: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Win rates with the term added to their logit."""
        return sigmoid(logit(rates) + self.shift(texts))

    def scaled(self, factor: float) -> LengthHead:
        """The same head with ``beta * factor`` (a correction that scales the whole prior logit)."""
        return LengthHead(self.beta * factor, self.mean, self.std)

    def to_params(self) -> dict[str, float]:
        """The manifest's ``params.length_head`` object."""
        return {"beta": self.beta, "mean": self.mean, "std": self.std}


def log_chars(texts: Sequence[str]) -> np.ndarray:
    """``log(1 + characters)`` of each text, float64 ``[B]``."""
    return np.log1p(np.fromiter((len(t) for t in texts), dtype=np.float64, count=len(texts)))


def parse(params: Mapping[str, Any], where: Path) -> LengthHead | None:
    """The manifest's ``params.length_head``, validated (``ArtifactError`` naming ``where``); None without one."""
    raw = params.get(PARAM)
    if raw is None:
        return None
    ok = isinstance(raw, dict) and set(raw) == set(_FIELDS)
    ok = ok and all(isinstance(raw[k], (int, float)) and not isinstance(raw[k], bool) for k in _FIELDS)
    if not ok:
        raise ArtifactError(f"{where}: params.{PARAM} must be an object with numbers {', '.join(_FIELDS)}, is {raw!r}")
    try:
        return LengthHead(*(float(raw[k]) for k in _FIELDS))
    except ValueError as exc:
        raise ArtifactError(f"{where}: params.{PARAM}: {exc}") from None


class LengthHeaded:
    """A router whose win rates carry a :class:`LengthHead`; everything else is the wrapped router's."""

    def __init__(self, inner: Router, head: LengthHead) -> None:
        self.inner = inner
        self.head = head

    @property
    def manifest(self) -> Manifest:
        return self.inner.manifest

    @property
    def needs_embeddings(self) -> bool:
        return self.inner.needs_embeddings

    @property
    def encoder_spec(self) -> EncoderSpec | None:
        return self.inner.encoder_spec

    def known_models(self) -> tuple[str, ...]:
        return self.inner.known_models()

    def model_index(self, name: str) -> int:
        return self.inner.model_index(name)

    def score(
        self, texts: Sequence[str], embeddings: np.ndarray | None, strong: np.ndarray, weak: np.ndarray
    ) -> np.ndarray:
        return self.head.apply(self.inner.score(texts, embeddings, strong, weak), texts)

    def __getattr__(self, name: str) -> Any:
        # kind-specific attributes (e.g. SW's win_matrices) of the wrapped router
        return getattr(self.inner, name)
