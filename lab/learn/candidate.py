"""Fold a learnt correction into a servable MF artifact (no new router kind, no scorer change).

An MF router's logit for a pair is linear in the prompt embedding
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
"""

from __future__ import annotations

import numpy as np

from lab.learn.correction import Correction

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
