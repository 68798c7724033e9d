"""Choose the BERT recipe on validation carved from the training folds only.

For each outer fold ``i`` of a fold assignment (e.g. ``build/crossfit/subject/folds.json``)
the training part is every fold but ``i``. Inside it, fold ``(i + 1) mod k`` is the
inner validation set (whole MMLU subjects under the subject scheme) and the
candidate trains on the remaining ``k - 2`` folds (plus the arena battles if the
candidate uses them). Candidates are scored by APGR on the inner-validation MMLU
and GSM8K prompts; outer fold ``i``'s prompts are neither trained on nor scored,
so the outer cross-fitted numbers stay untouched by the choice. MT-Bench is never
loaded.

Two stages, so the fine-tuning (the expensive part) runs only on the best probe:

1. linear probe alone (``epochs = 0``) for each ``probe_c``, with and without the battles;
   then (1b) the best of those with each loss weight of the GSM8K rows;
2. LP-FT from the best probe for each fine-tuning learning rate.

Every candidate is the recipe (``lab/recipes/bert.toml``) with the grid's settings changed, so a probe
is fitted and scored on the features the recipe trains on (``probe_features``, through
``lab.train.bert.probe_feature_source``, as training takes them): the shipped recipe's
``"served"``, the pooled vectors of the int8 graph the scorer runs (``--probe-features torch``: the
fp32 torch features). Fine-tuning runs in torch, so stage 2's candidates fit their starting probe on
the torch features.

Usage: ``python -m lab.select.bert --folds build/crossfit/subject/folds.json``
(``--help`` for the grid). Prints one line per candidate and split, then the mean
table, and writes it all as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ferryman import paths
from lab.data.benchmarks import GOLDEN_BENCHMARKS, STRONG, WEAK, LabeledPrompt, default_data_dir, load_golden
from lab.data.folds import FoldAssignment
from lab.eval.metrics import apgr_by_benchmark
from lab.train.bert import (
    LABELS,
    PROBE_FEATURES,
    BertConfig,
    BertTrainer,
    FeatureSource,
    bert_labels,
    bert_weights,
    probe_feature_source,
    probe_head,
)
from lab.train.data import TrainingData, heldout_keys, load_training_data
from lab.train.recipe import load_recipe
from scorer.artifacts import EncoderSpec
from scorer.routers.bert import softmax


@dataclass(frozen=True)
class Candidate:
    """One recipe: the BERT config and whether the arena battles are trained on."""

    config: BertConfig
    battles: bool

    @property
    def name(self) -> str:
        c = self.config
        ft = f"ft lr={c.lr:g} rows={c.max_rows} ep={c.epochs}" if c.epochs else "probe only"
        gsm = f" gsm8k×{c.gsm8k_weight:g}" if c.gsm8k_weight != 1 else ""
        return f"C={c.probe_c:g} battles={'yes' if self.battles else 'no'}{gsm} {ft} on {c.probe_features}"


@dataclass(frozen=True)
class Split:
    """Inner training data and inner validation prompts of one outer fold."""

    outer: int
    inner: int
    train_all: TrainingData  # with the battles
    train_golden: TrainingData  # without
    val: list[LabeledPrompt]


def make_splits(
    full: TrainingData,
    golden_only: TrainingData,
    items: Sequence[LabeledPrompt],
    folds: FoldAssignment,
    outer: list[int],
) -> list[Split]:
    """Inner train/validation per outer fold (validation = the next fold, mod k)."""
    splits = []
    for i in outer:
        j = (i + 1) % folds.k
        drop = heldout_keys(folds, i) | heldout_keys(folds, j)
        val = [it for it in items if folds.assignments.get(it.key) == j]
        splits.append(Split(i, j, full.without(drop), golden_only.without(drop), val))
    return splits


def probe_scores(features: np.ndarray, weight: np.ndarray, bias: np.ndarray, tie_weight: float = 0.5) -> np.ndarray:
    """``p[strong] + tie_weight * p[tie]`` of a probe head on frozen features (what the router serves)."""
    p = softmax(features.astype(np.float64) @ weight.T.astype(np.float64) + bias)
    return np.asarray(p[:, LABELS.index("strong")] + tie_weight * p[:, LABELS.index("tie")])


class FeatureSources:
    """What each candidate's probe is fitted on: ``lab.train.bert.probe_feature_source`` of its config, one per
    kind of features (and trained depth), made when a candidate first needs it; a trainer over ``pool``."""

    def __init__(self, spec: EncoderSpec, pool: Sequence[str], cache_dir: Path | None, threads: int = 1) -> None:
        self.spec, self.pool, self.cache_dir, self.threads = spec, list(pool), cache_dir, threads
        self._made: dict[tuple[str, int], FeatureSource] = {}

    def __call__(self, config: BertConfig) -> FeatureSource:
        key = (config.probe_features, config.train_layers)
        if key not in self._made:
            self._made[key] = probe_feature_source(
                config, self.spec, self.pool, cache_dir=self.cache_dir, threads=self.threads, progress=False
            )
        return self._made[key]


def probe_candidates(recipe: BertConfig, probe_cs: Sequence[float], battles: Sequence[bool]) -> list[Candidate]:
    """Stage 1: the recipe as a probe alone (``epochs = 0``) for each ``probe_c``, with and without the battles."""
    return [Candidate(replace(recipe, epochs=0, probe_c=c), b) for c in probe_cs for b in battles]


def evaluate(sources: FeatureSources, cand: Candidate, split: Split, seed: int) -> dict[str, float]:
    """Train ``cand`` on the split's inner training data; APGR on its inner validation prompts.

    A probe alone is fitted on the features its config names (``probe_features``) and scored on the
    same features with the head in fp32, as the scorer serves a ``served_head = "fp32"`` recipe.
    """
    data = split.train_all if cand.battles else split.train_golden
    prompts, labels = bert_labels(data, STRONG, WEAK)
    weights = bert_weights(data, STRONG, WEAK, cand.config)
    val_prompts = [it.prompt for it in split.val]
    source = sources(cand.config)
    if cand.config.epochs == 0:
        weight, bias = probe_head(source.features(prompts), labels, prompts, cand.config, weights)
        scores = probe_scores(source.features(val_prompts), weight, bias)
    else:
        assert isinstance(source, BertTrainer)  # BertConfig refuses fine-tuning on served features
        module = source.train(prompts, labels, cand.config, seed=seed, weights=weights)
        scores = source.predict(module, val_prompts)
    return apgr_by_benchmark(split.val, scores)


def run_grid(
    sources: FeatureSources, candidates: Sequence[Candidate], splits: Sequence[Split], seed: int
) -> list[dict[str, object]]:
    """Every candidate on every split; one printed line each, one result row per candidate."""
    rows: list[dict[str, object]] = []
    for cand in candidates:
        per_split = []
        for split in splits:
            t0 = time.perf_counter()
            res = evaluate(sources, cand, split, seed)
            per_split.append(res)
            got = " ".join(f"{k} {v:.3f}" for k, v in res.items())
            print(f"  {cand.name:<48} outer {split.outer} val {split.inner}: {got} ({time.perf_counter() - t0:.0f} s)")
        mean = {name: float(np.mean([r[name] for r in per_split if name in r])) for name in GOLDEN_BENCHMARKS}
        rows.append(
            {"candidate": cand.name, "config": asdict(cand.config), "battles": cand.battles, "per_split": per_split,
             "mean": mean, "criterion": float(np.mean(list(mean.values())))}
        )  # fmt: skip
        print(f"{cand.name:<48} mean: " + " ".join(f"{k} {v:.3f}" for k, v in mean.items()), flush=True)
    return rows


def _best(rows: list[dict[str, object]]) -> dict[str, object]:
    return max(rows, key=lambda r: float(r["criterion"]))  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    recipe = load_recipe("bert")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=Path, required=True, help="folds.json of the outer cross-fitting")
    p.add_argument("--outer", default="0,1,2", help="outer folds whose training part is split")
    p.add_argument("--battles", type=Path, help="arena battles (Chatbot Arena 55k schema)")
    p.add_argument("--data-dir", type=Path, help="public data root (default $FERRYMAN_DATA)")
    p.add_argument("--probe-cs", default="0.003,0.01,0.03,0.1,1", help="stage 1: probe_c values")
    p.add_argument("--gsm8k-weights", default="1,3,10", help="stage 1b: probe loss weights of the GSM8K rows")
    p.add_argument("--ft-lrs", default="1e-5,3e-5,1e-4", help="stage 2: fine-tuning learning rates")
    p.add_argument("--ft-rows", type=int, default=BertConfig.max_rows, help="stage 2: fine-tuning rows")
    p.add_argument("--max-tokens", type=int, default=recipe.encoder.max_tokens, help="BERT token window (recipe)")
    p.add_argument("--head-tokens", type=int, default=recipe.encoder.head_tokens, help="tokens kept from the start")
    p.add_argument(
        "--probe-features",
        choices=PROBE_FEATURES,
        default=recipe.settings.probe_features,
        help="what stage 1's probes are fitted and scored on (the recipe's probe_features)",
    )
    p.add_argument("--cache-dir", type=Path, default=paths.cache_dir(), help="hidden-state and served-vector cache")
    p.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("build/bert-select.json"), help="results (JSON)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data_dir = args.data_dir or default_data_dir()
    folds = FoldAssignment.load(args.folds)
    items = load_golden(data_dir)
    golden_only = load_training_data(battles=None, golden=list(GOLDEN_BENCHMARKS), data_dir=data_dir)
    full = (
        load_training_data(battles=args.battles, golden=list(GOLDEN_BENCHMARKS), data_dir=data_dir)
        if args.battles
        else golden_only
    )
    splits = make_splits(full, golden_only, items, folds, [int(x) for x in args.outer.split(",")])
    pool, _ = bert_labels(full, STRONG, WEAK)
    spec = EncoderSpec(max_tokens=args.max_tokens, head_tokens=args.head_tokens)
    sources = FeatureSources(spec, pool + [it.prompt for it in items], args.cache_dir, args.threads)
    battle_options = [False, True] if args.battles else [False]
    print(f"stage 1: linear probe alone, on {args.probe_features} features", flush=True)
    base = replace(recipe.settings, probe_features=args.probe_features)
    stage1 = run_grid(
        sources, probe_candidates(base, [float(c) for c in args.probe_cs.split(",")], battle_options), splits, args.seed
    )
    best0 = _best(stage1)
    cfg0 = BertConfig(**best0["config"])  # type: ignore[arg-type]
    print(f"stage 1b: GSM8K row weight for {best0['candidate']}", flush=True)
    weights = [float(x) for x in args.gsm8k_weights.split(",") if x and float(x) != cfg0.gsm8k_weight]
    stage1b = run_grid(
        sources, [Candidate(replace(cfg0, gsm8k_weight=x), bool(best0["battles"])) for x in weights], splits, args.seed
    )
    best1 = _best([best0, *stage1b])
    base_cfg = BertConfig(**best1["config"])  # type: ignore[arg-type]
    print(f"stage 2: LP-FT from {best1['candidate']} (its probe refitted on torch features)", flush=True)
    ft = [
        Candidate(
            replace(base_cfg, epochs=1, lr=float(lr), head_lr=float(lr), max_rows=args.ft_rows, probe_features="torch"),
            bool(best1["battles"]),
        )
        for lr in args.ft_lrs.split(",")
        if lr
    ]
    stage2 = run_grid(sources, ft, splits, args.seed)
    chosen = _best([best1, *stage2])
    print(f"chosen: {chosen['candidate']} (criterion {chosen['criterion']:.4f}) in {time.perf_counter() - t0:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"folds": str(args.folds), "outer": args.outer, "stage1": stage1, "stage1b": stage1b, "stage2": stage2}
    result["chosen"] = chosen
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
