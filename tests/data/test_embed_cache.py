"""The embedding cache never serves vectors another encoder's numerics produced."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import scorer.encoder
from lab.data.embed_cache import cache_path, embed_cached
from scorer.encoder import Encoder

ENCODER_DIR = Path("build/encoder")
TEXTS = ["What is 2 + 2?", "Write a haiku about autumn leaves.", "Explain TCP slow start in two sentences."]


def _no_encoding(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("encoded although every text was cached")

    monkeypatch.setattr(encoder, "encode", refuse)


def test_the_same_encoder_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = embed_cached(TEXTS, Encoder(ENCODER_DIR), tmp_path, progress=False)
    again = Encoder(ENCODER_DIR)
    _no_encoding(again, monkeypatch)
    np.testing.assert_array_equal(embed_cached(TEXTS, again, tmp_path, progress=False), first)


def test_other_numerics_are_recomputed_with_a_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cached = embed_cached(TEXTS, Encoder(ENCODER_DIR), tmp_path, progress=False)
    # The same file name (name, precision, window) but sessions that fuse SkipLayerNormalization
    # (as before 2026-12-05): different rounding, so the cached vectors are not this encoder's.
    monkeypatch.setattr(scorer.encoder, "DISABLED_FUSIONS", ())
    fused = Encoder(ENCODER_DIR)
    assert cache_path(tmp_path, fused) == cache_path(tmp_path, Encoder(ENCODER_DIR))
    with caplog.at_level(logging.WARNING, logger="lab.data.embed_cache"):
        got = embed_cached(TEXTS, fused, tmp_path, progress=False)
    np.testing.assert_array_equal(got, fused.encode(TEXTS))
    assert not np.array_equal(got, cached)
    assert any("other numerics" in r.getMessage() and fused.fingerprint in r.getMessage() for r in caplog.records)


def test_a_cache_without_a_fingerprint_is_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = Encoder(ENCODER_DIR)
    wrong = np.zeros((len(TEXTS), encoder.dim), dtype=np.float32)  # a file from before fingerprints, not these numbers
    embed_cached(TEXTS, encoder, tmp_path, progress=False)
    path = cache_path(tmp_path, encoder)
    with np.load(path) as data:
        keys = data["keys"]
    np.savez(path, keys=keys, vectors=wrong)
    with caplog.at_level(logging.WARNING, logger="lab.data.embed_cache"):
        got = embed_cached(TEXTS, encoder, tmp_path, progress=False)
    np.testing.assert_array_equal(got, encoder.encode(TEXTS))
    assert any("has no encoder fingerprint" in r.getMessage() for r in caplog.records)
    # Rewritten with the fingerprint: the next run reuses it.
    _no_encoding(encoder, monkeypatch)
    np.testing.assert_array_equal(embed_cached(TEXTS, encoder, tmp_path, progress=False), got)
