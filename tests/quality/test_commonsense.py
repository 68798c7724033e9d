"""The common-sense suite: every shipped router should score the hard prompt of a pair above the easy one.

The pairs (``commonsense_pairs.py``) were written before any router was scored on them and are never
used for training or for choosing a setting. Prompt length alone orders exactly half of them (the
easy prompt is the longer one in 25 of 50), so a router that only measures length scores 50 %.
Scores come from the scoring plane that serves ``Score`` (``ScorerCore``) over the committed
``routers/`` and the built encoder.

Issue #10 asks for ``TARGET_SHARE`` (90 %). The test asserts what each shipped router honestly
reaches (``lab.eval.commonsense.SHIPPED_SHARES``, printed by ``make figures`` into
``reports/commonsense.md``), so a change that orders fewer pairs fails here; a router below the
target is reported as such in docs/evaluation.md.
"""

from __future__ import annotations

import pytest

from ferryman import paths
from lab.eval.commonsense import SHIPPED_SHARES, TARGET_SHARE, evaluate, load_pairs
from scorer.artifacts import MANIFEST_NAME
from scorer.core import ScoreQuery, ScorerCore
from scorer.routers import ROUTER_KINDS

PAIRS = load_pairs()

SHIPPED = [k for k in ROUTER_KINDS if k != "random" and (paths.routers_dir() / k / MANIFEST_NAME).is_file()]


def test_length_alone_orders_exactly_half() -> None:
    longer_hard_chars = sum(len(p.hard) > len(p.easy) for p in PAIRS)
    longer_hard_words = sum(len(p.hard.split()) > len(p.easy.split()) for p in PAIRS)
    assert len(PAIRS) >= 40
    assert longer_hard_chars == longer_hard_words == len(PAIRS) // 2
    (length,) = evaluate([], PAIRS, lambda r, t: [])  # only the length baseline
    assert length.share == 0.5


@pytest.fixture(scope="module")
def core() -> ScorerCore:
    return ScorerCore.load(paths.routers_dir(), paths.encoder_dir(), only=SHIPPED)


def test_every_shipped_router_has_a_recorded_share() -> None:
    assert set(SHIPPED) <= set(SHIPPED_SHARES)


@pytest.mark.parametrize("router", SHIPPED)
def test_shipped_router_orders_the_pairs(core: ScorerCore, router: str) -> None:
    def score(name: str, prompts: list[str]) -> list[float]:
        return [r.strong_win_rate for r in core.score([ScoreQuery(name, t) for t in prompts])]

    (result, _length) = evaluate([router], PAIRS, score)
    print(f"{router}: {result.ordered}/{result.total} pairs ordered (target {TARGET_SHARE:.0%}); wrong: {result.wrong}")
    assert result.share >= SHIPPED_SHARES[router], (
        f"{router} orders {result.share:.0%} of the common-sense pairs, below the {SHIPPED_SHARES[router]:.0%} "
        "it reached when shipped"
    )
