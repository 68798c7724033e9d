"""Matrix factorisation router (RouteLLM's MF), from NumPy weights.

``h = text_proj @ e (+ text_bias)``; per model ``s_m = classifier · (model_emb[m] * h)
(+ model_bias[m])``; ``strong_win_rate = sigmoid(s_strong - s_weak)``. Every model
the artifact knows gets a score, so any pair can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scorer.artifacts import Artifact
from scorer.routers.base import LoadContext, RouterBase, check, load_arrays, sigmoid

EMBED_DIM = 384


class MFRouter(RouterBase):
    """Scores every model from a prompt embedding with one small matrix product."""

    needs_embeddings = True

    def __init__(self, artifact: Artifact, ctx: LoadContext) -> None:
        super().__init__(artifact.manifest)
        m = artifact.manifest
        path = artifact.path("weights")
        w = load_arrays(artifact, "weights", {"text_proj": 2, "model_emb": 2, "classifier": 1})
        proj, emb, clf = w["text_proj"], w["model_emb"], w["classifier"]
        d = proj.shape[0]
        check(proj.shape[1] == EMBED_DIM, path, f"text_proj must be [d, {EMBED_DIM}], is {list(proj.shape)}")
        check(emb.shape == (len(m.models), d), path, f"model_emb must be [{len(m.models)}, {d}], is {list(emb.shape)}")
        check(clf.shape == (d,), path, f"classifier must be [{d}], is {list(clf.shape)}")
        bias = w.get("text_bias")
        check(bias is None or bias.shape == (d,), path, f"text_bias must be [{d}]")
        mbias = w.get("model_bias")
        check(mbias is None or mbias.shape == (len(m.models),), path, f"model_bias must be [{len(m.models)}]")
        for key, arr in w.items():
            check(bool(np.isfinite(arr).all()), path, f"array {key!r} has non-finite values")
        # Everything after the encoder is linear, so fold it into one [384, M] matrix and one bias:
        # s = (e @ P.T + b) @ T + mb = e @ (P.T @ T) + (b @ T + mb), T = (model_emb * classifier).T.
        # A 384 x M table (a few KB) instead of a 384 x d projection keeps the per-request cost small
        # when the encoder run has just evicted the caches (measured ~0.15 ms cold with the unfolded one).
        # float64: the folded matrices' rounding stays far below the scores' precision; they are tiny.
        table = (emb.astype(np.float64) * clf.astype(np.float64)[None, :]).T  # [d, M]
        self._weights = np.ascontiguousarray(proj.T.astype(np.float64) @ table)  # [384, M]
        offset = np.zeros(len(m.models)) if bias is None else bias.astype(np.float64) @ table
        self._offset = offset if mbias is None else offset + mbias.astype(np.float64)

    def model_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Per-model scores ``[B, M]`` (float64) for prompt embeddings ``[B, 384]``.

        Row by row (vector-matrix products): a product over the batch rounds each row's sums by the batch's size,
        so a prompt's score depended on its batch mates in the last bits (as SW's did, ``scorer.routers.sw``).
        """
        out = np.empty((len(embeddings), len(self._offset)))
        for i, row in enumerate(embeddings):
            out[i] = row.astype(np.float64) @ self._weights
        return out + self._offset

    def score(
        self, texts: Sequence[str], embeddings: np.ndarray | None, strong: np.ndarray, weak: np.ndarray
    ) -> np.ndarray:
        assert embeddings is not None, "MF needs embeddings"
        s = self.model_scores(embeddings)
        rows = np.arange(len(s))
        return sigmoid(s[rows, strong] - s[rows, weak])
