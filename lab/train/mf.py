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

Two training-only options (issue #10, docs/lab-log.md 2026-12-05):

- ``group_intercepts``: during training every group of prompts (a source, or a source's
  subject: MMLU's 57 subjects) gets its own per-model bias, centred so that the pair-weighted mean
  over groups is zero; the global ``model_bias`` keeps the average. The group biases are not
  exported, so the prompt-embedding part is fitted to what ranks prompts *within* their group
  (difficulty) rather than to which group a prompt looks like.
- ``length_joint``: the standardised, clamped log-length of the prompt
  (:class:`scorer.routers.length_head.LengthHead`, standardised on the training prompts) enters
  each model's score with a learnt per-model slope, fitted jointly with the rest; the artifact
  gets the length head with ``beta = slope[strong] - slope[weak]``, the same served form as a
  recipe's post-hoc ``length_beta``, so the embedding part learns what length does not explain.
- ``length_residual``: the prompt embeddings are trained on with their length direction projected
  out (:mod:`lab.train.length_resid`); the projection is folded into the exported ``text_proj``,
  so the artifact scores raw embeddings as the trained model scored residualised ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.data.benchmarks import GOLDEN_BENCHMARKS
from lab.train.data import A_WINS, B_WINS, TrainingData, pair_groups
from lab.train.length_resid import length_direction, project_out
from scorer.routers.length_head import LengthHead

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
    group_intercepts: bool = False  # per-group model biases while training, not exported (module doc)
    length_joint: bool = False  # fit the length head's slope with the router (module doc)
    length_residual: bool = False  # train on embeddings with their length direction projected out (module doc)


@dataclass(frozen=True)
class MFFit:
    """A trained MF: the arrays of ``weights.npz`` and, with ``length_joint``, the per-model length slopes."""

    weights: dict[str, np.ndarray]
    length_scale: LengthHead | None = None  # mean and std of the training prompts' log-lengths (beta 1)
    length_slope: np.ndarray | None = None  # [M]: each model's logit per standard deviation of length

    def length_head(self, strong: int, weak: int) -> LengthHead | None:
        """The served length head of the pair (``beta = slope[strong] - slope[weak]``); None without one."""
        if self.length_scale is None or self.length_slope is None:
            return None
        return self.length_scale.scaled(float(self.length_slope[strong] - self.length_slope[weak]))


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
) -> MFFit:
    """Train; returns the arrays of the artifact's ``weights.npz`` (and the jointly fitted length head).

    ``embeddings[i]`` is the encoder vector of ``data.prompts()[i]``.
    """
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    models = data.models
    pi, ai, bi, target = (torch.from_numpy(a) for a in pair_arrays(data, models))
    weight = torch.tensor(pair_loss_weights(data, config), dtype=torch.float32)
    direction = length_direction(embeddings, data.prompts()) if config.length_residual else None
    if direction is not None:
        embeddings = project_out(embeddings, direction)
    emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    dim_in = emb.shape[1]
    text_proj = torch.nn.Linear(dim_in, config.dim, bias=False)
    model_emb = torch.nn.Embedding(len(models), config.dim)
    model_bias = torch.nn.Parameter(torch.zeros(len(models)))
    classifier = torch.nn.Linear(config.dim, 1, bias=False)
    params = [*text_proj.parameters(), *model_emb.parameters(), model_bias, *classifier.parameters()]
    extra = _TrainingTerms(data, config, len(models), weight)
    params += extra.parameters()
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
            logit = logit + extra(idx, pi[idx], ai[idx], bi[idx])
            w = weight[idx]
            loss = (loss_fn(logit, target[idx]) * w).sum() / w.sum().clamp(min=1e-9)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        bar.set_postfix(loss=f"{total / n:.4f}")
    with torch.no_grad():
        weights = {
            "text_proj": text_proj.weight.detach().numpy().astype(np.float32),
            "model_emb": torch.nn.functional.normalize(model_emb.weight, dim=1).numpy().astype(np.float32),
            "classifier": classifier.weight.detach().numpy()[0].astype(np.float32),
            "model_bias": model_bias.detach().numpy().astype(np.float32),
        }
        slope = None if extra.head is None else extra.slope.detach().numpy().astype(np.float64)
    if direction is not None:  # the artifact takes raw embeddings: fold the projection into text_proj
        weights["text_proj"] = project_out(weights["text_proj"], direction).astype(np.float32)
    return MFFit(weights, extra.head, slope)


class _TrainingTerms:
    """The training-only logit terms of ``MFConfig.group_intercepts`` and ``MFConfig.length_joint``."""

    def __init__(self, data: TrainingData, config: MFConfig, n_models: int, pair_weight: Any) -> None:
        import torch

        self.params: list[Any] = []
        self.group: Any = None
        if config.group_intercepts:
            groups, names = pair_groups(data)
            self.group = torch.from_numpy(groups)
            self.group_bias = torch.nn.Parameter(torch.zeros(len(names), n_models))
            # each group's share of the loss weight: the centring weights (zero mean over the data)
            share = torch.zeros(len(names)).index_add_(0, self.group, pair_weight)
            self.share = share / share.sum().clamp(min=1e-9)
            self.params.append(self.group_bias)
        self.head: LengthHead | None = None
        if config.length_joint:
            prompts = data.prompts()
            self.head = LengthHead.of_lengths(1.0, prompts)
            self.z = torch.from_numpy(self.head.clamped_z(prompts).astype(np.float32))
            self.slope = torch.nn.Parameter(torch.zeros(n_models))
            self.params.append(self.slope)

    def parameters(self) -> list[Any]:
        return list(self.params)

    def __call__(self, idx: Any, pi: Any, ai: Any, bi: Any) -> Any:
        """The terms' logit of the batch ``idx`` (pairs) with prompts ``pi`` and models ``ai``, ``bi``."""
        import torch

        out = torch.zeros(len(idx))
        if self.group is not None:
            centred = self.group_bias - self.share @ self.group_bias  # [G, M], pair-weighted mean 0 per model
            g = self.group[idx]
            out = out + centred[g, ai] - centred[g, bi]
        if self.head is not None:
            out = out + (self.slope[ai] - self.slope[bi]) * self.z[pi]
        return out


def save_weights(path: Path, weights: dict[str, np.ndarray]) -> None:
    """Write the ``weights.npz`` of an MF artifact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **weights)  # type: ignore[arg-type]
