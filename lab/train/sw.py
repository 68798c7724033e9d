"""Similarity-weighted Elo (SW) router: store training prompts and battle outcomes.

SW fits no model of the outcome: at query time the scorer weights every stored
battle by the similarity of its prompt to the query and fits Bradley–Terry
ratings (docs/artifacts.md). Training embeds the distinct training prompts and
writes the battles as index arrays, plus the choices of :class:`SWConfig`:

- ``weight_exponent`` (``params.weight_exponent``): how sharply the similarity
  weighting favours the nearest prompts (1 = RouteLLM's weighting);
- ``projection_dim`` (``files.projection``): measure similarity in a
  ``d``-dimensional space learnt from the training labels (PLS1 directions of the
  default strong-vs-weak battles) instead of the raw embedding space, whose
  nearest neighbours are topical rather than about which model wins; the stored
  embeddings are then the projected ones (``d`` floats per prompt);
- ``top_k`` (``params.top_k``): only the battles of the ``k`` most similar prompts;
- ``within_groups``: the PLS targets are centred per group of prompts (a source, or MMLU's
  subject), so the directions follow what ranks prompts within a group rather than which group
  they look like (issue #10, docs/lab-log.md 2026-12-05; a training choice, nothing is served
  differently);
- ``length_residual``: the PLS projection is learnt from embeddings with their length direction
  projected out (:mod:`lab.train.length_resid`) and the projection folded into its matrix, so the
  similarity space carries no linear trace of length and serving is unchanged (needs
  ``projection_dim``: raw-cosine SW stores raw embeddings, which nothing could fold it into).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.train.data import A_WINS, B_WINS, TrainingData, pair_groups
from lab.train.length_resid import length_direction, project_out
from scorer.routers.mf import EMBED_DIM
from scorer.routers.sw import MAX_WEIGHT_EXPONENT, Projection

SW_PARAMS = {"scale": 400, "base": 10, "init_rating": 1000}


@dataclass(frozen=True)
class SWConfig:
    """SW training choices; the defaults are RouteLLM's SW."""

    weight_exponent: float = 1.0
    projection_dim: int = 0  # 0: cosine of the raw encoder embeddings
    top_k: int = 0  # 0: every battle counts
    within_groups: bool = False  # PLS targets centred per group (lab.train.data.pair_groups)
    length_residual: bool = False  # PLS on embeddings with their length direction projected out

    def __post_init__(self) -> None:
        if not 0 < self.weight_exponent <= MAX_WEIGHT_EXPONENT:
            raise ValueError(f"SW weight exponent must be in (0, {MAX_WEIGHT_EXPONENT:g}], is {self.weight_exponent}")
        if not 0 <= self.projection_dim <= EMBED_DIM:
            raise ValueError(f"SW projection dim must be in [0, {EMBED_DIM}] (0 = none), is {self.projection_dim}")
        if self.top_k < 0:
            raise ValueError(f"SW top-k must be >= 0 (0 = every battle), is {self.top_k}")
        if self.length_residual and not self.projection_dim:
            raise ValueError("SW length_residual needs projection_dim >= 1 (it is folded into the PLS projection)")


def sw_params(config: SWConfig) -> dict[str, float]:
    """Manifest params; the optional ones are written only when they differ from RouteLLM's SW."""
    params: dict[str, float] = dict(SW_PARAMS)
    if config.weight_exponent != 1.0:
        params["weight_exponent"] = config.weight_exponent
    if config.top_k:
        params["top_k"] = config.top_k
    return params


def pls_projection(x: np.ndarray, y: np.ndarray, dim: int) -> Projection:
    """PLS1 (NIPALS) of ``y [n]`` on ``x [n, 384]``: the ``dim`` directions of ``x`` most covariant with ``y``.

    Returns the rotation that maps a centred embedding to its PLS scores, so that
    serving projects a query exactly as the training rows were decomposed.
    """
    if dim < 1 or dim > min(x.shape):
        raise ValueError(f"PLS needs 1 <= dim <= min(rows, features) = {min(x.shape)}, got {dim}")
    mean = x.mean(axis=0)
    xr = np.asarray(x, dtype=np.float64) - mean
    yr = np.asarray(y, dtype=np.float64) - float(np.mean(y))
    weights, loadings = [], []
    for i in range(dim):
        w = xr.T @ yr
        norm = np.linalg.norm(w)
        if norm <= 1e-12:
            raise ValueError(f"the labels carry no signal beyond {i} PLS directions; use a smaller projection dim")
        w /= norm
        t = xr @ w
        tt = float(t @ t)
        p = xr.T @ t / tt
        xr -= np.outer(t, p)
        yr = yr - (float(yr @ t) / tt) * t
        weights.append(w)
        loadings.append(p)
    wm, pm = np.array(weights).T, np.array(loadings).T  # [384, dim]
    rotation = wm @ np.linalg.inv(pm.T @ wm)
    return Projection(mean=mean, matrix=rotation.T)


def learn_projection(
    data: TrainingData, embeddings: np.ndarray, strong: str, weak: str, config: SWConfig
) -> tuple[Projection, int]:
    """The PLS similarity space of ``config`` (``projection_dim`` >= 1) from the rows of ``data.prompts()``,
    and how many ``strong`` vs ``weak`` battles it was learnt from."""
    direction = length_direction(embeddings, data.prompts()) if config.length_residual else None
    inputs = embeddings if direction is None else project_out(embeddings, direction)
    x, y = projection_rows(data, inputs, strong, weak, within_groups=config.within_groups)
    projection = pls_projection(x, y, config.projection_dim)
    if direction is not None:
        # the mean of residualised rows has no component along the direction: only the matrix is folded
        projection = Projection(mean=projection.mean, matrix=project_out(projection.matrix, direction))
    return projection, len(y)


def projection_rows(
    data: TrainingData, embeddings: np.ndarray, strong: str, weak: str, *, within_groups: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and targets (1 strong wins, 1/2 tie, 0 weak wins) of the strong-vs-weak battles.

    ``embeddings`` are rows of ``data.prompts()``. Battles of other model pairs do not
    say which way the default pair goes, so they do not shape the projection. With
    ``within_groups`` each target has its group's mean target subtracted.
    """
    row = {p: i for i, p in enumerate(data.prompts())}
    idx, target, kept = [], [], []
    for k, p in enumerate(data.pairs):
        if {p.model_a, p.model_b} != {strong, weak}:
            continue
        a_score = 1.0 if p.outcome == A_WINS else 0.0 if p.outcome == B_WINS else 0.5
        idx.append(row[p.prompt])
        target.append(a_score if p.model_a == strong else 1.0 - a_score)
        kept.append(k)
    y = np.array(target)
    if within_groups and len(y):
        g = pair_groups(data)[0][np.array(kept, dtype=np.int64)]
        y = y - (np.bincount(g, weights=y) / np.maximum(np.bincount(g), 1))[g]
    return embeddings[np.array(idx, dtype=np.int64)], y


def battle_arrays(data: TrainingData, models: list[str]) -> dict[str, np.ndarray]:
    """The arrays of ``battles.npz``: prompt_idx (into data.prompts()), model_a, model_b, outcome."""
    if len(models) > np.iinfo(np.int16).max:
        raise ValueError(f"too many models for int16 indices: {len(models)}")
    prompt_idx = {p: i for i, p in enumerate(data.prompts())}
    model_idx = {m: i for i, m in enumerate(models)}
    return {
        "prompt_idx": np.array([prompt_idx[p.prompt] for p in data.pairs], dtype=np.int32),
        "model_a": np.array([model_idx[p.model_a] for p in data.pairs], dtype=np.int16),
        "model_b": np.array([model_idx[p.model_b] for p in data.pairs], dtype=np.int16),
        "outcome": np.array([p.outcome for p in data.pairs], dtype=np.int8),
    }


def save_sw(
    out_dir: Path, data: TrainingData, embeddings: np.ndarray, models: list[str], projection: Projection | None = None
) -> dict[str, str]:
    """Write ``embeddings.npy``, ``battles.npz`` and (with a projection) ``projection.npz``; returns ``files`` roles.

    Raw embeddings are stored as fp16 ``[N, 384]``; with a projection, the unit-length
    projected vectors as float32 ``[N, d]`` (what the scorer compares queries with).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"embeddings": "embeddings.npy", "battles": "battles.npz"}
    if projection is None:
        stored = embeddings.astype(np.float16)
        (out_dir / "projection.npz").unlink(missing_ok=True)  # left over from an earlier projected run
    else:
        stored = projection(embeddings).astype(np.float32)
        files["projection"] = "projection.npz"
        projection.save(out_dir / files["projection"])
    np.save(out_dir / files["embeddings"], stored)
    np.savez(out_dir / files["battles"], **battle_arrays(data, models))  # type: ignore[arg-type]
    return files
