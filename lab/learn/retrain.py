"""Retraining from judged traffic: the serving router's base as the prior, updated by the judged samples.

What ``ferryman learn retrain`` does, and what the learning-curve simulation
calls for every simulated retrain (so the curve measures the product, not a
stand-in):

1. split the judged samples into a training part and a **held-back slice** by a
   salted hash of the prompt (:func:`lab.learn.traffic.in_holdout`), so every copy
   of a prompt falls on the same side and the slice is the same in every export;
2. learn the update of the **prior** — the router's base version, trained on the
   public data — from the training part (:func:`fit_update`): for an **mf** prior,
   score the training part and fit the correction (:mod:`lab.learn.correction`) with
   the prior's logit as an offset whose weight is learnt (shrunk towards 1); for an
   **sw** prior, the training part's samples are the new battles; a **bert** prior is
   trained again by its recipe on the recipe's data plus those battles
   (:mod:`lab.learn.bert_retrain`);
3. write the candidate of the prior's kind (:mod:`lab.learn.candidate`: the
   correction folded into a copy of the MF weights, or the battles appended to the
   SW artifact, encoder and projection unchanged; the retrained BERT's delta and
   built graphs), calibrate it on the traffic's own prompts (the thresholds that send
   0..100 % of *this* traffic strong), and write it as a new immutable version
   (:mod:`scorer.versions`).

The update is always learnt on top of the base, from all judged traffic so far,
never on top of an earlier candidate, so updates do not compound. Settings
(:class:`LearnConfig`) were chosen on held-out tuning sources (docs/learning.md,
docs/lab-log.md), not on the sources the curve reports; an SW or BERT prior keeps its
shipped settings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from lab.eval.calibrate import thresholds
from lab.learn.bert_retrain import BertRetrain, prior_recipe, train_bert_candidate
from lab.learn.candidate import NewBattles, append_battles, fold_into_mf
from lab.learn.correction import Correction, fit_correction, logit
from lab.learn.scoring import Embedder, ScoringRouter, load_scoring_router
from lab.learn.traffic import Judged, in_holdout, targets
from lab.train.output import provenance
from lab.train.recipe import Recipe
from scorer.artifacts import (
    MANIFEST_NAME,
    ArtifactFile,
    Calibration,
    load_artifact,
    sha256_of,
    write_manifest,
)
from scorer.routers import length_head

WEIGHTS_FILE = "weights.npz"
LEARNABLE_KINDS = ("mf", "sw", "bert")  # router kinds retrain can update (check_prior)

# What a retrain learnt: a correction (mf prior), new battles (sw prior), or a bert prior's recipe and battles.
Update = Correction | NewBattles | BertRetrain


@dataclass(frozen=True)
class LearnConfig:
    """Retraining settings (defaults chosen on the tuning sources; see docs/learning.md)."""

    l2: float = 3.0  # penalty on the embedding weights of the correction
    prior_l2: float = 1.0  # penalty pulling the prior's learnt weight towards 1
    holdout: float = 0.2  # share of prompts held back for the promotion gate
    salt: str = "ferryman-holdout-1"  # makes the held-back slice a fixed function of the prompt

    def __post_init__(self) -> None:
        if self.l2 <= 0 or self.prior_l2 <= 0:
            raise ValueError(f"l2 ({self.l2}) and prior_l2 ({self.prior_l2}) must be > 0")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), is {self.holdout}")


def split_holdout(samples: Sequence[Judged], config: LearnConfig) -> tuple[list[Judged], list[Judged]]:
    """(training part, held-back slice) by the salted hash of each sample's prompt key."""
    train: list[Judged] = []
    held: list[Judged] = []
    for s in samples:
        (held if in_holdout(s.key, config.holdout, config.salt) else train).append(s)
    return train, held


def features(prior: ScoringRouter, samples: Sequence[Judged], embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings ``[N, D]``, the prior's logits ``[N]``) of ``samples``: what the correction is fitted on."""
    prompts = [s.prompt for s in samples]
    spec = prior.router.encoder_spec
    if spec is None or not prior.router.needs_embeddings:
        raise ValueError(f"router {prior.artifact.manifest.name!r} does not embed prompts; cannot learn a correction")
    emb = embedder.embed(prompts, spec)
    prior_logit = logit(prior.score(prompts, embedder)) if prompts else np.zeros(0)
    return emb, prior_logit


def fit_features(emb: np.ndarray, prior_logit: np.ndarray, verdicts: np.ndarray, config: LearnConfig) -> Correction:
    """The correction fitted on precomputed :func:`features` and verdicts (+1 / 0 / -1)."""
    return fit_correction(emb, prior_logit, targets(verdicts), l2=config.l2, prior_l2=config.prior_l2)


def fit_on_samples(
    prior: ScoringRouter, samples: Sequence[Judged], embedder: Embedder, config: LearnConfig
) -> Correction:
    """The correction of ``prior`` learnt from judged ``samples`` (zero for none)."""
    emb, prior_logit = features(prior, samples, embedder)
    return fit_features(emb, prior_logit, np.array([s.verdict for s in samples], dtype=np.float64), config)


def check_prior(prior: ScoringRouter) -> None:
    """The prior must be a kind retrain can update: mf (a folded correction), sw (appended battles) or bert
    (trained again by its recipe)."""
    m = prior.artifact.manifest
    if m.kind not in LEARNABLE_KINDS:
        raise ValueError(
            f"{prior.artifact.root}: the prior is a {m.kind} router; retraining from traffic updates "
            f"{', '.join(LEARNABLE_KINDS)} artifacts only"
        )


def fit_update(
    prior: ScoringRouter,
    samples: Sequence[Judged],
    embedder: Embedder,
    config: LearnConfig,
    *,
    recipe: Recipe | None = None,
    data_dir: Path | None = None,
) -> Update:
    """What a candidate learns from the training part ``samples``: the correction of an mf prior, the new battles
    of an sw prior, the recipe (``recipe``, else the one the prior records) and battles a bert prior is trained
    again with (its data under ``data_dir``); sw and bert keep their shipped settings (``config``'s penalties do
    not apply)."""
    check_prior(prior)
    kind = prior.artifact.manifest.kind
    if recipe is not None and kind != "bert":
        raise ValueError(f"a recipe retrains a bert prior; this prior is {kind} (leave out --recipe)")
    if kind == "bert":
        return BertRetrain(prior_recipe(prior, recipe), tuple(samples), data_dir)
    if kind == "sw":
        return NewBattles(tuple(samples))
    return fit_on_samples(prior, samples, embedder, config)


def describe(update: Update) -> str:
    """One line for the operator about what was learnt."""
    if isinstance(update, NewBattles):
        return f"new battles: {update.summary()}"
    if isinstance(update, BertRetrain):
        return f"bert trained again: {update.summary()}"
    norm = float(np.linalg.norm(update.w))
    return f"correction: prior weight {update.prior_scale:.3f}, bias {update.b:+.3f}, |w| {norm:.3f}"


def file_digest(path: Path) -> str:
    """First 16 hex digits of a file's SHA-256 (provenance of the traffic export)."""
    return sha256_of(path)[:16]


def write_candidate(
    prior: ScoringRouter,
    update: Update,
    out_dir: Path,
    *,
    version: str,
    calibration_prompts: Sequence[str],
    calibration_label: str,
    embedder: Embedder,
    prov: Mapping[str, str],
) -> Path:
    """Write the prior updated by ``update`` to ``out_dir`` and calibrate it on ``calibration_prompts``."""
    check_prior(prior)
    m = prior.artifact.manifest
    if isinstance(update, BertRetrain):
        if m.kind != "bert":
            raise ValueError(f"{prior.artifact.root}: a bert recipe retrains a bert prior, this one is {m.kind}")
        m = train_bert_candidate(prior, update, out_dir, embedder)  # its own manifest: files, params, provenance
        files, params, prov = dict(m.files), dict(m.params), {**m.provenance, **prov}
    elif isinstance(update, NewBattles):
        if m.kind != "sw":
            raise ValueError(f"{prior.artifact.root}: new battles update an sw prior, this one is {m.kind}")
        files, params = append_battles(prior, update, embedder, out_dir), dict(m.params)
    else:
        files, params = _write_corrected_mf(prior, update, out_dir)
    manifest = replace(
        m,
        version=version,
        files=files,
        calibration=None,
        provenance=dict(prov),
        params=params,
    )
    write_manifest(out_dir, manifest)
    distinct = list(dict.fromkeys(calibration_prompts))
    if len(distinct) >= 2:
        candidate = load_scoring_router(out_dir, embedder, strong=prior.strong, weak=prior.weak)
        points = thresholds(candidate.score(distinct, embedder))
        label = f"{calibration_label}: {len(distinct)} prompts, last user turn"
        write_manifest(out_dir, replace(manifest, calibration=Calibration(reference=label, points=points)))
    load_artifact(out_dir)  # what the scorer will do: every file present and hashed
    return out_dir


def _write_corrected_mf(
    prior: ScoringRouter, correction: Correction, out_dir: Path
) -> tuple[dict[str, ArtifactFile], dict[str, object]]:
    """The MF weights with ``correction`` folded in, written to ``out_dir``: (manifest files, params)."""
    m = prior.artifact.manifest
    if m.kind != "mf":
        raise ValueError(f"{prior.artifact.root}: a correction folds into an mf prior, this one is {m.kind}")
    with np.load(prior.artifact.path("weights"), allow_pickle=False) as data:
        weights = {k: np.asarray(data[k]) for k in data.files}
    folded = fold_into_mf(weights, correction, m.models.index(prior.strong))
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / WEIGHTS_FILE, **folded)  # type: ignore[arg-type]
    params = dict(m.params)
    head = length_head.parse(m.params, prior.artifact.root / MANIFEST_NAME)
    if head is not None:  # part of the prior's logit, which the correction scales as a whole
        params[length_head.PARAM] = head.scaled(correction.prior_scale).to_params()
    return {"weights": ArtifactFile(path=WEIGHTS_FILE, sha256=sha256_of(out_dir / WEIGHTS_FILE))}, params


def candidate_provenance(
    prior: ScoringRouter,
    prior_version: str,
    update: Update,
    config: LearnConfig,
    *,
    train: int,
    held: int,
    traffic: str,
    wall_s: float,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The candidate manifest's provenance: what it learnt from and how (``ferryman learn promote`` reads it)."""
    base = dict(prior.artifact.manifest.provenance)
    data = {f"prior_{k}": v for k, v in base.items() if k in ("trained_on", "pairs", "git_commit")}
    data.update(
        {
            "trained_on": f"{base.get('trained_on', '?')} + judged traffic",
            "learn_prior_version": prior_version,
            "learn_traffic": traffic,
            "learn_pair": f"{prior.strong} vs {prior.weak}",
            "learn_train_samples": str(train),
            "learn_heldout_samples": str(held),
            **_update_provenance(update),
        }
    )
    cfg = asdict(config)
    if isinstance(update, NewBattles | BertRetrain):  # the penalties are the correction's; sw, bert keep theirs
        cfg = {k: v for k, v in cfg.items() if k in ("holdout", "salt")}
    data.update({f"learn_cfg_{k}": str(v) for k, v in cfg.items()})
    data.update(extra or {})
    return provenance(data, seed=0, wall_s=wall_s)


def _update_provenance(update: Update) -> dict[str, str]:
    if isinstance(update, BertRetrain):
        return {
            "learn_update": "bert trained again with the judged battles",
            "learn_recipe": update.recipe.source,
            "learn_new_battles": str(len(update.samples)),
            "learn_new_prompts": str(len({s.prompt for s in update.samples})),
        }
    if isinstance(update, NewBattles):
        return {
            "learn_update": "sw battles appended",
            "learn_new_battles": str(len(update.samples)),
            "learn_new_prompts": str(len({s.prompt for s in update.samples})),
        }
    return {
        "learn_update": "mf correction folded",
        "learn_prior_scale": f"{update.prior_scale:.6g}",
        "learn_bias": f"{update.b:.6g}",
        "learn_weight_norm": f"{float(np.linalg.norm(update.w)):.6g}",
    }


def traffic_label(path: Path) -> str:
    """``<file name> (sha256 <16 hex>)``."""
    return f"{path.name} (sha256 {file_digest(path)})"


def prompt_set_digest(prompts: Sequence[str]) -> str:
    """A short digest of a set of prompts (for labels)."""
    joined = "\n".join(sorted(set(prompts)))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:12]
