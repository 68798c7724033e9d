"""Judged traffic from Arena-schema files, the benchmark converter, the held-back slice and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ferryman.cli import main
from harness.traffic import judged_rows
from lab.data.arena import check_benchmark, write_arena_csv
from lab.data.battles import load_battles
from lab.data.benchmarks import STRONG, WEAK, default_data_dir, load_benchmark
from lab.data.report import DataError
from lab.learn.gate import paired_bootstrap_gate, verdict_apgr, verdict_area
from lab.learn.traffic import STRONG_BETTER, TIE, WEAK_BETTER, in_holdout, load_traffic


def test_traffic_keeps_one_pair_in_either_order_and_counts_the_rest(tmp_path: Path) -> None:
    rows = judged_rows(200, "big", "small", seed=3, other_pairs=25)
    path = write_arena_csv(tmp_path / "t.csv", rows)
    traffic = load_traffic(path, "big", "small")
    assert len(traffic.samples) == 200 and traffic.other_pairs == 25 and traffic.rows == 225
    for row, sample in zip(rows, traffic.samples, strict=False):
        winner = (
            "tie" if row["winner_tie"] == "1" else row["model_a"] if row["winner_model_a"] == "1" else row["model_b"]
        )
        want = TIE if winner == "tie" else STRONG_BETTER if winner == "big" else WEAK_BETTER
        assert sample.verdict == want and sample.prompt == json.loads(row["prompt"])[-1]
    assert {r["model_a"] for r in rows[:200]} == {"big", "small"}  # both positions occur
    assert "ignored" in traffic.summary()
    with pytest.raises(DataError, match="no judged battles"):
        load_traffic(path, "big", "other")
    with pytest.raises(ValueError, match="same"):
        load_traffic(path, "big", "big")


def test_held_back_slice_is_a_stable_share_of_prompts() -> None:
    keys = [f"k{i}" for i in range(20_000)]
    held = [k for k in keys if in_holdout(k, 0.2, "s")]
    assert 0.19 < len(held) / len(keys) < 0.21
    assert held == [k for k in keys if in_holdout(k, 0.2, "s")]  # same every time
    assert set(held) != {k for k in keys if in_holdout(k, 0.2, "other salt")}
    assert not any(in_holdout(k, 0.0, "s") for k in keys[:100])
    with pytest.raises(ValueError):
        in_holdout("k", 1.0, "s")


def test_benchmark_converter_writes_the_arena_schema(tmp_path: Path) -> None:
    out = tmp_path / "gsm8k.csv"
    assert main(["data", "arena", "--benchmark", "gsm8k", "--out", str(out)]) == 0
    battles, report = load_battles(out)
    items = load_benchmark("gsm8k", default_data_dir())
    assert report.bad_rows == 0 and len(battles) == len(items)
    assert {b.model_a for b in battles} == {STRONG, WEAK}  # position drawn per prompt
    traffic = load_traffic(out, STRONG, WEAK)
    for it, s in zip(items, traffic.samples, strict=True):
        assert s.prompt == it.prompt and s.verdict == int(np.sign(it.gain))
    with pytest.raises(SystemExit):  # argparse refuses: MT-Bench is never trained on
        main(["data", "arena", "--benchmark", "mt-bench", "--out", str(out)])
    with pytest.raises(ValueError, match="never trained on"):
        check_benchmark("mt-bench")


def test_gate_promotes_a_clearly_better_candidate_only() -> None:
    rng = np.random.default_rng(0)
    verdicts = rng.choice([1, 0, -1], p=[0.3, 0.55, 0.15], size=400)
    serving = rng.random(400)
    better = verdicts + rng.normal(scale=0.8, size=400)  # knows the verdicts, with noise
    good = paired_bootstrap_gate(better, serving, verdicts, resamples=500)
    assert good.promote and good.low > 0 and good.apgr_candidate > good.apgr_serving
    assert "excludes 0" in good.reason and good.as_dict()["promote"] is True
    same = paired_bootstrap_gate(serving, serving, verdicts, resamples=500)
    assert not same.promote and same.low <= 0 <= same.high
    worse = paired_bootstrap_gate(-better, serving, verdicts, resamples=500)
    assert not worse.promote and worse.high < 0
    few = paired_bootstrap_gate(better[:40], serving[:40], verdicts[:40], resamples=500, min_decisive=30)
    assert not few.promote and "judge more traffic" in few.reason
    # The strong model never better: APGR is undefined, the area difference still decides.
    flat = paired_bootstrap_gate(better, serving, -np.abs(verdicts), resamples=500)
    assert "APGR undefined" in flat.reason and np.isnan(flat.low)
    assert verdict_apgr(verdicts.astype(float), verdicts) > 1.0  # the oracle beats the area ratio's 1
    # The gate's interval in APGR units is the area interval over the slice's gap.
    gap = np.mean(verdicts > 0) - np.mean(verdicts < 0)
    assert good.diff == pytest.approx(
        (verdict_area(better, verdicts) - verdict_area(serving, verdicts)) / gap, rel=1e-9
    )
