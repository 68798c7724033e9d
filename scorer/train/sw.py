"""Similarity-weighted Elo (SW) router: store training prompts and battle outcomes.

SW has no trained parameters: at query time the scorer weights every stored
battle by the similarity of its prompt to the query and fits Bradley–Terry
ratings (docs/artifacts.md). Training therefore only embeds the distinct
training prompts (fp16) and writes the battles as index arrays; the only
choice it records is ``params.weight_exponent`` (how sharply the scorer's
similarity weighting favours the nearest prompts; 1 = RouteLLM's weighting).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scorer.routers.sw import MAX_WEIGHT_EXPONENT
from scorer.train.data import TrainingData

SW_PARAMS = {"scale": 400, "base": 10, "init_rating": 1000}


def sw_params(weight_exponent: float = 1.0) -> dict[str, float]:
    """Manifest params; ``weight_exponent`` is written only when it differs from RouteLLM's 1."""
    if not 0 < weight_exponent <= MAX_WEIGHT_EXPONENT:
        raise ValueError(f"SW weight exponent must be in (0, {MAX_WEIGHT_EXPONENT:g}], is {weight_exponent}")
    params: dict[str, float] = dict(SW_PARAMS)
    if weight_exponent != 1.0:
        params["weight_exponent"] = weight_exponent
    return params


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


def save_sw(out_dir: Path, data: TrainingData, embeddings: np.ndarray, models: list[str]) -> tuple[Path, Path]:
    """Write ``embeddings.npy`` (fp16) and ``battles.npz``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    emb_path, battles_path = out_dir / "embeddings.npy", out_dir / "battles.npz"
    np.save(emb_path, embeddings.astype(np.float16))
    np.savez(battles_path, **battle_arrays(data, models))  # type: ignore[arg-type]
    return emb_path, battles_path
