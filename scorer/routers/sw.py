"""Similarity-weighted Bradley–Terry router (RouteLLM's SW ranking), fast path.

RouteLLM weights every training battle by ``10 * 10 ** (sim / max(sim))`` (sim =
cosine similarity of the battle's prompt to the query; the optional
``params.weight_exponent`` k sharpens this to ``10 * 10 ** (k * sim / max(sim))``,
k = 1 being RouteLLM's weighting) and refits a logistic
regression over all battle rows per query (``compute_elo_mle_with_tie``: ties
duplicated as one win each way). That estimator depends only on the weighted
win counts per ordered model pair, so we aggregate battles once at load time into
a table of win counts per (ordered model pair, prompt); per query the weights sum
into an ``M x M`` win matrix (one matrix product for a whole batch), and a batched
Newton fit of Bradley–Terry on that small problem gives the same maximum-likelihood
ratings, far faster.

Two optional extensions (docs/artifacts.md), both off in RouteLLM's form:
``files.projection`` measures the cosine in a small supervised space
``matrix @ (e - mean)`` instead of the raw 384-d embedding space (the stored
training embeddings are then already projected), and ``params.top_k`` keeps only
the battles of the ``top_k`` most similar training prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scorer.artifacts import MANIFEST_NAME, Artifact
from scorer.errors import ArtifactError
from scorer.routers.base import LoadContext, RouterBase, check, load_arrays, sigmoid
from scorer.routers.mf import EMBED_DIM

_MAX_NEWTON_STEPS = 100
_DENSE_COUNTS_LIMIT = 16_000_000  # pair x prompt entries (128 MB float64) before switching to gathered cells
MAX_WEIGHT_EXPONENT = 100.0  # 10 ** 100 stays far from float64 overflow


def similarity_weights(sim: np.ndarray, exponent: float = 1.0) -> np.ndarray:
    """Battle weights ``10 * 10 ** (exponent * sim / max(sim))`` per column of ``sim`` ``[N, B]``.

    ``exponent`` 1 is RouteLLM's weighting; larger values concentrate the fit on the most
    similar training prompts (the nearest prompt outweighs an unrelated one by ``10 ** exponent``).
    """
    top = sim.max(axis=0, keepdims=True)
    # A query unlike every training prompt (max <= 0) gets uniform weights instead of a division by zero.
    scaled = np.divide(sim, top, out=np.zeros_like(sim), where=top > 0)
    return np.asarray(10.0 * np.power(10.0, exponent * scaled), dtype=np.float64)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


@dataclass(frozen=True)
class Projection:
    """A supervised similarity space: ``z = matrix @ (e - mean)``, compared by cosine (``files.projection``)."""

    mean: np.ndarray  # [384]
    matrix: np.ndarray  # [d, 384]

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the similarity space."""
        return int(self.matrix.shape[0])

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """Unit-length projected vectors ``[B, d]`` (float64) of encoder embeddings ``[B, 384]``."""
        return unit_rows((np.asarray(embeddings, dtype=np.float64) - self.mean) @ self.matrix.T)

    def save(self, path: Path) -> None:
        """Write ``mean`` and ``matrix`` (float32) as the ``.npz`` that ``load_projection`` reads."""
        np.savez(path, mean=self.mean.astype(np.float32), matrix=self.matrix.astype(np.float32))


def load_projection(artifact: Artifact) -> Projection | None:
    """The artifact's ``files.projection``, validated; None when it has none (RouteLLM's raw cosine)."""
    if "projection" not in artifact.manifest.files:
        return None
    arrays = load_arrays(artifact, "projection", {"mean": 1, "matrix": 2})
    mean, matrix = arrays["mean"], arrays["matrix"]
    path = artifact.path("projection")
    check(mean.shape == (EMBED_DIM,), path, f"mean must be [{EMBED_DIM}], is {list(mean.shape)}")
    check(
        1 <= matrix.shape[0] <= EMBED_DIM and matrix.shape[1] == EMBED_DIM,
        path,
        f"matrix must be [d, {EMBED_DIM}] with 1 <= d <= {EMBED_DIM}, is {list(matrix.shape)}",
    )
    check(bool(np.isfinite(mean).all() and np.isfinite(matrix).all()), path, "projection has non-finite values")
    return Projection(mean.astype(np.float64), matrix.astype(np.float64))


def _top_k(value: object, manifest: Path) -> int | None:
    if value is None:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    check(ok, manifest, f"params.top_k must be a whole number >= 1, is {value!r}")
    return int(value)  # type: ignore[call-overload]


def connected(pairs: np.ndarray) -> bool:
    """Whether models linked by battles (``pairs[i, j]`` true) form one connected graph."""
    m = pairs.shape[0]
    link = pairs | pairs.T
    seen = np.zeros(m, dtype=bool)
    seen[0] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = link[frontier].any(axis=0) & ~seen
        seen |= frontier
    return bool(seen.all())


def fit_bradley_terry(wins: np.ndarray, tol: float = 1e-12, *, is_connected: bool = False) -> np.ndarray:
    """Maximum-likelihood BT strengths (natural log-odds, sum zero) from ``wins[..., i, j]`` = weight of i beating j.

    Maximises ``sum_ij wins[i, j] * log(sigmoid(t_i - t_j))`` for every leading index at once
    (a batch of queries) with damped Newton steps. The Hessian is minus a weighted graph
    Laplacian ``L``: when the battle graph is connected, ``L + 11'/m`` is invertible and a
    plain solve gives the centred step; otherwise a pseudo-inverse keeps models without
    battles (or disconnected groups) finite. ``is_connected`` (the training data links every
    model) allows the solve; whether it applies is decided per query, from its own weights.
    """
    single = wins.ndim == 2
    w = wins[None] if single else wins
    b, m, _ = w.shape
    n = w + np.swapaxes(w, 1, 2)
    ones = np.full((m, m), 1.0 / m)
    theta = np.zeros((b, m))
    # Connected by the training data need not mean connected for this query (weights that round to nothing can
    # cut a model or a group off, and the solve need not notice the singular system): such a query takes the
    # pseudo-inverse, the others the solve, whatever their batch mates.
    solvable = np.array([is_connected and connected(x > 0) for x in n], dtype=bool)

    def loglik(t: np.ndarray) -> np.ndarray:
        d = t[:, :, None] - t[:, None, :]
        return np.asarray(-(w * np.logaddexp(0.0, -d)).sum(axis=(1, 2)))

    current = loglik(theta)
    active = np.ones(b, dtype=bool)
    for _ in range(_MAX_NEWTON_STEPS):
        p = sigmoid(theta[:, :, None] - theta[:, None, :])
        grad = (w - n * p).sum(axis=2)
        a = n * p * (1.0 - p)
        lap = a.sum(axis=2)[:, :, None] * np.eye(m) - a
        step = np.empty((b, m))
        if solvable.any():
            step[solvable] = np.linalg.solve(lap[solvable] + ones, grad[solvable][:, :, None])[:, :, 0]
        if not solvable.all():
            rest = ~solvable
            step[rest] = np.einsum("bij,bj->bi", np.linalg.pinv(lap[rest], hermitian=True), grad[rest])
        step -= step.mean(axis=1, keepdims=True)
        step[~active] = 0.0
        # Backtracking per query: halve the step until the likelihood does not drop.
        scale = np.ones(b)
        while True:
            cand = theta + scale[:, None] * step
            value = loglik(cand)
            bad = (value < current - 1e-12 * np.abs(current)) & (scale >= 1e-6)
            if not bad.any():
                break
            scale[bad] *= 0.5
        theta, current = cand, value
        active &= np.abs(scale[:, None] * step).max(axis=1, initial=0.0) >= tol
        if not active.any():
            break
    return theta[0] if single else theta


class SWRouter(RouterBase):
    """Per query: similarity weights → weighted win matrix → Bradley–Terry fit."""

    needs_embeddings = True

    def __init__(self, artifact: Artifact, ctx: LoadContext) -> None:
        super().__init__(artifact.manifest)
        m = artifact.manifest
        exponent = m.params.get("weight_exponent", 1.0)
        check(
            isinstance(exponent, (int, float))
            and not isinstance(exponent, bool)
            and 0 < exponent <= MAX_WEIGHT_EXPONENT,
            artifact.root / MANIFEST_NAME,
            f"params.weight_exponent must be a number in (0, {MAX_WEIGHT_EXPONENT:g}], is {exponent!r}",
        )
        self.weight_exponent = float(exponent)
        self.top_k = _top_k(m.params.get("top_k"), artifact.root / MANIFEST_NAME)
        self.projection = load_projection(artifact)
        dim = EMBED_DIM if self.projection is None else self.projection.dim
        emb_path = artifact.path("embeddings")
        try:
            emb = np.load(emb_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{emb_path}: not a readable .npy file ({exc})") from exc
        # With a projection the stored training embeddings are already in its d-dimensional space.
        space = "" if self.projection is None else " (projected: files.projection has d rows)"
        check(emb.ndim == 2 and emb.shape[1] == dim, emb_path, f"embeddings must be [N, {dim}]{space}")
        check(emb.dtype in (np.float16, np.float32), emb_path, f"embeddings must be float16/32, are {emb.dtype}")
        check(bool(np.isfinite(emb).all()), emb_path, "embeddings have non-finite values")
        prompt, a, b, outcome = self._load_battles(artifact, len(emb), len(m.models))
        # Only prompts that have battles count (RouteLLM's max(sim) runs over battle rows).
        used, prompt = np.unique(prompt, return_inverse=True)
        # float64: the similarities' rounding stays far below the weights' (10 ** (k * sim / max sim)).
        self._emb = np.ascontiguousarray(emb[used], dtype=np.float64)
        if self.projection is not None:
            self._emb = unit_rows(self._emb)
        mm = len(m.models)
        # Each battle as (winner, loser) cells: a win counts 1, a tie 1/2 each way (RouteLLM's
        # duplicated rows, halved; the MLE is unchanged by a common factor).
        winner = np.concatenate([np.where(outcome == 1, b, a), np.where(outcome == 1, a, b)[outcome == 2]])
        loser = np.concatenate([np.where(outcome == 1, a, b), np.where(outcome == 1, b, a)[outcome == 2]])
        mult = np.concatenate([np.where(outcome == 2, 0.5, 1.0), np.full(int((outcome == 2).sum()), 0.5)])
        rows = np.concatenate([prompt, prompt[outcome == 2]])
        key = (rows.astype(np.int64) * mm + winner) * mm + loser
        cells, inverse = np.unique(key, return_inverse=True)
        cell_mult = np.bincount(inverse, weights=mult)
        cell_prompt, cell_pair = cells // (mm * mm), cells % (mm * mm)
        self._pairs, pair_of_cell = np.unique(cell_pair, return_inverse=True)
        n_prompts, n_pairs = len(used), len(self._pairs)
        if n_prompts * n_pairs <= _DENSE_COUNTS_LIMIT:
            # counts[k, p] = battles of prompt p won by pair k's winner: one GEMM per batch.
            self._counts: np.ndarray | None = np.zeros((n_pairs, n_prompts))
            np.add.at(self._counts, (pair_of_cell, cell_prompt), cell_mult)
        else:
            # Too many (pair, prompt) combinations for a dense table: gather the cells
            # (sorted by pair) and sum each pair's run with one reduceat per batch.
            self._counts = None
            order = np.argsort(pair_of_cell, kind="stable")
            self._cell_prompt, self._cell_mult = cell_prompt[order], cell_mult[order]
            self._pair_starts = np.searchsorted(pair_of_cell[order], np.arange(n_pairs))
        self._m = mm
        support = np.zeros(mm * mm, dtype=bool)
        support[self._pairs] = True
        self._connected = connected(support.reshape(mm, mm))

    @staticmethod
    def _load_battles(artifact: Artifact, n_prompts: int, n_models: int) -> tuple[np.ndarray, ...]:
        path = artifact.path("battles")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = [np.asarray(data[k]).astype(np.int64) for k in ("prompt_idx", "model_a", "model_b", "outcome")]
        except KeyError as exc:
            raise ArtifactError(f"{path}: missing array {exc}") from exc
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a readable .npz file ({exc})") from exc
        prompt, a, b, outcome = arrays
        k = len(prompt)
        check(
            k > 0 and all(x.shape == (k,) for x in arrays), path, "battle arrays must be 1-D, equal length, non-empty"
        )
        check(bool(((prompt >= 0) & (prompt < n_prompts)).all()), path, "prompt_idx out of range of embeddings")
        for name, arr in (("model_a", a), ("model_b", b)):
            check(bool(((arr >= 0) & (arr < n_models)).all()), path, f"{name} out of range of models")
        check(bool((a != b).all()), path, "a battle has model_a == model_b")
        check(bool(np.isin(outcome, (0, 1, 2)).all()), path, "outcome must be 0, 1 or 2")
        return prompt, a, b, outcome

    def win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        """Similarity-weighted win matrices ``[B, M, M]`` for query embeddings ``[B, 384]``.

        Each query is weighed on its own, with matrix-vector products: a product over the whole batch rounds a
        query's sums differently with the batch's size and BLAS's thread count (up to 5e-15 in a score), so a
        prompt's score depended on the micro-batch the scorer put it in, and evaluation figures moved in the
        6th decimal from run to run. One query at a time is no slower (the batch's [P, B] temporaries were).
        """
        out = np.zeros((embeddings.shape[0], self._m * self._m))
        for i, row in enumerate(embeddings):
            out[i, self._pairs] = self._pair_weights(row)
        return out.reshape(-1, self._m, self._m)

    def _pair_weights(self, embedding: np.ndarray) -> np.ndarray:
        """Similarity-weighted win counts ``[pairs]`` of one query embedding ``[384]``."""
        query = embedding.astype(np.float64) if self.projection is None else self.projection(embedding[None])[0]
        sim = self._emb @ query  # [P]
        weights = similarity_weights(sim[:, None], self.weight_exponent)[:, 0]
        n = len(sim)
        if self.top_k is not None and self.top_k < n:
            # Only the top_k most similar training prompts count (all of them on a tie at the k-th).
            kth = np.partition(sim, n - self.top_k)[n - self.top_k]
            weights[sim < kth] = 0.0
        if self._counts is not None:
            return np.asarray(self._counts @ weights)
        return np.asarray(np.add.reduceat(weights[self._cell_prompt] * self._cell_mult, self._pair_starts))

    def strengths(self, embeddings: np.ndarray) -> np.ndarray:
        """Bradley–Terry strengths ``[B, M]`` (natural log-odds, centred) per query."""
        # With top_k a query's neighbours need not link every model: the pseudo-inverse path stays finite.
        linked = self._connected and self.top_k is None
        return fit_bradley_terry(self.win_matrices(embeddings), is_connected=linked)

    def score(
        self, texts: Sequence[str], embeddings: np.ndarray | None, strong: np.ndarray, weak: np.ndarray
    ) -> np.ndarray:
        assert embeddings is not None, "SW needs embeddings"
        t = self.strengths(embeddings)
        rows = np.arange(len(t))
        # 1 / (1 + base ** ((r_weak - r_strong) / scale)) == sigmoid(t_strong - t_weak).
        return sigmoid(t[rows, strong] - t[rows, weak])
