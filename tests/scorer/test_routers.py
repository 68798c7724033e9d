"""Routers on their own: the SW fast path equals RouteLLM's direct fit, scores are sane, bad artifacts fail clearly."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from harness.scorer import DEFAULT_ENCODER_DIR, SAMPLE_PROMPTS, STRONG, TEST_MODELS, WEAK
from scorer.artifacts import ArtifactFile, format_version_for, load_artifact, sha256_of, write_manifest
from scorer.core import Message, ScoreQuery, ScorerCore
from scorer.errors import ArtifactError, InvalidInputError, UnknownModelError, UnknownRouterError
from scorer.routers import ROUTER_KINDS, LoadContext
from scorer.routers.sw import SWRouter, connected, fit_bradley_terry, similarity_weights, unit_rows

PROMPTS = ["What is 2 + 2?", "Prove that sqrt(2) is irrational.", "Write a haiku about rain.", "hola"]


@pytest.fixture(scope="module")
def core(test_routers_dir: Path) -> ScorerCore:
    return ScorerCore.load(test_routers_dir, DEFAULT_ENCODER_DIR)


def routellm_elo_fit(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, weight: np.ndarray, m: int) -> np.ndarray:
    """RouteLLM's ``compute_elo_mle_with_tie``: every battle row twice, a tie as one win each way,
    an unpenalised logistic regression without intercept, ``X = ±log(BASE)``. Returns coef_."""
    rows = np.concatenate([np.arange(len(a)), np.arange(len(a))])
    x = np.zeros((len(rows), m))
    x[np.arange(len(rows)), a[rows]] = math.log(10)
    x[np.arange(len(rows)), b[rows]] = -math.log(10)
    y = np.zeros(len(rows))
    y[outcome[rows] == 0] = 1.0
    first_half = np.arange(len(rows)) < len(a)
    y[(outcome[rows] == 2) & first_half] = 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12, max_iter=10_000)
    lr.fit(x, y, sample_weight=np.concatenate([weight, weight]))
    return np.asarray(lr.coef_[0])


def _sw_with_params(test_routers_dir: Path, tmp_path: Path, **params: object) -> Path:
    """A copy of the test SW artifact with ``params`` set in its manifest."""
    dest = _copy(test_routers_dir / "sw", tmp_path / "sw")
    raw = json.loads((dest / "manifest.json").read_text())
    raw["params"].update(params)
    (dest / "manifest.json").write_text(json.dumps(raw))
    return dest


def _projected_sw(test_routers_dir: Path, tmp_path: Path, dim: int, **params: object) -> Path:
    """A copy of the test SW artifact in a ``dim``-d PLS space of its strong-vs-weak battles (as training writes)."""
    from lab.train.sw import pls_projection

    dest = _sw_with_params(test_routers_dir, tmp_path, **params)
    art = load_artifact(dest)
    emb = np.load(art.path("embeddings")).astype(np.float32)
    with np.load(art.path("battles")) as data:
        prompt, a, b, outcome = (data[k].astype(np.int64) for k in ("prompt_idx", "model_a", "model_b", "outcome"))
    strong, weak = TEST_MODELS.index(STRONG), TEST_MODELS.index(WEAK)
    pair = ((a == strong) & (b == weak)) | ((a == weak) & (b == strong))
    a_score = np.select([outcome == 0, outcome == 1], [1.0, 0.0], 0.5)
    target = np.where(a == strong, a_score, 1.0 - a_score)[pair]
    projection = pls_projection(emb[prompt[pair]], target, dim)
    np.save(dest / "embeddings.npy", projection(emb).astype(np.float32))
    projection.save(dest / "projection.npz")
    files = {**art.manifest.files, "projection": ArtifactFile("projection.npz")}
    files = {role: ArtifactFile(f.path, sha256_of(dest / f.path)) for role, f in files.items()}
    write_manifest(dest, replace(art.manifest, files=files))
    return dest


@pytest.mark.parametrize(
    ("exponent", "dim", "top_k"), [(None, 0, None), (4.0, 0, None), (3.0, 8, None), (2.0, 0, 9), (3.0, 6, 12)]
)
def test_sw_fast_path_equals_direct_weighted_logistic_regression(
    test_routers_dir: Path, tmp_path: Path, exponent: float | None, dim: int, top_k: int | None
) -> None:
    """RouteLLM's weighting (no optional params), a sharpened one, a projected space, top-k, and all together."""
    params: dict[str, object] = {} if exponent is None else {"weight_exponent": exponent}
    if top_k is not None:
        params["top_k"] = top_k
    if dim:
        src = _projected_sw(test_routers_dir, tmp_path, dim, **params)
    elif params:
        src = _sw_with_params(test_routers_dir, tmp_path, **params)
    else:
        src = test_routers_dir / "sw"
    art = load_artifact(src)
    router = SWRouter(art, LoadContext(DEFAULT_ENCODER_DIR, "all-MiniLM-L6-v2"))
    assert "weight_exponent" not in art.manifest.params or exponent is not None
    assert (router.projection is not None) == bool(dim) and router.top_k == top_k
    emb = np.load(art.path("embeddings")).astype(np.float32)
    assert emb.shape[1] == (dim or 384)
    with np.load(art.path("battles")) as data:
        prompt, a, b, outcome = (data[k].astype(np.int64) for k in ("prompt_idx", "model_a", "model_b", "outcome"))
    assert (outcome == 2).any() and (outcome == 0).any() and (outcome == 1).any()
    from scorer.encoder import Encoder

    queries = Encoder(DEFAULT_ENCODER_DIR).encode(PROMPTS)
    fast = router.strengths(queries)
    m = len(TEST_MODELS)
    if router.projection is not None:  # cosine in the projected space
        emb, queries = unit_rows(emb), router.projection(queries)
    for q, theta in zip(queries, fast, strict=True):
        sim = emb[prompt] @ q  # one similarity per battle row, as RouteLLM computes it
        weight = 10 * 10 ** ((exponent or 1.0) * sim / sim.max())
        if top_k is not None:  # only the battles of the top_k most similar prompts
            kth = np.sort(emb[np.unique(prompt)] @ q)[-top_k]
            weight[sim < kth] = 0.0
            assert 0 < np.count_nonzero(weight) < len(weight)
        coef = routellm_elo_fit(a, b, outcome, weight, m)
        beta = theta / math.log(10)
        # Identified up to a common shift: compare centred ratings and every pairwise win rate.
        np.testing.assert_allclose(beta - beta.mean(), coef - coef.mean(), atol=1e-4)
        elo_fast, elo_lr = 400 * beta, 400 * coef
        win_fast = 1 / (1 + 10 ** ((elo_fast[None, :] - elo_fast[:, None]) / 400))
        win_lr = 1 / (1 + 10 ** ((elo_lr[None, :] - elo_lr[:, None]) / 400))
        np.testing.assert_allclose(win_fast, win_lr, atol=1e-4)


def test_sparse_cells_path_equals_dense_counts(test_routers_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Artifacts too large for the dense (pair x prompt) table take the gathered-cells path: same sums."""
    from scorer.routers import sw

    art = load_artifact(test_routers_dir / "sw")
    ctx = LoadContext(DEFAULT_ENCODER_DIR, "all-MiniLM-L6-v2")
    dense = SWRouter(art, ctx)
    monkeypatch.setattr(sw, "_DENSE_COUNTS_LIMIT", 0)
    sparse = SWRouter(art, ctx)
    queries = np.load(art.path("embeddings")).astype(np.float32)[:7]
    np.testing.assert_allclose(sparse.win_matrices(queries), dense.win_matrices(queries), rtol=1e-12)


@pytest.mark.parametrize("variant", ["sw", "mf", "sw raw", "sw top_k", "sw sparse", "mf test"])
def test_scores_do_not_depend_on_batch_mates_or_blas_threads(
    test_routers_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """A query's SW or MF score is bit for bit the same alone, in any batch, and under any BLAS thread count. Was:
    the batch's matrix products rounded each query's sums by the batch's size and OpenBLAS's threads (SW scores up
    to 5e-15 apart, MF's in the last bit), so evaluation figures, scored in the scorer's timing-dependent
    micro-batches, moved in the 6th decimal from run to run (and the raw scores in reports/tiers.json)."""
    from threadpoolctl import threadpool_limits

    from ferryman import paths
    from scorer.routers import load_router, sw

    if variant == "sw sparse":
        monkeypatch.setattr(sw, "_DENSE_COUNTS_LIMIT", 0)
    src = {
        "sw": paths.routers_dir() / "sw",  # the shipped artifacts, whose figures are published
        "mf": paths.routers_dir() / "mf",
        "sw top_k": _sw_with_params(test_routers_dir, tmp_path, top_k=9, weight_exponent=3.0),
        "mf test": test_routers_dir / "mf",
    }.get(variant, test_routers_dir / "sw")
    art = load_artifact(src)
    router = load_router(art, LoadContext(DEFAULT_ENCODER_DIR, "all-MiniLM-L6-v2"))
    rng = np.random.default_rng(0)
    queries = unit_rows(rng.standard_normal((64, 384))).astype(np.float32)
    strong, weak = router.model_index(art.manifest.default_strong), router.model_index(art.manifest.default_weak)

    def scores(batch: int) -> np.ndarray:
        parts = [queries[i : i + batch] for i in range(0, len(queries), batch)]
        n = [len(q) for q in parts]
        return np.concatenate(
            [router.score([""] * k, q, np.full(k, strong), np.full(k, weak)) for k, q in zip(n, parts, strict=True)]
        )

    alone = scores(1)
    for batch in (3, 7, 64):
        np.testing.assert_array_equal(scores(batch), alone, err_msg=f"batches of {batch}")
    for threads in (1, 2, 4):
        with threadpool_limits(threads, user_api="blas"):
            np.testing.assert_array_equal(scores(64), alone, err_msg=f"{threads} BLAS threads")


def test_bradley_terry_recovers_known_strengths() -> None:
    truth = np.array([1.0, 0.0, -0.5, -1.5])
    p = 1 / (1 + np.exp(-(truth[:, None] - truth[None, :])))
    wins = 1000.0 * p * (1 - np.eye(4))  # expected counts: the MLE is the truth
    assert connected(wins > 0)
    for fast in (True, False):
        np.testing.assert_allclose(fit_bradley_terry(wins, is_connected=fast), truth - truth.mean(), atol=1e-8)
    # A model without battles stays finite (pseudo-inverse path), the others keep their differences.
    wins5 = np.zeros((5, 5))
    wins5[:4, :4] = wins
    assert not connected(wins5 > 0)
    theta = fit_bradley_terry(wins5)
    assert np.isfinite(theta).all()
    np.testing.assert_allclose(np.diff(theta[:4]), np.diff(truth), atol=1e-8)
    # Declared connected (as the training data is) but two groups for this query, which makes the fast
    # path's matrix singular: the pseudo-inverse's finite answer, no error.
    split = np.zeros((4, 4))
    split[0, 1], split[1, 0], split[2, 3], split[3, 2] = 3.0, 1.0, 2.0, 1.0
    np.testing.assert_allclose(fit_bradley_terry(split, is_connected=True), fit_bradley_terry(split), atol=1e-12)
    # Which path a query takes is its own: beside a connected query in a batch, each gets what it gets alone (was:
    # one singular query sent the whole batch to the pseudo-inverse, and a solve that missed the singular system
    # answered with an arbitrary offset between the groups).
    both = fit_bradley_terry(np.stack([wins, split]), is_connected=True)
    np.testing.assert_array_equal(both[0], fit_bradley_terry(wins, is_connected=True))
    np.testing.assert_array_equal(both[1], fit_bradley_terry(split, is_connected=True))


def test_similarity_weights_follow_routellm() -> None:
    sim = np.array([[0.5], [1.0], [0.0]])
    np.testing.assert_allclose(similarity_weights(sim)[:, 0], [10 * 10**0.5, 100.0, 10.0])
    np.testing.assert_allclose(similarity_weights(sim, 3.0)[:, 0], [10 * 10**1.5, 10_000.0, 10.0])


@pytest.mark.parametrize("bad", [0, -1, 1e6, "2", True, None])
def test_bad_weight_exponent_is_a_load_error(test_routers_dir: Path, tmp_path: Path, bad: object) -> None:
    art = load_artifact(_sw_with_params(test_routers_dir, tmp_path, weight_exponent=bad))
    with pytest.raises(
        ArtifactError, match=r"sw/manifest\.json: params\.weight_exponent must be a number in \(0, 100\]"
    ):
        SWRouter(art, LoadContext(DEFAULT_ENCODER_DIR, "all-MiniLM-L6-v2"))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8", True])
def test_bad_top_k_is_a_load_error(test_routers_dir: Path, tmp_path: Path, bad: object) -> None:
    art = load_artifact(_sw_with_params(test_routers_dir, tmp_path, top_k=bad))
    with pytest.raises(ArtifactError, match=r"sw/manifest\.json: params\.top_k must be a whole number >= 1"):
        SWRouter(art, LoadContext(DEFAULT_ENCODER_DIR, "all-MiniLM-L6-v2"))


def _replace_projection(dest: Path, **arrays: np.ndarray) -> None:
    with np.load(dest / "projection.npz") as data:
        current = {k: data[k] for k in data.files}
    np.savez(dest / "projection.npz", **{**current, **arrays})
    raw = json.loads((dest / "manifest.json").read_text())
    raw["files"]["projection"]["sha256"] = None
    (dest / "manifest.json").write_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"matrix": np.zeros((4, 100), np.float32)}, r"projection\.npz: matrix must be \[d, 384\] .* is \[4, 100\]"),
        ({"mean": np.zeros(383, np.float32)}, r"projection\.npz: mean must be \[384\], is \[383\]"),
        ({"mean": np.full(384, np.nan, np.float32)}, r"projection\.npz: projection has non-finite values"),
        # a projection of another dimension than the stored (projected) embeddings
        ({"matrix": np.ones((5, 384), np.float32)}, r"embeddings\.npy: embeddings must be \[N, 5\] \(projected"),
    ],
)
def test_bad_projection_is_a_load_error(
    test_routers_dir: Path, tmp_path: Path, arrays: dict[str, np.ndarray], match: str
) -> None:
    dest = _projected_sw(test_routers_dir, tmp_path, 4)
    _replace_projection(dest, **arrays)
    with pytest.raises(ArtifactError, match=match):
        SWRouter(load_artifact(dest), LoadContext(DEFAULT_ENCODER_DIR, "all-MiniLM-L6-v2"))


def test_projected_artifact_refused_by_raw_shape_check(test_routers_dir: Path, tmp_path: Path) -> None:
    """Projected embeddings without their projection file are not mistaken for raw ones (older scorers too)."""
    dest = _projected_sw(test_routers_dir, tmp_path, 4)
    raw = json.loads((dest / "manifest.json").read_text())
    del raw["files"]["projection"]
    (dest / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=r"embeddings\.npy: embeddings must be \[N, 384\]$"):
        SWRouter(load_artifact(dest), LoadContext(DEFAULT_ENCODER_DIR, "all-MiniLM-L6-v2"))


@pytest.mark.parametrize("router", ROUTER_KINDS)
def test_each_router_in_unit_interval_and_varies(core: ScorerCore, router: str) -> None:
    scores = [r.strong_win_rate for r in core.score([ScoreQuery(router, p) for p in SAMPLE_PROMPTS])]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len({round(s, 9) for s in scores}) > len(scores) // 2


def test_batch_equals_one_by_one_and_shares_one_encoder_pass(core: ScorerCore) -> None:
    queries = [ScoreQuery(r, p) for p in PROMPTS for r in ("mf", "sw", "bert", "random")]
    together = [r.strong_win_rate for r in core.score(queries)]
    alone = [core.score([q])[0].strong_win_rate for q in queries]
    np.testing.assert_allclose(together, alone, atol=1e-6)
    assert len(core.encoders) == 1  # mf and sw use the same window → one encoder, one pass


def test_pairs_swap_and_any_mf_pair(core: ScorerCore) -> None:
    for router in ("mf", "sw", "bert"):
        fwd = core.score([ScoreQuery(router, PROMPTS[1], strong_model=STRONG, weak_model=WEAK)])[0]
        rev = core.score([ScoreQuery(router, PROMPTS[1], strong_model=WEAK, weak_model=STRONG)])[0]
        assert fwd.strong_win_rate + rev.strong_win_rate == pytest.approx(1.0, abs=1e-6)
    other = core.score([ScoreQuery("mf", PROMPTS[1], weak_model="claude-2.1")])[0]
    assert other.weak_model == "claude-2.1" and other.strong_model == STRONG


def test_random_is_deterministic(core: ScorerCore) -> None:
    a = core.score([ScoreQuery("random", p) for p in PROMPTS])
    b = core.score([ScoreQuery("random", p) for p in reversed(PROMPTS)])
    assert [r.strong_win_rate for r in a] == [r.strong_win_rate for r in reversed(b)]


def test_conversation_scores_last_user_turn(core: ScorerCore) -> None:
    from scorer.core import Message, TurnSelection

    conv = [
        Message("system", "be nice"),
        Message("user", PROMPTS[0]),
        Message("assistant", "4"),
        Message("user", PROMPTS[1]),
    ]
    last = core.score([ScoreQuery("mf", conversation=conv)])[0].strong_win_rate
    assert last == core.score([ScoreQuery("mf", PROMPTS[1])])[0].strong_win_rate
    both = core.score([ScoreQuery("mf", conversation=conv, turns=TurnSelection.ALL_USER)])[0].strong_win_rate
    assert both == core.score([ScoreQuery("mf", PROMPTS[0] + "\n\n" + PROMPTS[1])])[0].strong_win_rate


@pytest.mark.parametrize(
    ("query", "error", "match"),
    [
        (ScoreQuery("mf", "   "), InvalidInputError, "empty"),
        (ScoreQuery("nope", "hi"), UnknownRouterError, "loaded routers: " + ", ".join(sorted(ROUTER_KINDS))),
        (ScoreQuery("mf", "hi", strong_model="gpt-5"), UnknownModelError, "known models: gpt-4-1106-preview"),
        (ScoreQuery("bert", "hi", weak_model="claude-2.1"), UnknownModelError, "known models"),
        (ScoreQuery("mf", "hi", strong_model=WEAK), InvalidInputError, "same model"),
        (ScoreQuery("mf", "x" * 1_000_001), InvalidInputError, "limit is 1000000"),
        (ScoreQuery("mf", conversation=[]), InvalidInputError, "no user turn"),
        (ScoreQuery("mf", conversation=[Message("user", "hi")] * 1025), InvalidInputError, "1025 messages"),
    ],
)
def test_bad_input(core: ScorerCore, query: ScoreQuery, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        core.score([query])


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


@pytest.mark.parametrize(
    ("router", "mutate", "match"),
    [
        ("mf", lambda d: (d / "weights.npz").write_bytes(b"junk"), r"mf/weights\.npz: SHA-256 mismatch"),
        ("sw", lambda d: (d / "battles.npz").unlink(), r"sw/battles\.npz: file for role 'battles' is missing"),
        ("bert", lambda d: (d / "manifest.json").write_text("{"), r"bert/manifest\.json: not valid JSON"),
    ],
)
def test_corrupt_artifact_is_a_load_error_naming_the_file(
    test_routers_dir: Path, tmp_path: Path, router: str, mutate: object, match: str
) -> None:
    root = _copy(test_routers_dir, tmp_path / "routers")
    mutate(root / router)  # type: ignore[operator]
    with pytest.raises(ArtifactError, match=match):
        ScorerCore.load(root, DEFAULT_ENCODER_DIR)


def test_unknown_kind_is_a_load_error_naming_the_manifest(test_routers_dir: Path, tmp_path: Path) -> None:
    root = _copy(test_routers_dir, tmp_path / "routers")
    raw = json.loads((root / "random" / "manifest.json").read_text())
    (root / "random" / "manifest.json").write_text(json.dumps(raw | {"kind": "knn"}))
    match = r"random/manifest\.json: unknown kind 'knn'; this scorer serves " + ", ".join(ROUTER_KINDS)
    with pytest.raises(ArtifactError, match=match):
        ScorerCore.load(root, DEFAULT_ENCODER_DIR)


def test_wrong_shapes_are_named(test_routers_dir: Path, tmp_path: Path) -> None:
    root = _copy(test_routers_dir, tmp_path / "routers")
    np.savez(
        root / "mf" / "weights.npz",
        text_proj=np.zeros((4, 10), np.float32),
        model_emb=np.zeros((4, 4)),
        classifier=np.zeros(4),
    )
    raw = json.loads((root / "mf" / "manifest.json").read_text())
    raw["files"]["weights"]["sha256"] = None
    (root / "mf" / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=r"weights\.npz: text_proj must be \[d, 384\]"):
        ScorerCore.load(root, DEFAULT_ENCODER_DIR)


def test_empty_routers_dir_fails(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no router artifacts"):
        ScorerCore.load(tmp_path, DEFAULT_ENCODER_DIR)


def _with_manifest_params(src: Path, dest: Path, **params: object) -> Path:
    """A copy of an artifact directory with ``params`` set in its manifest."""
    _copy(src, dest)
    raw = json.loads((dest / "manifest.json").read_text())
    raw.setdefault("params", {}).update(params)
    raw["format_version"] = format_version_for(raw["params"])
    (dest / "manifest.json").write_text(json.dumps(raw))
    return dest


@pytest.mark.parametrize("router", ["mf", "sw", "bert"])
def test_length_head_adds_its_term_to_any_routers_logit(test_routers_dir: Path, tmp_path: Path, router: str) -> None:
    """params.length_head: served logit = the router's logit + beta * clamp(z, -3, 3), every pair alike.

    z = (log1p(chars) - mean) / std; with mean 3, std 0.5 "hi" is below -3 and the
    2,000-character one above +3, so both clamped ends go through the real scorer."""
    head = {"beta": 0.7, "mean": 3.0, "std": 0.5}
    root = tmp_path / "routers"
    _copy(test_routers_dir / router, root / "plain")
    _with_manifest_params(test_routers_dir / router, root / "headed", length_head=head)
    for name in ("plain", "headed"):  # the copies keep their artifact's name: rename so both load side by side
        raw = json.loads((root / name / "manifest.json").read_text())
        (root / name / "manifest.json").write_text(json.dumps(raw | {"name": name}))
    core = ScorerCore.load(root, DEFAULT_ENCODER_DIR)
    prompts = ["hi", *PROMPTS, "word " * 400]
    for strong, weak in ((STRONG, WEAK), (WEAK, STRONG)):
        plain, headed = (
            np.array(
                [r.strong_win_rate for r in core.score([ScoreQuery(name, p, None, strong, weak) for p in prompts])]
            )
            for name in ("plain", "headed")
        )
        z = (np.log1p([len(p) for p in prompts]) - head["mean"]) / head["std"]
        assert z.min() < -3 < 3 < z.max()
        shift = head["beta"] * np.clip(z, -3.0, 3.0)
        expected = 1.0 / (1.0 + np.exp(-(np.log(plain / (1.0 - plain)) + shift)))
        np.testing.assert_allclose(headed, expected, rtol=0, atol=1e-12)
    assert not np.allclose(headed, plain)
    if router == "sw":  # kind-specific attributes stay reachable through the wrapper
        spec = core.routers["plain"].encoder_spec
        assert spec is not None
        emb = core.encoders[spec].encode(prompts)
        wrapped, inner = core.routers["headed"], core.routers["plain"]
        np.testing.assert_array_equal(wrapped.win_matrices(emb), inner.win_matrices(emb))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "bad",
    [
        {"beta": 1.0, "mean": 3.0},
        {"beta": 1.0, "mean": 3.0, "std": 0.0},
        {"beta": "1", "mean": 3.0, "std": 1.0},
        {"beta": float("nan"), "mean": 3.0, "std": 1.0},
        [1.0, 3.0, 1.0],
    ],
)
def test_bad_length_head_is_a_load_error_naming_the_manifest(
    test_routers_dir: Path, tmp_path: Path, bad: object
) -> None:
    dest = _with_manifest_params(test_routers_dir / "mf", tmp_path / "routers" / "mf", length_head=bad)
    with pytest.raises(ArtifactError, match=r"mf/manifest\.json: params\.length_head"):
        ScorerCore.load(dest.parent, DEFAULT_ENCODER_DIR)


SHIPPED = Path(__file__).resolve().parents[2] / "routers"


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="no trained routers/ in this checkout")
def test_shipped_routers_load_and_score() -> None:
    """The committed default artifacts load in the scorer (after `make setup` built their ONNX files)."""
    core = ScorerCore.load(SHIPPED, DEFAULT_ENCODER_DIR)
    for name in core.routers:
        rates = [r.strong_win_rate for r in core.score([ScoreQuery(name, p) for p in PROMPTS])]
        assert all(0.0 <= r <= 1.0 for r in rates) and len(set(rates)) > 1, name


def test_bert_runs_unpadded_batches_on_its_mask_free_graph(test_routers_dir: Path, tmp_path: Path) -> None:
    """``files.onnx_unpadded`` serves every run without padding; the probabilities equal the masked graph's."""
    plain = _copy(test_routers_dir / "bert", tmp_path / "bert")
    raw = json.loads((plain / "manifest.json").read_text())
    del raw["files"]["onnx_unpadded"]
    (plain / "manifest.json").write_text(json.dumps(raw))
    (plain / "model.unpadded.onnx").unlink()
    ctx = LoadContext(encoder_dir=DEFAULT_ENCODER_DIR, encoder_name="all-MiniLM-L6-v2")
    from scorer.routers.bert import BertRouter

    twin, masked = BertRouter(load_artifact(test_routers_dir / "bert"), ctx), BertRouter(load_artifact(plain), ctx)
    assert twin._graphs.unpadded is not None and masked._graphs.unpadded is None
    np.testing.assert_allclose(twin.probabilities(PROMPTS), masked.probabilities(PROMPTS), atol=1e-6)
    # The twin really is what runs: one run per prompt on it; a padded batch goes to the masked graph.
    session = twin._graphs.unpadded
    calls: list[int] = []

    class Counting:
        def run(self, *args: object) -> object:
            calls.append(1)
            return session.run(*args)  # type: ignore[arg-type]

    twin._graphs.unpadded = Counting()  # type: ignore[assignment]
    twin.probabilities(PROMPTS)
    assert len(calls) == len(PROMPTS)
    padded = twin.tokenizer.batch(PROMPTS[:2])
    assert not padded.attention_mask.all()
    np.testing.assert_allclose(twin._graphs.run(padded), masked._graphs.run(padded), atol=1e-6)
    assert len(calls) == len(PROMPTS)


def test_bert_declared_twin_missing_names_the_file(test_routers_dir: Path, tmp_path: Path) -> None:
    art = _copy(test_routers_dir / "bert", tmp_path / "bert")
    (art / "model.unpadded.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"model\.unpadded\.onnx"):
        ScorerCore.load(tmp_path, DEFAULT_ENCODER_DIR, only=["bert"])
