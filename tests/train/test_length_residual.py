"""Length-residualised router inputs (``length_residual``): the length direction goes, the rest stays.

Synthetic prompts whose lengths vary over two orders of magnitude; their embeddings carry the
standardised log-length in two coordinates (as MiniLM's do, spread over several) and, independently,
a difficulty in another. The strong model's edge grows with both. Residualised, the inputs keep
no linear trace of length on the training prompts, keep everything orthogonal to the removed
direction, and each trainer folds the projection into its artifact so that raw inputs are scored
as the residualised ones were.
"""

from __future__ import annotations

import numpy as np
import pytest

from lab.data.benchmarks import STRONG, WEAK
from lab.train.bert import BertConfig, fit_probe, probe_head
from lab.train.data import A_WINS, B_WINS, Pair, TrainingData
from lab.train.length_resid import length_direction, project_out
from lab.train.mf import MFConfig, train_mf
from lab.train.sw import SWConfig, learn_projection
from scorer.routers.length_head import LengthHead

_DIM = 8
_FAST = MFConfig(dim=8, epochs=30, batch_size=512, lr=0.02, weight_decay=0.0, dropout=0.0)


def _prompts(n: int = 2000, seed: int = 0) -> tuple[TrainingData, np.ndarray, np.ndarray, np.ndarray]:
    """(data, embeddings [n, 8] float32, standardised log-length z, difficulty d) of ``n`` prompts."""
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.uniform(np.log(20), np.log(2000), n)).astype(int)
    texts = [f"{i:05d} " + "x" * int(k) for i, k in enumerate(lengths)]
    z = LengthHead.of_lengths(1.0, texts).clamped_z(texts)
    d = rng.normal(0, 1, n)
    emb = rng.normal(0, 0.05, (n, _DIM))
    emb[:, 0] += 0.3 * z  # length, in two coordinates and mixed with difficulty in one
    emb[:, 1] += 0.2 * z + 0.1 * d
    emb[:, 2] += 0.3 * d
    edge = 1.5 * z + 1.5 * d
    pairs = [
        Pair(t, STRONG, WEAK, A_WINS if rng.random() < 1 / (1 + np.exp(-e)) else B_WINS, "mmlu", f"k{i}")
        for i, (t, e) in enumerate(zip(texts, edge, strict=True))
    ]
    return TrainingData(pairs, ["mmlu"]), emb.astype(np.float32), z, d


def _cov(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - a.mean()) * (b - b.mean())))


def test_the_projection_removes_every_linear_trace_of_length_and_keeps_the_orthogonal_rest() -> None:
    data, emb, z, _ = _prompts()
    u = length_direction(emb, data.prompts())
    assert np.linalg.norm(u) == pytest.approx(1.0)
    assert abs(u[0]) > 0.5 and abs(u[1]) > 0.3  # the length coordinates
    before = [_cov(emb[:, j].astype(np.float64), z) for j in range(_DIM)]
    resid = project_out(emb, u)
    after = [_cov(resid[:, j], z) for j in range(_DIM)]
    assert max(abs(c) for c in before) > 0.2
    assert max(abs(c) for c in after) < 1e-12  # every coordinate, hence every linear map
    rng = np.random.default_rng(1)
    v = rng.normal(size=_DIM)
    v -= (v @ u) * u  # any direction orthogonal to the removed one reads the same
    np.testing.assert_allclose(resid @ v, emb.astype(np.float64) @ v, atol=1e-12)
    np.testing.assert_allclose(resid @ u, 0.0, atol=1e-12)


def test_a_direction_needs_inputs_that_covary_with_length() -> None:
    texts = ["a" * k for k in range(1, 50)]
    with pytest.raises(ValueError, match="do not covary"):
        length_direction(np.ones((len(texts), 4)), texts)
    with pytest.raises(ValueError, match="one input row per text"):
        length_direction(np.ones((3, 4)), texts)


def _mf_logit(weights: dict[str, np.ndarray], emb: np.ndarray) -> np.ndarray:
    table = (weights["model_emb"] * weights["classifier"][None, :]).T
    s = emb.astype(np.float64) @ (weights["text_proj"].T.astype(np.float64) @ table) + weights["model_bias"]
    return np.asarray(s[:, 0] - s[:, 1])


def test_mf_residualised_learns_difficulty_without_length_and_serves_raw_embeddings() -> None:
    data, emb, z, d = _prompts()
    plain = train_mf(data, emb, _FAST, seed=0, progress=False)
    resid = train_mf(data, emb, MFConfig(**{**vars(_FAST), "length_residual": True}), seed=0, progress=False)
    u = length_direction(emb, data.prompts())
    np.testing.assert_allclose(resid.weights["text_proj"] @ u, 0.0, atol=1e-6)  # folded into text_proj
    raw, projected = _mf_logit(resid.weights, emb), _mf_logit(resid.weights, project_out(emb, u))
    np.testing.assert_allclose(raw, projected, atol=1e-5)
    assert np.corrcoef(_mf_logit(plain.weights, emb), z)[0, 1] > 0.5  # the plain MF learns length
    assert abs(np.corrcoef(raw, z)[0, 1]) < 1e-4  # the residualised one cannot
    assert np.corrcoef(raw, d)[0, 1] > 0.9  # and still learns the difficulty
    assert set(resid.weights) == set(plain.weights)


def test_sw_residualised_projection_is_folded_and_free_of_length() -> None:
    data, emb, z, d = _prompts()
    config = SWConfig(projection_dim=2, length_residual=True)
    proj, battles = learn_projection(data, emb, STRONG, WEAK, config)
    assert battles == len(data.pairs)  # every pair here is a strong vs weak battle
    u = length_direction(emb, data.prompts())
    np.testing.assert_allclose(proj.matrix @ u, 0.0, atol=1e-9)
    np.testing.assert_allclose(proj(emb), proj(project_out(emb, u)), atol=1e-9)
    scores = (emb.astype(np.float64) - proj.mean) @ proj.matrix.T
    assert max(abs(np.corrcoef(scores[:, j], z)[0, 1]) for j in range(2)) < 1e-6
    assert abs(np.corrcoef(scores[:, 0], d)[0, 1]) > 0.9
    plain, _ = learn_projection(data, emb, STRONG, WEAK, SWConfig(projection_dim=2))
    assert abs(np.corrcoef((emb - plain.mean) @ plain.matrix[0], z)[0, 1]) > 0.3
    with pytest.raises(ValueError, match="needs projection_dim"):
        SWConfig(length_residual=True)


def _labels(data: TrainingData) -> np.ndarray:
    return np.array([0 if p.outcome == A_WINS else 2 for p in data.pairs])


def test_bert_probe_residualised_is_folded_and_free_of_length() -> None:
    data, emb, z, d = _prompts()
    prompts, labels = data.prompts(), _labels(data)
    config = BertConfig(probe_c=1.0, length_residual=True)
    weight, _ = probe_head(emb, labels, prompts, config)
    u = length_direction(emb, prompts)
    np.testing.assert_allclose(weight @ u, 0.0, atol=1e-5)
    margin = emb.astype(np.float64) @ (weight[0] - weight[2])
    assert abs(np.corrcoef(margin, z)[0, 1]) < 1e-3
    assert np.corrcoef(margin, d)[0, 1] > 0.9
    plain, _ = probe_head(emb, labels, prompts, BertConfig(probe_c=1.0))
    assert np.corrcoef(emb @ (plain[0] - plain[2]), z)[0, 1] > 0.5


def test_bert_probe_group_intercepts_fit_within_groups() -> None:
    """Two groups whose offsets point against the within-group direction (as the MF test's data)."""
    rng = np.random.default_rng(0)
    feats, labels, groups = [], [], []
    for g, (centre, offset) in enumerate([(-1.0, 2.0), (1.0, -2.0)]):
        for _ in range(1500):
            u = centre + rng.uniform(-0.5, 0.5)
            p_strong = 1 / (1 + np.exp(-(offset + 4.0 * (u - centre))))
            f = rng.normal(0, 0.05, 4)
            f[0] = u
            feats.append(f)
            labels.append(0 if rng.random() < p_strong else 2)
            groups.append(g)
    x, y, gi = np.array(feats), np.array(labels), np.array(groups)
    plain, _ = fit_probe(x, y, 1.0)
    within, _ = fit_probe(x, y, 1.0, groups=gi)
    assert plain[0, 0] - plain[2, 0] < 0  # between groups: higher u, strong helps less
    assert within[0, 0] - within[2, 0] > 0  # within each group: higher u, strong helps more
    with pytest.raises(ValueError, match="group indices"):
        fit_probe(x, y, 1.0, groups=gi[:-1])
    with pytest.raises(ValueError, match="need epochs = 0"):
        BertConfig(epochs=1, group_intercepts=True)
