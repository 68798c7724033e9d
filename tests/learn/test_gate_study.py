"""The gate study's designs: what each reads, decides and serves (lab.learn.gate_study)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.scorer import build_test_routers
from harness.traffic import judged_rows
from lab.data.arena import write_arena_csv
from lab.data.benchmarks import STRONG, WEAK
from lab.learn import gate_study
from lab.learn.gate import area_differences
from lab.learn.gate_study import DESIGNS, _evidence, decide, draws_for, pick_designs, tails_of

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


def test_designs_are_picked_by_name_and_unknown_names_are_refused() -> None:
    assert pick_designs("H99,H95") == (BY_NAME["H95"], BY_NAME["H99"])  # DESIGNS' order
    assert pick_designs("all") == DESIGNS == pick_designs("")
    with pytest.raises(ValueError, match=r"unknown gate design.*H97"):
        pick_designs("H95,H97")
    held_only = pick_designs("H95,H99")
    # H95 and H99 read the held-back slice's 2.5 % and 0.5 % quantiles and nothing cross-fitted.
    assert tails_of("held", held_only) == (0.005, 0.025) and tails_of("cross", held_only) == ()
    assert tails_of("held", pick_designs("C99∧H90")) == (0.05,)


def test_a_later_split_run_alone_with_two_designs_repeats_the_full_runs_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A tuning row of synthetic judged traffic (harness.traffic) and the untrained MF test artifact as its prior.
    learn = tmp_path / "learn"
    learn.mkdir()
    write_arena_csv(learn / "mmlu.csv", judged_rows(1300, STRONG, WEAK, seed=2))
    shutil.copytree(build_test_routers(tmp_path / "src") / "mf", learn / "mf-without-mmlu")
    common = ["--learn-dir", str(learn), "--rows", "mmlu", "--cache-dir", str(tmp_path / "cache"), "--resamples", "200"]
    full, part = tmp_path / "full.json", tmp_path / "part.json"
    assert gate_study.main(["--json", str(full), *common, "--splits", "2"]) == 0
    argv = ["--json", str(part), *common, "--first-split", "1", "--splits", "1", "--designs", "H99,H95"]
    assert gate_study.main(argv) == 0
    whole, alone = json.loads(full.read_text()), json.loads(part.read_text())
    assert [d["name"] for d in alone["designs"]] == ["H95", "H99"]
    assert [(r["split"], r["samples"]) for r in alone["records"]] == [(1, 100), (1, 300), (1, 1000)]
    later = [r for r in whole["records"] if r["split"] == 1]
    for a, b in zip(alone["records"], later, strict=True):
        # The same split (seed 1), the same candidates, the same held-back draws and decisions.
        assert a["shipped"] == b["shipped"] and a["candidate_held"] == b["candidate_held"]
        assert a["evidence"]["held"]["decisive"] == b["evidence"]["held"]["decisive"]
        for tail in ("0.025", "0.005"):
            assert a["evidence"]["held"]["quantiles"].get(tail) == b["evidence"]["held"]["quantiles"].get(tail)
        assert a["promote"] == {d: b["promote"][d] for d in ("H95", "H99")}
        assert "cross" not in a["evidence"] and "cross" in b["evidence"]  # nothing cross-fitted computed
    assert any(r["evidence"]["held"]["quantiles"] for r in later)  # the 1,000-sample slice was decided
    assert set(alone["tuning"]) == {"H95", "H99"} and len(whole["tuning"]) == len(DESIGNS)
    with pytest.raises(SystemExit):
        gate_study.main(["--json", str(part), *common, "--designs", "H97"])
    assert "unknown gate design(s) H97" in capsys.readouterr().err
