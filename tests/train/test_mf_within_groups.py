"""MF's training-only terms: per-group intercepts (within-group fit) and the jointly fitted length slope.

The synthetic data make the group offsets and the within-group difficulty point opposite ways
along the one embedding direction that carries both: the group that sits higher on it is the one
where the strong model helps less, while within each group a higher value means a harder prompt.
A plain fit learns the between-group direction and orders prompts within a group backwards; with
group intercepts the embedding part learns only the within-group direction.
"""

from __future__ import annotations

import numpy as np
import pytest

from lab.data.benchmarks import STRONG, WEAK
from lab.data.sources import SourcePrompt
from lab.train.data import A_WINS, B_WINS, Pair, TrainingData, pair_groups
from lab.train.mf import MFConfig, MFFit, train_mf
from lab.train.recipe import parse_recipe
from lab.train.sw import projection_rows
from scorer.routers.length_head import LengthHead

_DIM = 8
_FAST = MFConfig(dim=8, epochs=30, batch_size=512, lr=0.02, weight_decay=0.0, dropout=0.0)


def _data(pairs: list[Pair], groups: dict[str, str]) -> TrainingData:
    info = {p.prompt: SourcePrompt(p.key, p.prompt, p.source, groups[p.prompt]) for p in pairs}
    sources = list(dict.fromkeys(p.source for p in pairs))
    return TrainingData(pairs, sources, info=info)


def _confounded(n: int = 1500, seed: int = 0) -> tuple[TrainingData, np.ndarray, np.ndarray, np.ndarray]:
    """Two MMLU subjects; returns (data, embeddings, per-prompt u, per-prompt group index)."""
    rng = np.random.default_rng(seed)
    pairs: list[Pair] = []
    groups: dict[str, str] = {}
    emb, us, gs = [], [], []
    for g, (centre, offset) in enumerate([(-1.0, 2.0), (1.0, -2.0)]):  # higher group: strong helps less
        for i in range(n):
            u = centre + rng.uniform(-0.5, 0.5)
            p_strong = 1.0 / (1.0 + np.exp(-(offset + 4.0 * (u - centre))))  # within: higher u, harder
            text = f"subject {g} question {i}"
            outcome = A_WINS if rng.random() < p_strong else B_WINS
            pairs.append(Pair(text, STRONG, WEAK, outcome, "mmlu", f"k{g}-{i}"))
            groups[text] = f"s{g}"
            e = rng.normal(0, 0.05, _DIM)
            e[0] = u
            emb.append(e)
            us.append(u)
            gs.append(g)
    return _data(pairs, groups), np.array(emb, dtype=np.float32), np.array(us), np.array(gs)


def _gain_logit(fit: MFFit, emb: np.ndarray) -> np.ndarray:
    """The served strong-minus-weak logit of each prompt (what the scorer computes from weights.npz)."""
    w = fit.weights
    table = (w["model_emb"] * w["classifier"][None, :]).T
    s = emb.astype(np.float64) @ (w["text_proj"].T @ table) + w["model_bias"]
    return np.asarray(s[:, 0] - s[:, 1])  # data.models puts the golden pair's strong model first


def _within_group_corr(score: np.ndarray, u: np.ndarray, g: np.ndarray) -> list[float]:
    return [float(np.corrcoef(score[g == k], u[g == k])[0, 1]) for k in np.unique(g)]


def test_group_intercepts_learn_the_within_group_direction_the_plain_fit_reverses() -> None:
    data, emb, u, g = _confounded()
    plain = train_mf(data, emb, _FAST, seed=0, progress=False)
    within = train_mf(data, emb, MFConfig(**{**vars(_FAST), "group_intercepts": True}), seed=0, progress=False)
    plain_corr = _within_group_corr(_gain_logit(plain, emb), u, g)
    within_corr = _within_group_corr(_gain_logit(within, emb), u, g)
    assert all(c < -0.9 for c in plain_corr), plain_corr  # learns "looks like the easy group": backwards
    assert all(c > 0.9 for c in within_corr), within_corr  # learns difficulty within each group
    assert set(within.weights) == set(plain.weights)  # the group biases are not exported
    assert within.length_head(0, 1) is None


def test_pair_groups_are_subjects_where_a_source_has_them_else_the_source() -> None:
    pairs = [
        Pair("q1", STRONG, WEAK, A_WINS, "mmlu", "a"),
        Pair("q2", STRONG, WEAK, B_WINS, "mmlu", "b"),
        Pair("q3", STRONG, WEAK, A_WINS, "gsm8k", "c"),
        Pair("q4", "m1", "m2", A_WINS, "arena-human-1k", "d"),
        Pair("q5", "m1", "m2", A_WINS, "battles", "e"),  # a battles file: no prompt facts
    ]
    data = _data(pairs[:4], {"q1": "anatomy", "q2": "law", "q3": "gsm8k", "q4": "arena-human-1k"})
    data.pairs.append(pairs[4])
    index, names = pair_groups(data)
    assert [names[i] for i in index] == ["mmlu/anatomy", "mmlu/law", "gsm8k", "arena-human-1k", "battles"]


def test_length_joint_fits_the_length_slope_and_exports_it_as_the_served_head() -> None:
    rng = np.random.default_rng(1)
    pairs, groups, emb = [], {}, []
    for i in range(3000):
        text = "x" * int(np.exp(rng.uniform(2.0, 7.0)))  # lengths over ~3 orders of magnitude
        text = f"{i} {text}"
        pairs.append(Pair(text, STRONG, WEAK, A_WINS, "gsm8k", f"k{i}"))
        groups[text] = "gsm8k"
        emb.append(rng.normal(0, 0.05, _DIM))  # the embedding carries nothing
    data = _data(pairs, groups)
    head = LengthHead.of_lengths(1.0, data.prompts())
    z = head.clamped_z(data.prompts())
    p_strong = 1.0 / (1.0 + np.exp(-1.5 * z))
    for k, p in enumerate(data.pairs):  # outcome by length alone: slope 1.5 per sd
        data.pairs[k] = Pair(
            p.prompt, p.model_a, p.model_b, A_WINS if rng.random() < p_strong[k] else B_WINS, p.source, p.key
        )
    fit = train_mf(
        data, np.array(emb, dtype=np.float32), MFConfig(**{**vars(_FAST), "length_joint": True}), seed=0, progress=False
    )
    served = fit.length_head(0, 1)
    assert served is not None
    assert (served.mean, served.std) == (head.mean, head.std)  # standardised as a post-hoc head would be
    assert 1.0 < served.beta < 2.0, served.beta
    assert fit.length_head(1, 0) is not None and fit.length_head(1, 0).beta == pytest.approx(-served.beta)  # type: ignore[union-attr]


def test_length_joint_and_a_post_hoc_length_beta_are_exclusive() -> None:
    with pytest.raises(ValueError, match="length_beta must then be 0"):
        parse_recipe({"kind": "mf", "length_beta": 0.3, "settings": {"length_joint": True}}, name="x", source="x.toml")
    recipe = parse_recipe(
        {"kind": "mf", "settings": {"length_joint": True, "group_intercepts": True}}, name="x", source="x.toml"
    )
    assert recipe.settings.length_joint and recipe.settings.group_intercepts and recipe.length_beta == 0


def test_sw_within_groups_centres_the_projection_targets_per_group() -> None:
    data, emb, _, g = _confounded(n=200)
    _, plain = projection_rows(data, emb, STRONG, WEAK)
    _, centred = projection_rows(data, emb, STRONG, WEAK, within_groups=True)
    assert abs(plain[g == 0].mean() - plain[g == 1].mean()) > 0.3  # the groups differ
    for k in (0, 1):
        assert abs(centred[g == k].mean()) < 1e-12
        np.testing.assert_allclose(centred[g == k], plain[g == k] - plain[g == k].mean())
