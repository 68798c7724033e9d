"""Turn what a retrain learnt into a servable artifact of the prior's kind (no new router kind, no scorer change).

**MF prior: fold a learnt correction into the weights.** An MF router's logit for a pair is linear in the prompt
embedding
(``scorer.routers.mf``): ``s_m = classifier · (model_emb[m] * (P e + t)) + mb[m]``.
The corrected logit ``c * (s_strong - s_weak) + w · e + b`` is again of that form:

- ``c`` (the learnt weight of the prior) scales ``classifier`` and ``model_bias``,
  which scales every model's score and so every pair's logit;
- one extra latent dimension carries ``w``: a new row ``w`` of ``text_proj``
  (``text_bias`` 0), ``classifier`` 1 there, and ``model_emb`` 1 for the strong
  model, 0 for every other model;
- ``b`` is added to the strong model's ``model_bias``.

So the candidate scores exactly ``sigmoid(corrected logit)`` for the default
pair, in the scorer's own MF code. The correction moves the strong model's
score, so for other pairs of a multi-model MF artifact it shifts every
comparison with that model by the same amount.

**SW prior: append the judged samples as battles.** An SW router stores its training prompts' embeddings and
battle outcomes and weights them by similarity at query time (``scorer.routers.sw``), so it takes new battles
without refitting anything: each judged sample becomes one battle of the router's strong model (``model_a``)
against its weak model (``model_b``) — strong better / tie / weak better as ``A_WINS`` / ``TIE`` / ``B_WINS``,
a win counting 1 and a tie ½ each way, exactly as its training battles (``lab.train.sw.battle_arrays``). The
prompt is embedded with the artifact's own encoder window and, when it has one, projected with its unchanged
``files.projection`` (stored as the artifact stores its training prompts: fp16 raw or float32 projected);
``params`` (weight exponent, top-k) are the prior's.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lab.learn.correction import Correction
from lab.learn.scoring import Embedder, ScoringRouter
from lab.learn.traffic import STRONG_BETTER, WEAK_BETTER, Judged
from lab.train.data import A_WINS, B_WINS, TIE, Pair, TrainingData
from lab.train.sw import battle_arrays
from scorer.artifacts import ArtifactFile, sha256_of
from scorer.routers.sw import load_projection

_REQUIRED = ("text_proj", "model_emb", "classifier")


def fold_into_mf(weights: dict[str, np.ndarray], correction: Correction, strong: int) -> dict[str, np.ndarray]:
    """MF ``weights.npz`` arrays whose ``strong`` model's logit includes ``correction``."""
    missing = [k for k in _REQUIRED if k not in weights]
    if missing:
        raise ValueError(f"not MF weights: missing {', '.join(missing)}")
    proj = np.asarray(weights["text_proj"], dtype=np.float64)
    emb = np.asarray(weights["model_emb"], dtype=np.float64)
    clf = np.asarray(weights["classifier"], dtype=np.float64)
    d, m = proj.shape[0], emb.shape[0]
    if correction.w.shape != (proj.shape[1],):
        raise ValueError(f"correction has {correction.w.shape[0]} weights, MF embeds in {proj.shape[1]} dimensions")
    if not 0 <= strong < m:
        raise ValueError(f"strong model index {strong} out of range for {m} models")
    scale = correction.prior_scale
    text_bias = np.asarray(weights.get("text_bias", np.zeros(d)), dtype=np.float64)
    model_bias = scale * np.asarray(weights.get("model_bias", np.zeros(m)), dtype=np.float64)
    model_bias[strong] += correction.b
    column = np.zeros((m, 1))
    column[strong, 0] = 1.0
    return {
        "text_proj": np.vstack([proj, correction.w[None, :]]).astype(np.float32),
        "text_bias": np.append(text_bias, 0.0).astype(np.float32),
        "model_emb": np.hstack([emb, column]).astype(np.float32),
        "classifier": np.append(scale * clf, 1.0).astype(np.float32),
        "model_bias": model_bias.astype(np.float32),
    }


JUDGED_SOURCE = "judged traffic"  # the ``source`` of the battles a retrain appends


@dataclass(frozen=True)
class NewBattles:
    """What a retrain on an SW prior learns: the training part's judged samples, to append as battles."""

    samples: tuple[Judged, ...]

    def summary(self) -> str:
        """One line for the operator: how many battles, prompts and of which outcomes."""
        v = [s.verdict for s in self.samples]
        prompts = len({s.prompt for s in self.samples})
        return (
            f"{len(v)} new battles on {prompts} prompts (strong better {v.count(STRONG_BETTER)}, "
            f"tie {len(v) - v.count(STRONG_BETTER) - v.count(WEAK_BETTER)}, weak better {v.count(WEAK_BETTER)})"
        )


def judged_battles(samples: Sequence[Judged], strong: str, weak: str) -> TrainingData:
    """The judged samples as SW training pairs: ``strong`` is ``model_a``, the verdict its outcome."""
    outcome = {STRONG_BETTER: A_WINS, WEAK_BETTER: B_WINS}
    pairs = [Pair(s.prompt, strong, weak, outcome.get(s.verdict, TIE), JUDGED_SOURCE, s.key) for s in samples]
    return TrainingData(pairs, [JUDGED_SOURCE])


def append_battles(prior: ScoringRouter, new: NewBattles, embedder: Embedder, out_dir: Path) -> dict[str, ArtifactFile]:
    """Write the prior SW artifact's files with ``new`` appended to ``out_dir``; returns the manifest's ``files``."""
    artifact = prior.artifact
    m = artifact.manifest
    spec = prior.router.encoder_spec
    if spec is None:
        raise ValueError(f"{artifact.root}: an sw artifact without an encoder spec; cannot embed new battles")
    data = judged_battles(new.samples, prior.strong, prior.weak)
    stored = np.load(artifact.path("embeddings"), allow_pickle=False)
    with np.load(artifact.path("battles"), allow_pickle=False) as b:
        battles = {k: np.asarray(b[k]) for k in b.files}
    prompts = data.prompts()
    if prompts:
        raw = embedder.embed(prompts, spec)
        projection = load_projection(artifact)
        added = raw if projection is None else projection(raw)
        extra = battle_arrays(data, list(m.models))
        extra["prompt_idx"] = extra["prompt_idx"] + len(stored)
        stored = np.concatenate([stored, added.astype(stored.dtype)])
        battles = {k: np.concatenate([v, extra[k].astype(v.dtype)]) if k in extra else v for k, v in battles.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    files = dict(m.files)
    np.save(out_dir / files["embeddings"].path, stored)
    np.savez(out_dir / files["battles"].path, **battles)  # type: ignore[arg-type]
    for role, f in files.items():  # the projection (and anything else) unchanged
        if role not in ("embeddings", "battles"):
            shutil.copyfile(artifact.path(role), out_dir / f.path)
    return {role: replace(f, sha256=sha256_of(out_dir / f.path)) for role, f in files.items()}
