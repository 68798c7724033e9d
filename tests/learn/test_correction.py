"""The learner: offset logistic regression against scikit-learn, and its fold into an MF artifact."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.scorer import STRONG, WEAK, build_test_routers
from lab.data.keys import prompt_key
from lab.learn.candidate import NewBattles
from lab.learn.correction import Correction, fit_correction, logit
from lab.learn.retrain import write_candidate
from lab.learn.scoring import Embedder, load_scoring_router
from lab.learn.traffic import STRONG_BETTER, Judged
from scorer.artifacts import ArtifactFile, load_artifact, sha256_of, write_manifest
from scorer.routers import LoadContext, Router, load_router
from scorer.routers.sw import Projection


def _data(n: int = 400, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    p = 1 / (1 + np.exp(-(x @ w * 0.5 + 0.3)))
    u = rng.random(n)
    t = np.where(u < p * 0.8, 1.0, np.where(u < p * 0.8 + 0.2, 0.5, 0.0))  # ties as ½
    return x, rng.normal(scale=0.5, size=n), t


def test_without_offset_it_is_scikit_learns_logistic_regression() -> None:
    """Ties as a half win each way = duplicated rows with weight ½ in sklearn; same L2 (C = 1 / l2)."""
    from sklearn.linear_model import LogisticRegression

    x, _, t = _data()
    fit = fit_correction(x, np.zeros(len(t)), t, l2=2.0)
    xx = np.vstack([x, x])
    yy = np.concatenate([np.ones(len(t)), np.zeros(len(t))])
    ww = np.concatenate([t, 1 - t])
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(xx, yy, sample_weight=ww)
    np.testing.assert_allclose(fit.w, ref.coef_[0], atol=1e-5)
    assert fit.b == pytest.approx(ref.intercept_[0], abs=1e-5)


def test_offset_is_a_fixed_prior_and_its_weight_is_learnt() -> None:
    x, o, t = _data(seed=1)
    fixed = fit_correction(x, o, t, l2=1.0)
    assert fixed.prior_scale == 1.0
    # The gradient of the penalised loss vanishes at the optimum (the offset enters with weight 1).
    z = o + x @ fixed.w + fixed.b
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(x.T @ (p - t) + 1.0 * fixed.w, 0, atol=1e-6)
    # A prior that is pure noise gets a small learnt weight; a doubled true signal about half.
    noise = fit_correction(x, np.random.default_rng(5).normal(scale=3, size=len(t)), t, l2=1.0, prior_l2=0.01)
    assert abs(noise.prior_scale) < 0.2


def test_no_samples_is_no_correction_and_bad_input_is_refused() -> None:
    empty = fit_correction(np.zeros((0, 384)), np.zeros(0), np.zeros(0), l2=3.0, prior_l2=1.0)
    assert empty.samples == 0 and not empty.w.any() and empty.b == 0 and empty.prior_scale == 1.0
    with pytest.raises(ValueError, match="l2"):
        fit_correction(np.zeros((2, 3)), np.zeros(2), np.zeros(2), l2=0)
    with pytest.raises(ValueError, match="targets"):
        fit_correction(np.zeros((2, 3)), np.zeros(2), np.array([0.0, 2.0]), l2=1)
    np.testing.assert_allclose(
        logit(np.array([0.5, 0.0, 1.0])), [0.0, logit(np.array([1e-9]))[0], -logit(np.array([1e-9]))[0]]
    )


@pytest.mark.parametrize("headed", [False, True])
def test_folded_mf_artifact_scores_exactly_the_corrected_logit(tmp_path: Path, headed: bool) -> None:
    """The candidate is served by the scorer's own MF code: its score is sigmoid(c * prior + w.e + b).

    A prior with a length head (scorer.routers.length_head) keeps it, scaled by c like the rest of its logit.
    """
    routers = build_test_routers(tmp_path / "routers")
    if headed:
        m = load_artifact(routers / "mf").manifest
        head = {"beta": 0.8, "mean": 2.0, "std": 0.6}
        write_manifest(routers / "mf", replace(m, params={**m.params, "length_head": head}))
    embedder = Embedder(Path("build/encoder"), cache_dir=None, progress=False)
    prior = load_scoring_router(routers / "mf", embedder)
    ctx = LoadContext(Path("build/encoder"), embedder.encoder_name())
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(50, 384))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    models = prior.artifact.manifest.models
    n = len(emb)

    def rates(router: Router, a: str, b: str) -> np.ndarray:
        texts = ["x" * (3 * i) for i in range(n)]  # lengths matter to a length head
        return router.score(texts, emb, np.full(n, models.index(a)), np.full(n, models.index(b)))

    corr = Correction(w=rng.normal(scale=0.5, size=384), b=-0.4, l2=1.0, samples=10, prior_scale=0.7)
    out = write_candidate(
        prior,
        corr,
        tmp_path / "v0001",
        version="v0001",
        calibration_prompts=(),
        calibration_label="",
        embedder=embedder,
        prov={"note": "test"},
    )
    folded = load_router(load_artifact(out), ctx)
    assert folded.manifest.version == "v0001" and folded.manifest.provenance == {"note": "test"}
    want = 1 / (1 + np.exp(-corr.logit(emb, logit(rates(prior.router, STRONG, WEAK)))))
    np.testing.assert_allclose(rates(folded, STRONG, WEAK), want, atol=2e-6)
    # Pairs without the strong model are only scaled by the prior's weight.
    other = ("claude-2.1", "gpt-3.5-turbo-1106")
    np.testing.assert_allclose(logit(rates(folded, *other)), 0.7 * logit(rates(prior.router, *other)), atol=1e-5)


def test_sw_battles_are_stored_in_the_priors_projected_space(tmp_path: Path) -> None:
    """An SW prior with a similarity space (files.projection) gets the new prompts projected by it, the projection
    file unchanged; a prompt judged strong-better again and again then scores higher than under the prior."""
    routers = build_test_routers(tmp_path / "routers")
    sw = routers / "sw"
    m = load_artifact(sw).manifest
    rng = np.random.default_rng(5)
    projection = Projection(mean=rng.normal(scale=0.01, size=384), matrix=rng.normal(size=(4, 384)))
    projection.save(sw / "projection.npz")
    np.save(sw / m.files["embeddings"].path, projection(np.load(sw / m.files["embeddings"].path)).astype(np.float32))
    files = {**m.files, "projection": ArtifactFile("projection.npz")}
    files = {role: replace(f, sha256=sha256_of(sw / f.path)) for role, f in files.items()}
    write_manifest(sw, replace(m, files=files))
    embedder = Embedder(Path("build/encoder"), cache_dir=None, progress=False)
    prior = load_scoring_router(sw, embedder)
    prompt = "Prove that the square root of 2 is irrational, step by step."
    samples = tuple(Judged(f"j{i}", prompt_key(prompt), prompt, STRONG_BETTER) for i in range(30))
    out = write_candidate(
        prior,
        NewBattles(samples),
        tmp_path / "v0001",
        version="v0001",
        calibration_prompts=(),
        calibration_label="",
        embedder=embedder,
        prov={"note": "test"},
    )
    stored = np.load(out / "embeddings.npy")
    assert stored.dtype == np.float32 and stored.shape == (len(np.load(sw / "embeddings.npy")) + 1, 4)
    want = projection(embedder.embed([prompt], prior.router.encoder_spec))[0]
    np.testing.assert_allclose(stored[-1], want, atol=1e-6)
    assert (out / "projection.npz").read_bytes() == (sw / "projection.npz").read_bytes()
    candidate = load_scoring_router(out, embedder)
    assert candidate.score([prompt], embedder)[0] > prior.score([prompt], embedder)[0] + 0.1
