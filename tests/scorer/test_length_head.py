"""The length head's term: beta * z, z the standardised log-length clamped at +-3 training sd."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scorer.routers.length_head import Z_LIMIT, LengthHead

HEAD = LengthHead(beta=0.3, mean=5.78, std=0.76)  # the shipped routers' scale


def _chars_at(z: float) -> int:
    """A length whose standardised log-length is about ``z`` under HEAD."""
    return round(math.expm1(HEAD.mean + z * HEAD.std))


def test_limit_is_three_training_sd() -> None:
    assert Z_LIMIT == 3.0


def test_inside_the_range_the_term_is_unchanged() -> None:
    texts = ["x" * _chars_at(z) for z in (-2.9, -1.0, 0.0, 1.5, 2.9)]
    z = (np.log1p([len(t) for t in texts]) - HEAD.mean) / HEAD.std
    assert np.all(np.abs(z) < 3)
    np.testing.assert_array_equal(HEAD.z(texts), z)
    np.testing.assert_allclose(HEAD.shift(texts), 0.3 * z, rtol=0, atol=1e-15)


def test_long_prompt_gets_at_most_three_sd() -> None:
    """A 96,000-character RAG prompt: z ~ 7.5, unclamped +2.25 logits; clamped exactly beta * 3."""
    text = "x" * 96_000
    z = (math.log1p(96_000) - 5.78) / 0.76
    assert HEAD.z([text])[0] == pytest.approx(z, abs=1e-12) and 7.4 < z < 7.6
    assert HEAD.shift([text])[0] == 0.3 * 3.0
    assert HEAD.shift(["x" * 10**7])[0] == 0.3 * 3.0  # no further growth however long


def test_short_prompt_gets_at_least_minus_three_sd() -> None:
    texts = ["", "hi"]  # z = -7.6 and -6.2 under HEAD
    assert np.all(HEAD.z(texts) < -3)
    assert HEAD.shift(texts).tolist() == [-0.3 * 3.0, -0.3 * 3.0]


def test_at_the_limit_exactly() -> None:
    head = LengthHead(beta=2.0, mean=math.log1p(99), std=math.log1p(999) - math.log1p(99))  # z(999 chars) = 1
    np.testing.assert_allclose(head.shift(["x" * 99, "x" * 999]), [0.0, 2.0], rtol=0, atol=1e-12)
    wide = LengthHead(beta=2.0, mean=math.log1p(99), std=(math.log1p(999) - math.log1p(99)) / 3)  # z(999) = 3
    np.testing.assert_allclose(wide.shift(["x" * 999]), [6.0], rtol=0, atol=1e-12)


def test_apply_adds_the_clamped_term_to_the_logit() -> None:
    rates = np.array([0.2, 0.5, 0.9])
    texts = ["", "x" * _chars_at(1.0), "x" * 96_000]
    got = HEAD.apply(rates, texts)
    logit = np.log(rates / (1 - rates)) + np.array([-0.9, 0.3 * HEAD.z(texts[1:2])[0], 0.9])
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logit)), rtol=0, atol=1e-12)
