"""Cross-fitting: k folds of the golden-label prompts, one artifact per held-out fold.

``build/crossfit/<scheme>/folds.json`` assigns every MMLU/GSM8K prompt key to
a fold (``prompt``: random folds with near-duplicates kept together;
``subject``: whole MMLU subjects per fold, for the held-out-subject number).
``<scheme>/<router>/fold-<i>/`` is a complete artifact named
``<router>-fold<i>``, trained on everything except fold ``i``'s prompts (arena
battles are always included; MT-Bench never). ``ferryman eval --crossfit-dir``
scores each prompt with its own fold's artifact. An existing ``folds.json``
is reused (so runs on other machines train on the same folds); ``--folds-only``
remakes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.data.benchmarks import LabeledPrompt, load_benchmark
from lab.data.embed_cache import embed_cached
from lab.data.folds import FoldAssignment, Scheme, assign_folds
from lab.train.bert import BertConfig, BertTrainer, bert_labels
from lab.train.data import TrainingData, heldout_keys, load_training_data
from lab.train.jobs import Target, train_bert_artifact, train_mf_artifact, train_sw_artifact
from lab.train.mf import MFConfig
from lab.train.sw import SWConfig
from scorer.artifacts import EncoderSpec
from scorer.encoder import Encoder


@dataclass(frozen=True)
class CrossfitPlan:
    """What to cross-fit and where to write it."""

    out: Path
    schemes: list[str]
    routers: list[str]
    k: int
    seed: int
    battles: Path | None
    golden: list[str]
    data_dir: Path | None
    strong: str
    weak: str
    folds_only: bool = False
    build_onnx: bool = True
    sw: SWConfig = field(default_factory=SWConfig)


def fold_dir(out: Path, scheme: str, router: str, fold: int) -> Path:
    """``<out>/<scheme>/<router>/fold-<i>``."""
    return out / scheme / router / f"fold-{fold}"


def make_folds(
    items: list[LabeledPrompt], encoder: Encoder, cache_dir: Path | None, scheme: str, k: int, seed: int
) -> FoldAssignment:
    """Fold assignment with near-duplicates (cosine >= 0.95 on serving embeddings) kept in one fold."""
    emb = embed_cached([it.prompt for it in items], encoder, cache_dir)
    scheme_name: Scheme = "subject" if scheme == "subject" else "prompt"
    folds = assign_folds(items, k, scheme=scheme_name, seed=seed, embeddings=emb)
    return FoldAssignment.from_items(items, folds, scheme=scheme, seed=seed)


def run_crossfit(
    plan: CrossfitPlan,
    spec: EncoderSpec,
    bert_spec: EncoderSpec,
    mf_cfg: MFConfig,
    bert_cfg: BertConfig,
    encoder_dir: Path,
    cache_dir: Path | None,
    device: str,
    threads: int,
) -> None:
    """Write folds.json per scheme and every (router, fold) artifact."""
    if not plan.golden:
        raise ValueError("cross-fitting needs golden labels (--golden mmlu,gsm8k)")
    if plan.data_dir is None:
        raise ValueError("cross-fitting needs the benchmark data directory")
    t0 = time.perf_counter()
    encoder: Encoder | None = None

    def get_encoder() -> Encoder:  # only MF/SW and new folds need the ONNX encoder
        nonlocal encoder
        encoder = encoder or Encoder(encoder_dir, precision="int8", spec=spec, threads=threads)
        return encoder

    items = [it for name in plan.golden for it in load_benchmark(name, plan.data_dir)]
    full = load_training_data(battles=plan.battles, golden=plan.golden, data_dir=plan.data_dir)
    print(f"cross-fitting on {full.provenance()}", flush=True)
    bert_trainer: BertTrainer | None = None
    for scheme in plan.schemes:
        folds_path = plan.out / scheme / "folds.json"
        if folds_path.is_file() and not plan.folds_only:
            folds = FoldAssignment.load(folds_path)
            _check_folds(folds, items, plan.k, folds_path)
            print(f"{scheme}: reusing {folds_path}", flush=True)
        else:
            folds = make_folds(items, get_encoder(), cache_dir, scheme, plan.k, plan.seed)
            folds.save(folds_path)
            print(f"{scheme}: {plan.k} folds written to {folds_path}", flush=True)
        if plan.folds_only:
            continue
        for fold in range(plan.k):
            data = full.without(heldout_keys(folds, fold))
            for router in plan.routers:
                target = Target(
                    fold_dir(plan.out, scheme, router, fold), f"{router}-fold{fold}", plan.strong, plan.weak, plan.seed
                )
                if router == "mf":
                    train_mf_artifact(data, target, get_encoder(), mf_cfg, cache_dir=cache_dir)
                elif router == "sw":
                    train_sw_artifact(data, target, get_encoder(), plan.sw, cache_dir=cache_dir)
                else:
                    bert_trainer = bert_trainer or _bert_trainer(full, plan, bert_spec, bert_cfg, device, cache_dir)
                    train_bert_artifact(
                        data,
                        target,
                        bert_spec,
                        bert_cfg,
                        trainer=bert_trainer,
                        device=device,
                        build_onnx=plan.build_onnx,
                    )
    print(f"cross-fitting done in {time.perf_counter() - t0:.1f} s", flush=True)


def _check_folds(folds: FoldAssignment, items: list[LabeledPrompt], k: int, path: Path) -> None:
    missing = sum(1 for it in items if it.key not in folds.assignments)
    if folds.k != k or missing:
        raise ValueError(
            f"{path}: made for other data (k={folds.k}, {missing} prompts unassigned); delete it to remake"
        )


def _bert_trainer(
    full: TrainingData, plan: CrossfitPlan, spec: EncoderSpec, cfg: BertConfig, device: str, cache_dir: Path | None
) -> BertTrainer:
    """One pool (every prompt of the data) whose lower-layer states every fold reuses."""
    prompts, _ = bert_labels(full, plan.strong, plan.weak)
    return BertTrainer(prompts, spec, cfg.train_layers, device=device, cache_dir=cache_dir)
