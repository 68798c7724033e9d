"""BERT router trainer: fine-tune the top of MiniLM with a 3-class head.

Classes are ``strong`` (only the strong model wins), ``tie`` and ``weak``; the
scorer turns them into ``p[strong] + tie_weight * p[tie]``. Only the top
``train_layers`` transformer layers and the head are trained, so:

- the artifact commits just those tensors (fp16 ``delta.npz``, a few MB) and
  ``ferryman build routers`` rebuilds the ONNX graph from the PyPI encoder
  plus the delta, without torch (:mod:`scorer.graphs.build`);
- on CPUs the frozen lower layers run once per prompt: their hidden states
  are cached and each epoch only runs the trained layers on them.

Prompts are tokenized exactly as at serving time (head + tail truncation of
the manifest's :class:`~scorer.artifacts.EncoderSpec`).

The probe alone (``epochs = 0``) can be fitted on the features the scorer computes
(``probe_features = "served"``, :class:`ServedFeatures`): the pooled vector of the int8 graph
``ferryman build routers`` writes, which the head reads at serving time; the default ``"torch"``
fits it on the fp32 torch features of the cached states (docs/training.md, "BERT").
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lab.data.embed_cache import embed_cached, save_npz, stored_fingerprint, text_hash
from lab.train.data import A_WINS, B_WINS, TIE, TrainingData, pair_groups
from lab.train.export import base_model_path, load_base_encoder
from lab.train.length_resid import length_direction, project_out
from scorer.artifacts import EncoderSpec
from scorer.encoder import PROBE_TEXTS, TOKENIZER_FILE, Encoder, WordpieceTokenizer
from scorer.routers.bert import HEAD_PRECISIONS, LABELS

log = logging.getLogger(__name__)

HEAD_PREFIX = "head."
#: Prompts of a cache without a base fingerprint recomputed to check it before it is adopted.
_CHECKED = 4
#: How far cached fp16 states may differ from a fresh computation (fp16 rounding, batch padding).
_STATE_TOLERANCE = 2e-2


@dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of the fine-tuning."""

    train_layers: int = 1
    epochs: int = 0  # fine-tuning epochs after the linear probe; 0 = the probe alone (chosen: docs/lab-log.md)
    batch_size: int = 16
    lr: float = 1e-5  # LP-FT: small steps from the probe (1e-5 and 5e-5 were tried, docs/lab-log.md)
    max_rows: int = 2500  # CPU budget: fine-tuning rows, a class-balanced subsample (the probe uses all)
    head_lr: float = 1e-5
    dropout: float = 0.1
    weight_decay: float = 0.01
    probe_c: float = 0.0003  # inverse L2 strength of the linear probe on standardised features (chosen)
    gsm8k_weight: float = 3.0  # probe loss weight of GSM8K rows (1,307 among 14k MMLU rows; chosen)
    # Probe-only options (issue #10, docs/lab-log.md 2026-12-05 05:45; default off):
    group_intercepts: bool = False  # per-group class intercepts while fitting the probe, not exported
    length_residual: bool = False  # probe on features with their length direction projected out, folded
    # What the probe is fitted on (docs/lab-log.md, 2026-12-05 07:58): "torch", the fp32 torch features
    # of the cached states; "served", the pooled vector of the int8 graph the scorer runs (ServedFeatures).
    probe_features: Literal["torch", "served"] = "torch"
    # Precision of the head in the served graph (manifest params.head_precision): "int8", quantised with
    # the encoder as ferryman build routers always did; "fp32", left out of the quantisation, so the
    # scorer computes the probe's own logits on the served features.
    served_head: Literal["int8", "fp32"] = "int8"

    def __post_init__(self) -> None:
        if (self.group_intercepts or self.length_residual) and self.epochs > 0:
            raise ValueError("group_intercepts and length_residual shape the linear probe only: they need epochs = 0")
        if self.probe_features not in PROBE_FEATURES:
            raise ValueError(f"probe_features must be one of {', '.join(PROBE_FEATURES)}, got {self.probe_features!r}")
        if self.served_head not in HEAD_PRECISIONS:
            raise ValueError(f"served_head must be {' or '.join(HEAD_PRECISIONS)}, got {self.served_head!r}")
        if self.probe_features == "served" and self.epochs > 0:
            raise ValueError(
                'probe_features = "served" fits the probe alone: fine-tuning (epochs > 0) runs in torch,'
                " so it needs probe_features = torch (--set bert.probe_features=torch)"
            )


PROBE_FEATURES = ("torch", "served")
#: ``embed_cached`` file stem of the served graph's pooled vectors (beside the encoder's ``emb-`` files).
SERVED_STEM = "bert-pooled"


class ServedFeatures:
    """The pooled vectors the served BERT graph feeds its head, for fitting the probe on them.

    ``ferryman build routers`` writes a probe-only router's graph from the base encoder plus the
    head and quantises it whole (``scorer.graphs.build.build_bert_graphs``); the part before the
    head is the base encoder's graph without its L2 normalisation. That graph is written by the
    same builder (``build_encoder(pooled=True)``, int8, into a temporary directory) and run by the
    scorer's own sessions (:class:`scorer.encoder.Encoder`: one sequence per run on the mask-free
    graph, as the router runs), so the vectors are the ones the served head reads, bit for bit
    (``tests/train/test_bert_served.py``). They are cached like MF's embeddings
    (``lab.data.embed_cache``, file ``bert-pooled-...``), keyed by the graph's fingerprint.
    """

    def __init__(self, spec: EncoderSpec, cache_dir: Path | None, *, threads: int = 1, progress: bool = True) -> None:
        from scorer.graphs.build import build_encoder

        self.cache_dir = cache_dir
        self.progress = progress
        with tempfile.TemporaryDirectory(prefix="ferryman-bert-pooled-") as tmp:
            build_encoder(Path(tmp), force=True, pooled=True)
            self.encoder = Encoder(Path(tmp), precision="int8", spec=spec, threads=threads)
            self.encoder.fingerprint  # noqa: B018 - computed while the graph files exist (sessions hold the graphs)

    def features(self, prompts: Sequence[str]) -> np.ndarray:
        """``[len(prompts), dim]`` float32 pooled vectors (cached under ``cache_dir``)."""
        return embed_cached(prompts, self.encoder, self.cache_dir, progress=self.progress, stem=SERVED_STEM)


def bert_labels(data: TrainingData, strong: str, weak: str) -> tuple[list[str], np.ndarray]:
    """Prompts and class indices (0 strong, 1 tie, 2 weak) of the pairs that compare ``strong`` with ``weak``."""
    prompts, labels, _ = bert_rows(data, strong, weak)
    return prompts, labels


def bert_weights(data: TrainingData, strong: str, weak: str, config: BertConfig) -> np.ndarray:
    """Probe loss weight per ``bert_labels`` row: ``config.gsm8k_weight`` for GSM8K rows, else 1."""
    _, _, sources = bert_rows(data, strong, weak)
    return np.array([config.gsm8k_weight if src == "gsm8k" else 1.0 for src in sources])


def bert_rows(data: TrainingData, strong: str, weak: str) -> tuple[list[str], np.ndarray, list[str]]:
    """``bert_labels`` plus each row's source (``mmlu``, ``gsm8k``, a battles file's name)."""
    rows = _row_pairs(data, strong, weak)
    prompts = [data.pairs[k].prompt for k, _ in rows]
    sources = [data.pairs[k].source for k, _ in rows]
    return prompts, np.array([cls for _, cls in rows], dtype=np.int64), sources


def bert_groups(data: TrainingData, strong: str, weak: str) -> np.ndarray:
    """Per ``bert_labels`` row the index of its group (``lab.train.data.pair_groups``), for ``group_intercepts``."""
    groups, _ = pair_groups(data)
    return np.asarray(groups[np.array([k for k, _ in _row_pairs(data, strong, weak)], dtype=np.int64)])


def _row_pairs(data: TrainingData, strong: str, weak: str) -> list[tuple[int, int]]:
    """(pair index, class: 0 strong, 1 tie, 2 weak) of every pair that compares ``strong`` with ``weak``."""
    outcome_class = {A_WINS: 0, TIE: 1, B_WINS: 2}
    rows: list[tuple[int, int]] = []
    for k, p in enumerate(data.pairs):
        if (p.model_a, p.model_b) == (strong, weak):
            rows.append((k, outcome_class[p.outcome]))
        elif (p.model_a, p.model_b) == (weak, strong):
            rows.append((k, 2 - outcome_class[p.outcome]))
    if not rows:
        raise ValueError(f"no training pairs compare {strong!r} with {weak!r}")
    return rows


def select_rows(labels: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Row indices: all rows if they fit, else half decisive (strong/weak) and half ties, at random.

    The ranking a router needs, ``p[strong] + p[tie] / 2 = (1 + p[strong] - p[weak]) / 2``,
    does not depend on the tie prior, so ties (most golden labels) can be down-sampled.
    """
    if max_rows <= 0 or len(labels) <= max_rows:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    decisive = rng.permutation(np.flatnonzero(labels != 1))
    ties = rng.permutation(np.flatnonzero(labels == 1))
    n_dec = min(len(decisive), max(max_rows - len(ties), max_rows // 2))
    chosen = np.concatenate([decisive[:n_dec], ties[: max_rows - n_dec]])
    return np.sort(chosen)


def make_router_module(base: Any, dropout: float = 0.1) -> Any:
    """MiniLM + mean pooling + a 3-class linear head; ``forward`` is what ONNX exports."""
    import torch

    class BertRouter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = base
            self.head = torch.nn.Linear(base.config.hidden_size, len(LABELS))
            self.drop = torch.nn.Dropout(dropout)

        def pooled(self, hidden: Any, mask: Any, first_layer: int) -> Any:
            """Mean-pooled output of the layers from ``first_layer`` on, given the states entering it."""
            additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
            for layer in self.inner.encoder.layer[first_layer:]:
                out = layer(hidden, attention_mask=additive)
                hidden = out[0] if isinstance(out, tuple) else out
            return _mean_pool(hidden, mask)

        def top(self, hidden: Any, mask: Any, first_layer: int) -> Any:
            """Logits from the hidden states entering layer ``first_layer``."""
            return self.head(self.drop(self.pooled(hidden, mask, first_layer)))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            return self.head(_mean_pool(hidden, attention_mask))

    return BertRouter()


def _mean_pool(hidden: Any, mask: Any) -> Any:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def trained_prefixes(num_layers: int, train_layers: int) -> list[str]:
    """State-dict prefixes of the tensors fine-tuning changes (they form the delta)."""
    if not 1 <= train_layers <= num_layers:
        raise ValueError(f"train_layers must be in 1..{num_layers}, got {train_layers}")
    return [f"inner.encoder.layer.{i}." for i in range(num_layers - train_layers, num_layers)] + [HEAD_PREFIX]


def head_delta(weight: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    """The delta of a probe-only router: its head as fp16 arrays (as ``delta_of(module, 0)`` stores it)."""
    return {f"{HEAD_PREFIX}weight": np.asarray(weight, np.float16), f"{HEAD_PREFIX}bias": np.asarray(bias, np.float16)}


def delta_of(module: Any, train_layers: int) -> dict[str, np.ndarray]:
    """The trained tensors as fp16 arrays, keyed by state-dict name (``train_layers = 0``: the head alone)."""
    prefixes = trained_prefixes(module.inner.config.num_hidden_layers, train_layers) if train_layers else [HEAD_PREFIX]
    return {
        k: v.detach().cpu().numpy().astype(np.float16)
        for k, v in module.state_dict().items()
        if any(k.startswith(p) for p in prefixes)
    }


def module_from_delta(delta: dict[str, np.ndarray]) -> Any:
    """Base MiniLM with the delta applied (fp32), in eval mode."""
    import torch

    module = make_router_module(load_base_encoder())
    state = module.state_dict()
    unknown = sorted(set(delta) - set(state))
    if unknown or not any(k.startswith(HEAD_PREFIX) for k in delta):
        raise ValueError(f"delta does not fit the base encoder (unknown tensors: {unknown[:3]}, head present?)")
    for k, v in delta.items():
        if tuple(state[k].shape) != v.shape:
            raise ValueError(f"delta tensor {k} has shape {v.shape}, expected {tuple(state[k].shape)}")
        state[k] = torch.from_numpy(v.astype(np.float32))
    module.load_state_dict(state)
    return module.eval()


def probe_head(
    features: np.ndarray,
    labels: np.ndarray,
    prompts: Sequence[str],
    config: BertConfig,
    weights: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The head ``(weight, bias)`` of ``config``'s linear probe on ``features`` (rows of ``prompts``).

    With ``config.length_residual`` the probe is fitted on the features with their length direction
    (over the distinct prompts) projected out, and the projection folded into ``weight``;
    ``groups`` (one index per row) gives the probe per-group intercepts (``config.group_intercepts``).
    """
    x = np.asarray(features, dtype=np.float64)
    direction = None
    if config.length_residual:
        distinct = list({p: i for i, p in enumerate(prompts)}.values())  # one row per distinct prompt (its last)
        direction = length_direction(x[distinct], [prompts[i] for i in distinct])
        x = project_out(x, direction)
    weight, bias = fit_probe(x, labels, config.probe_c, weights, groups)
    if direction is not None:
        weight = project_out(weight, direction).astype(np.float32)
    return weight, bias


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    c: float,
    weights: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (L2, inverse strength ``c`` as in scikit-learn) as head weights.

    Fitted by L-BFGS on standardised features (deterministic); the returned
    ``weight [classes, dim]`` and ``bias [classes]`` act on the raw features. With ``groups`` (a
    group index per row) every group also gets its own class intercepts while fitting, centred so
    that their row-weighted mean is zero; they are not returned, so the weights are fitted to what
    ranks rows within their group.
    """
    import torch

    if c <= 0:
        raise ValueError(f"probe_c must be > 0, got {c}")
    if len(features) != len(labels) or not len(labels):
        raise ValueError(f"{len(features)} feature rows for {len(labels)} labels")
    if weights is not None and (len(weights) != len(labels) or not (np.asarray(weights) > 0).all()):
        raise ValueError("probe weights must be one positive number per row")
    x = np.asarray(features, dtype=np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = torch.from_numpy((x - mu) / sd)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    sw = torch.from_numpy(np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64))
    w = torch.zeros((len(LABELS), x.shape[1]), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(LABELS), dtype=torch.float64, requires_grad=True)
    params = [w, b]
    if groups is not None:
        if len(groups) != len(labels):
            raise ValueError(f"{len(groups)} group indices for {len(labels)} rows")
        g = torch.from_numpy(np.asarray(groups, dtype=np.int64))
        n_groups = int(g.max()) + 1
        share = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, g, sw)
        share = share / share.sum()
        gb = torch.zeros((n_groups, len(LABELS)), dtype=torch.float64, requires_grad=True)
        params.append(gb)
    opt = torch.optim.LBFGS(params, max_iter=500, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        logits = z @ w.T + b
        if groups is not None:
            logits = logits + (gb - share @ gb)[g]  # centred: zero row-weighted mean per class
        per_row = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        loss = (sw * per_row).sum() / sw.sum() + (w**2).sum() / (2 * c * sw.sum())
        loss.backward()
        return loss

    opt.step(closure)
    weight = w.detach().numpy() / sd
    bias = b.detach().numpy() - weight @ mu
    return weight.astype(np.float32), bias.astype(np.float32)


def tokenizer_for(spec: EncoderSpec) -> WordpieceTokenizer:
    """The serving tokenizer with the manifest's truncation spec."""
    return WordpieceTokenizer(base_model_path() / TOKENIZER_FILE, spec)


def _batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Batches of similar length (little padding); batch order shuffled when ``rng`` is given."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(chunks)  # type: ignore[arg-type]
    yield from chunks


def _pad(hidden: Sequence[Any], idx: np.ndarray, device: Any) -> tuple[Any, Any]:
    import torch

    seqs = [hidden[i] for i in idx]
    out = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True).to(device=device, dtype=torch.float32)
    lengths = torch.tensor([s.shape[0] for s in seqs], device=device)
    mask = (torch.arange(out.shape[1], device=device)[None, :] < lengths[:, None]).long()
    return out, mask


class BertTrainer:
    """Caches the frozen lower layers' hidden states once; trains (and scores) many times on them.

    Cross-fitting trains k models on subsets of the same prompts, so the cache is
    built over all prompts and each training selects rows.
    """

    def __init__(
        self,
        prompts: Sequence[str],
        spec: EncoderSpec,
        train_layers: int,
        *,
        device: str = "cpu",
        progress: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.progress = progress
        self.train_layers = train_layers
        base = load_base_encoder()
        self.first_layer = base.config.num_hidden_layers - train_layers
        trained_prefixes(base.config.num_hidden_layers, train_layers)  # validates train_layers
        self._base_state = {k: v.clone() for k, v in make_router_module(base).state_dict().items()}
        self.index = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        texts = list(self.index)
        path = hidden_cache_path(cache_dir, spec, self.first_layer) if cache_dir is not None else None
        fingerprint = base_fingerprint(base, spec) if path is not None else ""  # keys the cache only
        known, stored = _load_hidden(path) if path is not None else ({}, None)
        adopted = False
        if known and stored != fingerprint:
            known, adopted = self._check_stale(base, spec, path, known, stored, fingerprint, texts)
        todo = [t for t in texts if text_hash(t) not in known]
        if todo:
            known.update(self._lower_states(base, todo, spec))
        if path is not None and (todo or adopted):
            _save_hidden(path, known, fingerprint)
        self.hidden: list[Any] = [torch.from_numpy(known[text_hash(t)]) for t in texts]
        self.lengths = [h.shape[0] for h in self.hidden]
        self._features: np.ndarray | None = None

    def _check_stale(
        self,
        base: Any,
        spec: EncoderSpec,
        path: Path | None,
        known: dict[str, np.ndarray],
        stored: str | None,
        fingerprint: str,
        texts: Sequence[str],
    ) -> tuple[dict[str, np.ndarray], bool]:
        """(states to keep, adopted) for a cache written by another base encoder or before fingerprints.

        A file from another base (a different fingerprint) is dropped. A file without one (written
        before caches stored it) is adopted only when its states of up to ``_CHECKED`` of the
        requested prompts equal a fresh computation up to fp16 rounding and batch padding.
        """
        if stored is not None:
            log.warning(
                "hidden-state cache %s was written by base encoder %s, this one is %s: dropping its %d prompts",
                path, stored, fingerprint, len(known),
            )  # fmt: skip
            return {}, False
        sample = [t for t in texts if text_hash(t) in known][:_CHECKED]
        fresh = self._lower_states(base, sample, spec) if sample else {}
        if sample and all(
            known[h].shape == v.shape and np.allclose(known[h], v, atol=_STATE_TOLERANCE) for h, v in fresh.items()
        ):
            log.info("hidden-state cache %s has no base fingerprint; %d prompts recomputed agree: adopted", path,
                     len(sample))  # fmt: skip
            return known, True
        log.warning(
            "hidden-state cache %s has no base fingerprint and %s: dropping its %d prompts",
            path,
            "differs from a fresh computation" if sample else "none of its prompts can be checked",
            len(known),
        )
        return {}, False

    def _lower_states(self, base: Any, texts: Sequence[str], spec: EncoderSpec) -> dict[str, np.ndarray]:
        """Hidden states entering layer ``first_layer`` (fp16, unpadded) per text hash."""
        import torch
        from tqdm import tqdm

        ids = tokenizer_for(spec).ids(texts)
        lengths = [len(s) for s in ids]
        lower = base.to(self.device)
        out_states: dict[str, np.ndarray] = {}
        bar = tqdm(total=len(texts), desc=f"caching layers 0-{self.first_layer - 1}", disable=not self.progress)
        with torch.no_grad():
            for idx in _batches(lengths, 64, None):
                width = max(lengths[i] for i in idx)
                input_ids = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    input_ids[row, : lengths[i]] = torch.tensor(ids[i])
                mask = (torch.arange(width)[None, :] < torch.tensor([lengths[i] for i in idx])[:, None]).long()
                out = lower(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    token_type_ids=torch.zeros_like(input_ids).to(self.device),
                    output_hidden_states=True,
                )
                states = out.hidden_states[self.first_layer]
                for row, i in enumerate(idx):
                    out_states[text_hash(texts[i])] = states[row, : lengths[i]].to(torch.float16).cpu().numpy()
                bar.update(len(idx))
        bar.close()
        return out_states

    def _fresh_module(self, dropout: float) -> Any:
        module = make_router_module(load_base_encoder(), dropout)
        module.load_state_dict(self._base_state)
        return module.to(self.device)

    def features(self, prompts: Sequence[str]) -> np.ndarray:
        """Frozen base features (mean-pooled top-layer output, fp32) of pool prompts; computed once."""
        import torch

        if self._features is None:
            module = self._fresh_module(0.0).eval()
            feats = np.zeros((len(self.hidden), module.head.in_features), dtype=np.float32)
            with torch.no_grad():
                for batch in _batches(self.lengths, 128, None):
                    hidden, mask = _pad(self.hidden, batch, self.device)
                    feats[batch] = module.pooled(hidden, mask, self.first_layer).cpu().numpy()
            self._features = feats
        return self._features[[self.index[p] for p in prompts]]

    def train(
        self,
        prompts: Sequence[str],
        labels: np.ndarray,
        config: BertConfig,
        *,
        seed: int,
        weights: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> Any:
        """Linear probe on all rows, then fine-tune on a subsample (LP-FT); returns the module (eval mode).

        ``groups``: per row a group index, for the probe's ``config.group_intercepts``.

        The head starts as a multinomial logistic regression on the frozen
        features (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
        Features and Underperform Out-of-Distribution"), so fine-tuning starts
        from a good head instead of distorting the features to fit a random one.
        """
        import torch

        if config.train_layers != self.train_layers:
            raise ValueError("config.train_layers differs from the cached split")
        labels = np.asarray(labels, dtype=np.int64)
        weight, bias = probe_head(self.features(prompts), labels, prompts, config, weights, groups)
        module = self._fresh_module(config.dropout)
        with torch.no_grad():
            module.head.weight.copy_(torch.from_numpy(weight))
            module.head.bias.copy_(torch.from_numpy(bias))
        if config.epochs > 0:
            keep = select_rows(labels, config.max_rows, seed)
            self._finetune(module, [prompts[i] for i in keep], labels[keep], config, seed=seed)
        return module.eval()

    def _finetune(
        self, module: Any, prompts: Sequence[str], labels: np.ndarray, config: BertConfig, *, seed: int
    ) -> None:
        import torch
        from tqdm import tqdm

        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        rows = np.array([self.index[p] for p in prompts])
        y = torch.from_numpy(labels).to(self.device)
        layers = [p for layer in module.inner.encoder.layer[self.first_layer :] for p in layer.parameters()]
        for p in module.parameters():
            p.requires_grad_(False)
        for p in [*layers, *module.head.parameters()]:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(
            [{"params": layers, "lr": config.lr}, {"params": list(module.head.parameters()), "lr": config.head_lr}],
            weight_decay=config.weight_decay,
        )
        steps = config.epochs * math.ceil(len(rows) / config.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(steps, 1)))
        loss_fn = torch.nn.CrossEntropyLoss()
        lengths = [self.lengths[r] for r in rows]
        module.train()
        for epoch in range(config.epochs):
            total, seen = 0.0, 0
            bar = tqdm(
                list(_batches(lengths, config.batch_size, rng)),
                desc=f"bert epoch {epoch + 1}/{config.epochs}",
                disable=not self.progress,
            )
            for batch in bar:
                hidden, mask = _pad(self.hidden, rows[batch], self.device)
                loss = loss_fn(module.top(hidden, mask, self.first_layer), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(batch)
                seen += len(batch)
                bar.set_postfix(loss=f"{total / seen:.4f}")

    def predict(self, module: Any, prompts: Sequence[str], tie_weight: float = 0.5) -> np.ndarray:
        """``p[strong] + tie_weight * p[tie]`` per prompt (torch, fp32; for quick checks)."""
        import torch

        rows = np.array([self.index[p] for p in prompts])
        out = np.zeros(len(rows))
        with torch.no_grad():
            for batch in _batches([self.lengths[r] for r in rows], 128, None):
                hidden, mask = _pad(self.hidden, rows[batch], self.device)
                prob = torch.softmax(module.top(hidden, mask, self.first_layer), dim=1).cpu().numpy()
                out[batch] = prob[:, 0] + tie_weight * prob[:, 1]
        return out

    def delta(self, module: Any, config: BertConfig) -> dict[str, np.ndarray]:
        """The tensors ``train`` changed (fp16): the head, plus the top layers if it fine-tuned."""
        return delta_of(module, changed_layers(config))


#: What a probe can be fitted on (``BertConfig.probe_features``): both give ``features(prompts)``.
FeatureSource = ServedFeatures | BertTrainer


def probe_feature_source(
    config: BertConfig,
    spec: EncoderSpec,
    prompts: Sequence[str],
    *,
    cache_dir: Path | None,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
) -> FeatureSource:
    """The one map from ``config.probe_features`` to what the probe is fitted (and scored) on.

    ``"served"``: :class:`ServedFeatures`, the pooled vectors of the int8 graph the scorer runs (any
    prompt; ``prompts`` is not used). ``"torch"``: a :class:`BertTrainer` over ``prompts`` (the fp32
    torch features of their cached lower-layer states; it also fine-tunes, ``epochs`` > 0). Training
    (``lab.train.routers.bert``) and the recipe search (``lab.select.bert``) both take it from here.
    """
    if config.probe_features == "served":
        return ServedFeatures(spec, cache_dir, threads=threads, progress=progress)
    return BertTrainer(prompts, spec, config.train_layers, device=device, progress=progress, cache_dir=cache_dir)


def changed_layers(config: BertConfig) -> int:
    """Transformer layers training changes: none for the probe alone (``epochs = 0``)."""
    return config.train_layers if config.epochs > 0 else 0


def save_delta(path: Path, delta: dict[str, np.ndarray]) -> None:
    """Write ``delta.npz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **delta)  # type: ignore[arg-type]


def load_delta(path: Path) -> dict[str, np.ndarray]:
    """Read ``delta.npz``."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def hidden_cache_path(cache_dir: Path, spec: EncoderSpec, first_layer: int) -> Path:
    """Cache file of the frozen layers' output for a truncation spec and split point."""
    return cache_dir / f"bert-hidden-{spec.name}-{spec.max_tokens}-{spec.head_tokens}-L{first_layer}.npz"


def base_fingerprint(base: Any, spec: EncoderSpec) -> str:
    """What cached hidden states depend on, as 16 hex digits: the SHA-256 of the torch base encoder's
    weights (every tensor, by name) and of the token ids the serving tokenizer gives ``PROBE_TEXTS``
    under ``spec``. A digest of weights and ids, not of computed states: torch's CPU results move with
    batch padding and thread count, which must not invalidate a cache."""
    digest = hashlib.sha256()
    for name, tensor in sorted(base.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for ids in tokenizer_for(spec).ids(PROBE_TEXTS):
        digest.update(np.asarray(ids, dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


def _load_hidden(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    """(text hash -> [tokens, hidden] fp16 states, views into one array; the base fingerprint stored or None).

    Empty if absent or unreadable.
    """
    if not path.is_file():
        return {}, None
    try:
        with np.load(path) as data:
            keys, offsets, states = data["keys"], data["offsets"], data["states"]
            stored = stored_fingerprint(data)
    except (OSError, KeyError, ValueError):
        return {}, None  # stale or foreign file: recompute rather than trust it
    if len(offsets) != len(keys) + 1 or offsets[-1] != len(states):
        return {}, None
    return {str(k): states[offsets[i] : offsets[i + 1]] for i, k in enumerate(keys)}, stored


def _save_hidden(path: Path, known: dict[str, np.ndarray], fingerprint: str) -> None:
    keys = np.array(list(known), dtype="U40")
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in known.values()])]).astype(np.int64)
    states = np.concatenate(list(known.values())).astype(np.float16)
    save_npz(path, fingerprint, keys=keys, offsets=offsets, states=states)
