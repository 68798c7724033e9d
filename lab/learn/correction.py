"""A traffic-specific correction of a router's logit, learnt from judged samples.

The serving router is the prior: its logit ``o = logit(strong_win_rate)`` for a
prompt. Judged traffic (the strong model's answer better / tie / worse) adds a
linear term on the frozen encoder embedding ``e``::

    logit = o + w · e + b

fitted by L2-penalised logistic regression with ``o`` as a fixed offset (the
penalty on ``w`` only; ``b`` is free). Targets are 1 / ½ / 0 for strong better /
tie / weak better, as MF's training treats ties. With no samples ``w = 0`` and
``b = 0``, so the candidate is the serving router; the more samples, the further
the fit may move from it. Newton's method on the ``385``-parameter problem
converges in a handful of steps for the few thousand samples a user judges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scorer.routers.base import logit as base_logit
from scorer.routers.base import sigmoid

_MAX_STEPS = 50
_TOL = 1e-9


@dataclass(frozen=True)
class Correction:
    """``w`` ``[D]`` and ``b`` of ``logit = prior + w · e + b``, with what it was fitted on."""

    w: np.ndarray
    b: float
    l2: float
    samples: int
    prior_scale: float = 1.0

    def logit(self, embeddings: np.ndarray, prior_logit: np.ndarray) -> np.ndarray:
        """The corrected logit per row (float64)."""
        e = np.asarray(embeddings, dtype=np.float64)
        return np.asarray(self.prior_scale * np.asarray(prior_logit) + e @ self.w + self.b, dtype=np.float64)


def logit(p: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[1e-9, 1 - 1e-9]`` (a prior's win rates)."""
    return base_logit(p, eps)


def fit_correction(
    embeddings: np.ndarray,
    prior_logit: np.ndarray,
    target: np.ndarray,
    *,
    l2: float,
    weight: np.ndarray | None = None,
    fit_bias: bool = True,
    prior_l2: float | None = None,
) -> Correction:
    """Penalised logistic regression with an offset: minimise
    ``sum_i v_i BCE(sigmoid(o_i + w·e_i + b), t_i) + l2/2 |w|^2``.

    ``embeddings`` ``[N, D]``, ``prior_logit`` and ``target`` (in [0, 1]) ``[N]``,
    ``weight`` (default 1) per sample. ``N = 0`` gives the zero correction.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    o = np.asarray(prior_logit, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    n, d = x.shape if x.ndim == 2 else (len(x), 0)
    if x.ndim != 2 or o.shape != (n,) or t.shape != (n,):
        raise ValueError(
            f"embeddings [N, D], prior_logit [N] and target [N] expected, got {x.shape}, {o.shape}, {t.shape}"
        )
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, is {l2}")
    if n and not (np.isfinite(x).all() and np.isfinite(o).all() and ((t >= 0) & (t <= 1)).all()):
        raise ValueError("embeddings and prior logits must be finite and targets in [0, 1]")
    v = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    if n == 0:
        return Correction(np.zeros(d), 0.0, l2, 0)
    # Parameters theta = [w (d), (delta), b]; the bias gets a tiny ridge only to keep the Hessian invertible.
    cols = [x]
    ridges = [np.full(d, l2)]
    if prior_l2 is not None:  # logit = (1 + delta) * prior + ...: the prior's weight is learnt, shrunk to 1
        cols.append(o[:, None])
        ridges.append(np.array([prior_l2]))
    if fit_bias:
        cols.append(np.ones((n, 1)))
        ridges.append(np.array([1e-8]))
    xb = np.hstack(cols)
    ridge = np.concatenate(ridges)
    theta = np.zeros(xb.shape[1])

    def objective(th: np.ndarray) -> float:
        z = o + xb @ th
        return float(np.sum(v * (np.logaddexp(0.0, z) - t * z)) + 0.5 * np.sum(ridge * th**2))

    loss = objective(theta)
    for _ in range(_MAX_STEPS):
        p = sigmoid(o + xb @ theta)
        grad = xb.T @ (v * (p - t)) + ridge * theta
        hess = (xb * (v * p * (1.0 - p))[:, None]).T @ xb + np.diag(ridge)
        step = np.linalg.solve(hess, grad)
        # Damped Newton: halve the step until the (strictly convex) objective decreases.
        scale, new_loss = 1.0, objective(theta - step)
        while new_loss > loss and scale > 1e-6:
            scale /= 2
            new_loss = objective(theta - scale * step)
        theta = theta - scale * step
        done = loss - new_loss <= _TOL * max(1.0, abs(loss))
        loss = new_loss
        if done:
            break
    w = theta[:d]
    scale = 1.0 + float(theta[d]) if prior_l2 is not None else 1.0
    b = float(theta[-1]) if fit_bias else 0.0
    return Correction(np.asarray(w, dtype=np.float64), b, l2, n, scale)
