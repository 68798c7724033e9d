"""BERT trainer: the linear probe (LP of LP-FT), the on-disk hidden-state cache, probe-only scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab.data.benchmarks import STRONG, WEAK, LabeledPrompt
from lab.eval.metrics import apgr_by_benchmark
from lab.select.bert import probe_scores
from lab.train.bert import (
    BertConfig,
    BertTrainer,
    _load_hidden,
    _save_hidden,
    base_fingerprint,
    bert_weights,
    changed_layers,
    fit_probe,
    hidden_cache_path,
    module_from_delta,
)
from lab.train.data import A_WINS, TIE, Pair, TrainingData
from scorer.artifacts import EncoderSpec

SPEC = EncoderSpec(max_tokens=32, head_tokens=8)
PROMPTS = [f"question {i}: what is {i} plus {i * 7}?" for i in range(12)] + ["a", "Prove that sqrt(2) is irrational."]


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping classes on features with large, uneven offsets and scales (like raw hidden states)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 600)
    centres = rng.normal(size=(3, 5))
    x = centres[y] + rng.normal(scale=1.5, size=(600, 5))
    return (x * np.array([1, 10, 0.1, 3, 50]) + 20).astype(np.float32), y


def test_probe_matches_scikit_learn_logistic_regression_on_raw_features() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs()
    weight, bias = fit_probe(x, y, c=0.1)
    assert weight.shape == (3, 5) and bias.shape == (3,)
    z = StandardScaler().fit_transform(x.astype(np.float64))
    ref = LogisticRegression(C=0.1, max_iter=2000, tol=1e-10).fit(z, y).predict_proba(z)
    logits = x.astype(np.float64) @ weight.T + bias  # standardisation folded into the head
    ours = np.exp(logits - logits.max(axis=1, keepdims=True))
    ours /= ours.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_probe_regularisation_shrinks_the_head_and_bad_input_is_refused() -> None:
    x, y = _blobs(1)
    strong, _ = fit_probe(x, y, c=1e-4)
    weak, _ = fit_probe(x, y, c=10.0)
    assert np.abs(strong * x.std(axis=0)).sum() < 0.1 * np.abs(weak * x.std(axis=0)).sum()
    with pytest.raises(ValueError, match="probe_c"):
        fit_probe(x, y, c=0.0)
    with pytest.raises(ValueError, match="feature rows"):
        fit_probe(x[:10], y, c=1.0)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory) -> tuple[BertTrainer, Path]:
    cache = tmp_path_factory.mktemp("bert-cache")
    return BertTrainer(PROMPTS, SPEC, 1, cache_dir=cache, progress=False), cache


def test_hidden_states_are_cached_on_disk_and_reused(trainer: tuple[BertTrainer, Path]) -> None:
    first, cache = trainer
    path = hidden_cache_path(cache, SPEC, first.first_layer)
    assert path.is_file()
    again = BertTrainer(PROMPTS[::-1], SPEC, 1, cache_dir=cache, progress=False)
    for p in PROMPTS:
        a, b = first.hidden[first.index[p]], again.hidden[again.index[p]]
        assert a.shape == b.shape and bool((a == b).all())
    with np.load(path) as data:
        assert len(data["keys"]) == len(PROMPTS)
    grown = BertTrainer([*PROMPTS, "one more prompt"], SPEC, 1, cache_dir=cache, progress=False)
    with np.load(path) as data:
        assert len(data["keys"]) == len(PROMPTS) + 1
    assert grown.lengths[grown.index["a"]] == first.lengths[first.index["a"]]
    path.write_bytes(b"not an npz")  # a broken cache is recomputed, not trusted
    fresh = BertTrainer(PROMPTS[:2], SPEC, 1, cache_dir=cache, progress=False)
    recomputed = fresh.hidden[0].float().numpy()  # padding differs by batch: equal up to fp16 rounding
    np.testing.assert_allclose(recomputed, first.hidden[first.index[PROMPTS[0]]].float().numpy(), atol=2e-2)


def test_hidden_state_cache_is_keyed_by_the_base_encoder(
    trainer: tuple[BertTrainer, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """States cached by another base encoder are recomputed; a fingerprint-less file is checked, then adopted or not."""
    import torch

    from lab.train.export import load_base_encoder

    first, _ = trainer
    base = load_base_encoder()
    fingerprint = base_fingerprint(base, SPEC)
    assert fingerprint == base_fingerprint(load_base_encoder(), SPEC)  # a second load: the same digest
    assert base_fingerprint(base, EncoderSpec(max_tokens=8, head_tokens=2)) != fingerprint  # other token ids
    with torch.no_grad():
        base.encoder.layer[0].output.dense.bias[0] += 1e-3
    assert base_fingerprint(base, SPEC) != fingerprint  # other weights

    good = {h: first.hidden[i].numpy() for h, i in ((_h(p), first.index[p]) for p in PROMPTS)}
    garbage = {h: np.full_like(v, 7.0) for h, v in good.items()}
    path = hidden_cache_path(tmp_path, SPEC, first.first_layer)

    _save_hidden(path, garbage, "0" * 16)  # another base encoder's states
    again = BertTrainer(PROMPTS, SPEC, 1, cache_dir=tmp_path, progress=False)
    assert not any(bool((h == 7.0).all()) for h in again.hidden) and "was written by base encoder" in caplog.text
    assert _load_hidden(path)[1] == fingerprint

    _save_legacy(path, good)  # written before fingerprints, by this base: adopted as it is
    adopted = BertTrainer(PROMPTS, SPEC, 1, cache_dir=tmp_path, progress=False)
    assert all(bool((adopted.hidden[adopted.index[p]].numpy() == good[_h(p)]).all()) for p in PROMPTS)
    assert _load_hidden(path)[1] == fingerprint  # and rewritten with the fingerprint

    _save_legacy(path, garbage)  # written before fingerprints, by something else: dropped
    caplog.clear()
    dropped = BertTrainer(PROMPTS, SPEC, 1, cache_dir=tmp_path, progress=False)
    assert not any(bool((h == 7.0).all()) for h in dropped.hidden) and "differs from a fresh computation" in caplog.text


def _h(text: str) -> str:
    from lab.data.embed_cache import text_hash

    return text_hash(text)


def _save_legacy(path: Path, known: dict[str, np.ndarray]) -> None:
    """A cache file as written before it stored a base fingerprint."""
    keys = np.array(list(known), dtype="U40")
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in known.values()])]).astype(np.int64)
    np.savez(path, keys=keys, offsets=offsets, states=np.concatenate(list(known.values())).astype(np.float16))


def test_probe_only_router_scores_what_the_selection_scores(trainer: tuple[BertTrainer, Path]) -> None:
    tr, _ = trainer
    labels = np.arange(len(PROMPTS)) % 3
    cfg = BertConfig(epochs=0, probe_c=1.0)
    module = tr.train(PROMPTS, labels, cfg, seed=0)
    weight, bias = fit_probe(tr.features(PROMPTS), labels, cfg.probe_c)
    np.testing.assert_allclose(
        module.head.weight.detach().numpy(), weight, rtol=1e-6, atol=1e-6
    )  # the head is the probe
    np.testing.assert_allclose(tr.predict(module, PROMPTS), probe_scores(tr.features(PROMPTS), weight, bias), atol=1e-5)


def test_fine_tuning_starts_from_the_probe_and_moves_the_top_layer(trainer: tuple[BertTrainer, Path]) -> None:
    tr, _ = trainer
    labels = np.arange(len(PROMPTS)) % 3
    probe = tr.train(PROMPTS, labels, BertConfig(epochs=0), seed=0)
    tuned = tr.train(PROMPTS, labels, BertConfig(epochs=1, lr=1e-3, head_lr=1e-3, batch_size=4), seed=0)
    moved = [k for k, v in tuned.state_dict().items() if not bool((v == probe.state_dict()[k]).all())]
    assert any(k.startswith("inner.encoder.layer.5.") for k in moved) and "head.weight" in moved
    assert not any(k.startswith("inner.encoder.layer.4.") for k in moved)  # frozen below the trained layer


def test_validation_apgr_is_per_benchmark() -> None:
    val = [
        LabeledPrompt("k1", "p1", "mmlu", "s", 1.0, 0.0),
        LabeledPrompt("k2", "p2", "mmlu", "s", 0.0, 0.0),
        LabeledPrompt("k3", "p3", "gsm8k", "g", 1.0, 0.0),
        LabeledPrompt("k4", "p4", "gsm8k", "g", 0.0, 0.0),
    ]
    got = apgr_by_benchmark(val, np.array([0.9, 0.1, 0.2, 0.8]))
    assert got["mmlu"] > 0.5 and got["gsm8k"] < 0.5 and set(got) == {"mmlu", "gsm8k"}


def test_probe_only_delta_is_the_head_and_rebuilds_the_same_router(trainer: tuple[BertTrainer, Path]) -> None:
    tr, _ = trainer
    labels = np.arange(len(PROMPTS)) % 3
    cfg = BertConfig(epochs=0)
    module = tr.train(PROMPTS, labels, cfg, seed=0)
    delta = tr.delta(module, cfg)
    assert sorted(delta) == ["head.bias", "head.weight"] and changed_layers(cfg) == 0
    rebuilt = module_from_delta(delta)
    np.testing.assert_allclose(tr.predict(rebuilt, PROMPTS), tr.predict(module, PROMPTS), atol=1e-3)
    tuned = BertConfig(epochs=1)
    assert changed_layers(tuned) == 1 and any(k.startswith("inner.encoder.layer.5.") for k in tr.delta(module, tuned))


def test_probe_row_weights_act_like_repeated_rows() -> None:
    x, y = _blobs(2)
    weights = np.where(np.arange(len(y)) % 4 == 0, 3.0, 1.0)
    rows = np.repeat(np.arange(len(y)), weights.astype(int))
    w_weighted, b_weighted = fit_probe(x, y, c=0.1, weights=weights)
    w_repeated, b_repeated = fit_probe(x[rows], y[rows], c=0.1)

    def proba(w: np.ndarray, b: np.ndarray) -> np.ndarray:
        z = x.astype(np.float64) @ w.T + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    # equal up to the standardisation statistics, which repeated rows shift slightly
    np.testing.assert_allclose(proba(w_weighted, b_weighted), proba(w_repeated, b_repeated), atol=0.02)
    with pytest.raises(ValueError, match="positive"):
        fit_probe(x, y, c=0.1, weights=np.zeros(len(y)))


def test_gsm8k_rows_get_the_configured_weight() -> None:
    pairs = [
        Pair("p1", STRONG, WEAK, A_WINS, "mmlu", "k1"),
        Pair("p2", WEAK, STRONG, TIE, "gsm8k", "k2"),
        Pair("p3", STRONG, WEAK, A_WINS, "arena-bench-v1"),
        Pair("p4", "other", WEAK, A_WINS, "arena-bench-v1"),  # not the pair BERT scores: no row
    ]
    data = TrainingData(pairs, ["arena-bench-v1", "mmlu", "gsm8k"])
    assert bert_weights(data, STRONG, WEAK, BertConfig(gsm8k_weight=3.0)).tolist() == [1.0, 3.0, 1.0]
    assert bert_weights(data, STRONG, WEAK, BertConfig(gsm8k_weight=1.0)).tolist() == [1.0, 1.0, 1.0]
