"""The gate study's designs: what each reads, decides and serves (lab.learn.gate_study)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lab.learn.gate import area_differences
from lab.learn.gate_study import DESIGNS, _evidence, decide, draws_for, tails_of

BY_NAME = {d.name: d for d in DESIGNS}


def _ev(**quantiles: float) -> dict[str, Any]:
    """Evidence whose lower quantiles are given as q05=..., q005=..., q0005=... (others far above 0)."""
    q = {str(t): 1.0 for t in tails_of("held") + tails_of("cross")}
    for key, value in quantiles.items():
        q[str(float("0." + key[1:]))] = value
    return {"decisive": 200, "quantiles": q, "delta_apgr": 0.05}


TOO_FEW = {"decisive": 12, "quantiles": {}, "delta_apgr": None}


def test_every_level_up_to_99_reads_the_same_draws_and_99_9_reads_4000_starting_with_them() -> None:
    assert [draws_for(t, 1000) for t in (0.05, 0.025, 0.005, 0.0005)] == [1000, 1000, 1000, 4000]
    assert draws_for(0.005, 2000) == 2000 and draws_for(0.0005, 10_000) == 10_000
    rng = np.random.default_rng(3)
    verdicts = rng.choice([1, 0, -1], p=[0.3, 0.55, 0.15], size=300).astype(np.float64)
    serving = rng.random(300)
    cand = verdicts + rng.normal(scale=1.5, size=300)
    ev = _evidence("cross", cand, serving, verdicts, resamples=1000)
    # The old designs' quantiles are exactly those of the 1,000 draws they read before C99.9 existed.
    first = area_differences(cand, serving, verdicts, resamples=1000)
    for tail in (0.05, 0.025, 0.005):
        assert ev["quantiles"][str(tail)] == float(np.quantile(first, tail))
    more = area_differences(cand, serving, verdicts, resamples=4000)
    assert np.array_equal(more[:1000], first)  # one seed: the 4,000 start with the same 1,000
    assert ev["quantiles"]["0.0005"] == float(np.quantile(more, 0.0005))
    assert ev["quantiles"]["0.0005"] <= ev["quantiles"]["0.005"]
    # The held-back slice's evidence reads only the levels held-back designs use: no 4,000 draws there.
    assert tails_of("held") == (0.005, 0.025, 0.05) and tails_of("cross") == (0.0005, 0.005, 0.025, 0.05)


def test_c99_and_h90_needs_both_intervals_above_0_and_serves_the_candidate_the_slice_tested() -> None:
    both = BY_NAME["C99∧H90"]
    assert both.served == "candidate_held" and BY_NAME["C99"].served == "candidate_cross"
    assert decide(both, {"cross": _ev(q005=0.01), "held": _ev(q05=0.02)})
    # The cross-fitted 99 % alone is C99, not this design: the slice's 90 % interval must agree.
    assert decide(BY_NAME["C99"], {"cross": _ev(q005=0.01), "held": _ev(q05=-0.01)})
    assert not decide(both, {"cross": _ev(q005=0.01), "held": _ev(q05=-0.01)})
    assert not decide(both, {"cross": _ev(q005=0.01), "held": TOO_FEW})
    assert not decide(both, {"cross": _ev(q005=-0.001), "held": _ev(q05=0.5)})
    # The held-back check is at 90 %, not at H99's 99 %.
    assert decide(both, {"cross": _ev(q005=0.01), "held": _ev(q05=0.02, q005=-0.03)})
    assert not decide(BY_NAME["H99"], {"cross": _ev(q005=0.01), "held": _ev(q05=0.02, q005=-0.03)})


def test_c99_9_is_stricter_than_c99_on_the_same_evidence() -> None:
    strict = BY_NAME["C99.9"]
    assert strict.served == "candidate_cross"
    marginal = {"cross": _ev(q005=0.01, q0005=-0.002), "held": TOO_FEW}
    assert decide(BY_NAME["C99"], marginal) and not decide(strict, marginal)
    assert decide(strict, {"cross": _ev(q005=0.03, q0005=0.004), "held": TOO_FEW})
    assert not decide(strict, {"cross": TOO_FEW, "held": _ev()})
