"""Retraining from judged traffic: the serving router's base as the prior plus a learnt correction.

What ``ferryman learn retrain`` does, and what the learning-curve simulation
calls for every simulated retrain (so the curve measures the product, not a
stand-in):

1. split the judged samples into a training part and a **held-back slice** by a
   salted hash of the prompt (:func:`lab.learn.traffic.in_holdout`), so every copy
   of a prompt falls on the same side and the slice is the same in every export;
2. score the training part with the **prior** — the router's base version, trained
   on the public data — and fit the correction (:mod:`lab.learn.correction`) with
   the prior's logit as an offset whose weight is learnt (shrunk towards 1);
3. fold the correction into a copy of the prior's MF weights
   (:mod:`lab.learn.candidate`), calibrate the candidate on the traffic's own
   prompts (the thresholds that send 0..100 % of *this* traffic strong), and write
   it as a new immutable version (:mod:`scorer.versions`).

The correction is always fitted on top of the base, on all judged traffic so
far, never on top of an earlier candidate, so corrections do not compound.
Settings (:class:`LearnConfig`) were chosen on held-out tuning sources
(docs/learning.md, docs/lab-log.md), not on the sources the curve reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from lab.eval.calibrate import thresholds
from lab.learn.candidate import fold_into_mf
from lab.learn.correction import Correction, fit_correction, logit
from lab.learn.scoring import Embedder, ScoringRouter, load_scoring_router
from lab.learn.traffic import Judged, in_holdout, targets
from lab.train.output import provenance
from scorer.artifacts import MANIFEST_NAME, ArtifactFile, Calibration, load_artifact, sha256_of, write_manifest
from scorer.routers import length_head

WEIGHTS_FILE = "weights.npz"


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
    """Retraining folds the correction into MF weights: the prior must be an MF artifact."""
    kind = prior.artifact.manifest.kind
    if kind != "mf":
        raise ValueError(
            f"{prior.artifact.root}: the prior is a {kind} router; retraining from traffic folds a correction into "
            "MF weights and needs an mf artifact (serve mf, or retrain an mf router for this traffic)"
        )


def file_digest(path: Path) -> str:
    """First 16 hex digits of a file's SHA-256 (provenance of the traffic export)."""
    return sha256_of(path)[:16]


def write_candidate(
    prior: ScoringRouter,
    correction: Correction,
    out_dir: Path,
    *,
    version: str,
    calibration_prompts: Sequence[str],
    calibration_label: str,
    embedder: Embedder,
    prov: Mapping[str, str],
) -> Path:
    """Write the corrected MF artifact to ``out_dir`` and calibrate it on ``calibration_prompts``."""
    check_prior(prior)
    m = prior.artifact.manifest
    with np.load(prior.artifact.path("weights"), allow_pickle=False) as data:
        weights = {k: np.asarray(data[k]) for k in data.files}
    folded = fold_into_mf(weights, correction, m.models.index(prior.strong))
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / WEIGHTS_FILE, **folded)  # type: ignore[arg-type]
    params = dict(m.params)
    head = length_head.parse(m.params, prior.artifact.root / MANIFEST_NAME)
    if head is not None:  # part of the prior's logit, which the correction scales as a whole
        params[length_head.PARAM] = head.scaled(correction.prior_scale).to_params()
    manifest = replace(
        m,
        version=version,
        files={"weights": ArtifactFile(path=WEIGHTS_FILE, sha256=sha256_of(out_dir / WEIGHTS_FILE))},
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


def candidate_provenance(
    prior: ScoringRouter,
    prior_version: str,
    correction: Correction,
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
            "learn_prior_scale": f"{correction.prior_scale:.6g}",
            "learn_bias": f"{correction.b:.6g}",
            "learn_weight_norm": f"{float(np.linalg.norm(correction.w)):.6g}",
        }
    )
    data.update({f"learn_cfg_{k}": str(v) for k, v in asdict(config).items()})
    data.update(extra or {})
    return provenance(data, seed=0, wall_s=wall_s)


def traffic_label(path: Path) -> str:
    """``<file name> (sha256 <16 hex>)``."""
    return f"{path.name} (sha256 {file_digest(path)})"


def prompt_set_digest(prompts: Sequence[str]) -> str:
    """A short digest of a set of prompts (for labels)."""
    joined = "\n".join(sorted(set(prompts)))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:12]
