"""Matrix-factorisation router trainer (RouteLLM's MF, with ties modelled).

Per model ``m`` a learned vector ``model_emb[m]`` (L2-normalised, as in
RouteLLM) and a bias; per prompt the frozen encoder embedding ``e`` projected
to ``h = text_proj @ e``. A model's score is ``classifier · (model_emb[m] * h)
+ model_bias[m]`` and ``P(a beats b) = sigmoid(s_a - s_b)``.

RouteLLM's loss drops ties; with correctness labels ties (both right or both
wrong) are most of the data, so here a tie is a half win (binary cross-entropy
with target 0.5). Then ``sigmoid(s_strong - s_weak)`` estimates
``P(strong wins) + P(tie) / 2``, which orders prompts by the expected quality
gain of the strong model — exactly what routing needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.data.benchmarks import GOLDEN_BENCHMARKS
from lab.train.data import A_WINS, B_WINS, TrainingData

_TARGET = {A_WINS: 1.0, B_WINS: 0.0}


@dataclass(frozen=True)
class MFConfig:
    """Hyper-parameters (defaults chosen on cross-fitted MMLU/GSM8K APGR)."""

    dim: int = 128
    epochs: int = 15
    batch_size: int = 2048
    lr: float = 1e-2
    weight_decay: float = 1e-4
    dropout: float = 0.1
    battle_weight: float = 1.0  # loss weight of arena/battle pairs relative to golden-label pairs


def pair_arrays(data: TrainingData, models: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(prompt index into data.prompts(), model_a index, model_b index, target in {0, 0.5, 1})."""
    prompt_idx = {p: i for i, p in enumerate(data.prompts())}
    model_idx = {m: i for i, m in enumerate(models)}
    n = len(data.pairs)
    pi = np.empty(n, dtype=np.int64)
    ai = np.empty(n, dtype=np.int64)
    bi = np.empty(n, dtype=np.int64)
    target = np.empty(n, dtype=np.float32)
    for k, p in enumerate(data.pairs):
        pi[k], ai[k], bi[k] = prompt_idx[p.prompt], model_idx[p.model_a], model_idx[p.model_b]
        target[k] = _TARGET.get(p.outcome, 0.5)
    return pi, ai, bi, target


def pair_loss_weights(data: TrainingData, config: MFConfig) -> list[float]:
    """Loss weight per pair: ``battle_weight`` for battle pairs (any source but the golden labels), else 1."""
    return [1.0 if p.source in GOLDEN_BENCHMARKS else config.battle_weight for p in data.pairs]


def train_mf(
    data: TrainingData, embeddings: np.ndarray, config: MFConfig, *, seed: int, progress: bool = True
) -> dict[str, np.ndarray]:
    """Train and return the arrays of the artifact's ``weights.npz``.

    ``embeddings[i]`` is the encoder vector of ``data.prompts()[i]``.
    """
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    models = data.models
    pi, ai, bi, target = (torch.from_numpy(a) for a in pair_arrays(data, models))
    weight = torch.tensor(pair_loss_weights(data, config), dtype=torch.float32)
    emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    dim_in = emb.shape[1]
    text_proj = torch.nn.Linear(dim_in, config.dim, bias=False)
    model_emb = torch.nn.Embedding(len(models), config.dim)
    model_bias = torch.nn.Parameter(torch.zeros(len(models)))
    classifier = torch.nn.Linear(config.dim, 1, bias=False)
    params = [*text_proj.parameters(), *model_emb.parameters(), model_bias, *classifier.parameters()]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    drop = torch.nn.Dropout(config.dropout)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    n = len(target)
    bar = tqdm(range(config.epochs), desc="mf epochs", disable=not progress)
    for _ in bar:
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            h = text_proj(drop(emb[pi[idx]]))
            diff = torch.nn.functional.normalize(model_emb(ai[idx]), dim=1) - torch.nn.functional.normalize(
                model_emb(bi[idx]), dim=1
            )
            logit = classifier(diff * h).squeeze(1) + model_bias[ai[idx]] - model_bias[bi[idx]]
            w = weight[idx]
            loss = (loss_fn(logit, target[idx]) * w).sum() / w.sum().clamp(min=1e-9)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        bar.set_postfix(loss=f"{total / n:.4f}")
    with torch.no_grad():
        return {
            "text_proj": text_proj.weight.detach().numpy().astype(np.float32),
            "model_emb": torch.nn.functional.normalize(model_emb.weight, dim=1).numpy().astype(np.float32),
            "classifier": classifier.weight.detach().numpy()[0].astype(np.float32),
            "model_bias": model_bias.detach().numpy().astype(np.float32),
        }


def save_weights(path: Path, weights: dict[str, np.ndarray]) -> None:
    """Write the ``weights.npz`` of an MF artifact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **weights)  # type: ignore[arg-type]
