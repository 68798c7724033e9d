"""Length-residualised router inputs: the ``length_residual`` option of MF, SW and BERT's probe.

The MiniLM embedding encodes prompt length, so a router trained on it learns length through the
embedding, and its length head (``scorer.routers.length_head``) only adds a guessed weight on top.
With ``length_residual`` the router learns from inputs with length projected out, and the served
length head carries length explicitly (issue #10, docs/lab-log.md 2026-12-05 05:45).

On the training prompts, ``z`` is the clamped standardised log-length that the served head uses and
``c`` the covariance of each input coordinate with ``z``. The direction ``u = c / |c|`` is projected
out of every input: ``x' = x - (x . u) u``, not renormalised. This is the one rank-one orthogonal
projection after which *every* linear function of ``x'`` has zero covariance with ``z`` on the
training prompts (``Cov(x', z) = c - u |c| = 0``); a ridge or OLS direction of ``z`` on ``x`` would
leave length in correlated coordinates. Because the projection is linear it folds exactly into
the first linear map of the trained router (``project_out(matrix, u)`` on a matrix whose rows act
on inputs), so a residualised artifact is served by unchanged scorer code on raw inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scorer.routers.length_head import LengthHead


def length_direction(inputs: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """The unit direction ``[D]`` of ``inputs [N, D]`` that covaries with the length of ``texts``.

    ``texts[i]`` is the prompt of ``inputs[i]`` (the training prompts, each once).
    """
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(texts):
        raise ValueError(f"need one input row per text, got {x.shape} for {len(texts)} texts")
    z = LengthHead.of_lengths(1.0, texts).clamped_z(texts)
    cov = (x - x.mean(axis=0)).T @ (z - z.mean()) / len(z)
    norm = float(np.linalg.norm(cov))
    if norm <= 1e-12:
        raise ValueError("the inputs do not covary with prompt length: nothing to residualise")
    return np.asarray(cov / norm)


def project_out(rows: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``rows - (rows @ u) u^T`` (float64): inputs with ``u`` projected out, or a map's rows folded.

    For inputs ``[N, D]`` it gives the residualised inputs; for a matrix ``[K, D]`` that acts on
    inputs (``matrix @ x``) it gives the matrix that acts on raw inputs as the original acts on
    residualised ones (the projection is symmetric).
    """
    r = np.asarray(rows, dtype=np.float64)
    u = np.asarray(direction, dtype=np.float64)
    return np.asarray(r - np.outer(r @ u, u))
