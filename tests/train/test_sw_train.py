"""SW training choices: the PLS similarity space, the strong-vs-weak rows it learns from, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from lab.data.benchmarks import STRONG, WEAK
from lab.train.data import A_WINS, B_WINS, TIE, Pair, TrainingData
from lab.train.sw import SWConfig, pls_projection, projection_rows, sw_params


def _planted(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 384)) + 0.3
    u = rng.normal(size=384)
    u /= np.linalg.norm(u)
    y = x @ u + 0.05 * rng.normal(size=n)
    return x, y, u


def test_pls_first_direction_finds_the_planted_signal() -> None:
    x, y, u = _planted()
    proj = pls_projection(x, y, 1)
    direction = proj.matrix[0] / np.linalg.norm(proj.matrix[0])
    assert abs(direction @ u) > 0.9  # plain covariance of x with y, dominated by u
    np.testing.assert_allclose(proj.mean, x.mean(axis=0))


def test_pls_scores_are_orthogonal_and_follow_the_label() -> None:
    """NIPALS scores of different components are uncorrelated; the first one tracks y."""
    x, y, _ = _planted(seed=1)
    proj = pls_projection(x, y, 5)
    assert proj.matrix.shape == (5, 384) and proj.dim == 5
    scores = (x - proj.mean) @ proj.matrix.T
    gram = scores.T @ scores
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 1e-8 * np.abs(np.diag(gram)).max()
    assert np.corrcoef(scores[:, 0], y)[0, 1] > 0.8
    unit = proj(x)  # what the scorer compares: unit rows of the scores
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0)
    np.testing.assert_allclose(unit, scores / np.linalg.norm(scores, axis=1, keepdims=True))


def test_pls_refuses_impossible_dimensions() -> None:
    x, y, _ = _planted(n=50)
    with pytest.raises(ValueError, match=r"1 <= dim <= min\(rows, features\) = 50, got 51"):
        pls_projection(x, y, 51)
    with pytest.raises(ValueError, match="no signal"):
        pls_projection(x, np.zeros(50), 1)


def test_projection_rows_are_the_default_pair_oriented_strong_first() -> None:
    pairs = [
        Pair("p1", STRONG, WEAK, A_WINS, "mmlu"),
        Pair("p2", WEAK, STRONG, A_WINS, "arena"),  # weak listed first and wins
        Pair("p2", STRONG, WEAK, TIE, "mmlu"),
        Pair("p3", "other", WEAK, B_WINS, "arena"),  # another pair: not used
        Pair("p3", WEAK, STRONG, B_WINS, "arena"),  # strong listed second and wins
    ]
    data = TrainingData(pairs, ["mmlu", "arena"])
    emb = np.arange(3, dtype=np.float64)[:, None] * np.ones((3, 384))  # row i = prompt p{i+1}
    x, y = projection_rows(data, emb, STRONG, WEAK)
    np.testing.assert_array_equal(y, [1.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(x[:, 0], [0.0, 1.0, 1.0, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight_exponent": 0.0}, r"SW weight exponent must be in \(0, 100\], is 0.0"),
        ({"projection_dim": 385}, r"SW projection dim must be in \[0, 384\] \(0 = none\), is 385"),
        ({"top_k": -1}, r"SW top-k must be >= 0 \(0 = every battle\), is -1"),
    ],
)
def test_bad_sw_settings_are_clear_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SWConfig(**kwargs)  # type: ignore[arg-type]


def test_params_record_only_what_differs_from_routellm() -> None:
    assert sw_params(SWConfig()) == {"scale": 400, "base": 10, "init_rating": 1000}
    params = sw_params(SWConfig(weight_exponent=3.0, projection_dim=8, top_k=50))
    assert params["weight_exponent"] == 3.0 and params["top_k"] == 50 and "projection_dim" not in params
