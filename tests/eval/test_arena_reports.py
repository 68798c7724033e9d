"""The committed N-tier and transfer reports (``reports/tiers.json``, ``reports/transfer.json``, written by
``make eval-tiers``) re-checked: every table number follows from the stored per-prompt scores and the
public grades with the metric code as it stands, and a slice of the stored scores of shipped routers
is scored again through a real scorer (when the shipped artifact is still the one the report used).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lab.data.arena_grades import load_arena_grades
from lab.data.benchmarks import default_data_dir
from lab.eval.arena import kept_share
from lab.eval.metrics import apgr, endpoints, routing_curve
from lab.eval.scoring import ScorerClient, local_scorer
from scorer.artifacts import load_artifact

REPORTS = Path(__file__).resolve().parents[2] / "reports"
ROUTERS = Path(__file__).resolve().parents[2] / "routers"
ENCODER = Path(__file__).resolve().parents[2] / "build" / "encoder"
SLICE = 30


def _grades(keys: list[str], models: list[str]) -> np.ndarray:
    by_key = {p.key: p for p in load_arena_grades(default_data_dir()).prompts}
    return np.array([[by_key[k].grades[m] for m in models] for k in keys])


def test_tiers_table_follows_from_the_stored_scores():
    from lab.eval.tier_metrics import (
        bootstrap_margins,
        crossfit_points_curve,
        half_of,
        margin_over,
        mixing_hull,
        oracle_curve,
        policy_prompt_curve,
    )

    res = json.loads((REPORTS / "tiers.json").read_text())
    tiers = res["tiers"]
    quality = _grades(res["prompt_keys"], tiers)
    cost = np.array([res["relative_cost"][m] for m in tiers])
    assert [res["single"][m]["quality"] for m in tiers] == pytest.approx(quality.mean(axis=0).tolist())
    hull, oracle = mixing_hull(quality, cost), oracle_curve(quality, cost)
    half = half_of(res["prompt_keys"])
    rows = [r for r in res["rows"] if "scores" in r]
    assert rows, "the committed report has no scored rows"
    assert any(r["operating_points"] for r in rows) and any(not r["operating_points"] for r in rows)
    for row in rows:
        scores = np.array(row["scores"])
        if row["operating_points"]:  # each half routed by the points fitted on the other
            pc, _ = crossfit_points_curve(scores, quality, cost, row["rule"], half)
        else:
            pc = policy_prompt_curve(scores, quality, cost, row["rule"])
        curve = pc.curve()
        assert row["quality_at_middle_cost"] == pytest.approx(curve.at(cost[1]), abs=1e-9)
        margin, where = margin_over(curve, hull, cost[0], cost[-1])
        assert (row["min_margin_over_mixing"], row["min_margin_at_cost"]) == pytest.approx((margin, where), abs=1e-9)
        for c, got in row["at"].items():
            assert got["router"] == pytest.approx(curve.at(float(c)), abs=1e-9)
            assert got["mixing"] == pytest.approx(hull.at(float(c)), abs=1e-9)
            assert got["oracle"] == pytest.approx(oracle.at(float(c)), abs=1e-9)
        if row is rows[0] or row["operating_points"]:  # the intervals (seeded bootstrap) of a few rows
            lo, hi = bootstrap_margins(pc, quality, cost, [where])
            assert row["min_margin_interval"] == pytest.approx([lo[0], hi[0]], abs=1e-9)
    assert [h["router"] for h in res["halves"]] == [r["router"] for r in rows if not r["operating_points"]]


def test_transfer_table_follows_from_the_stored_scores():
    res = json.loads((REPORTS / "transfer.json").read_text())
    for pair in res["pairs"]:
        q = _grades(pair["prompt_keys"], [pair["strong"], pair["weak"]])
        s, w = q[:, 0], q[:, 1]
        assert pair["strong_grades"] == s.tolist() and pair["weak_grades"] == w.tolist()
        weak_q, strong_q = endpoints(s, w)
        for entry in pair["routers"]:
            scored = {k: np.array(r["scores"]) for k, r in entry["rows"].items() if "scores" in r}
            for key, scores in scored.items():
                assert entry["rows"][key]["apgr"] == pytest.approx(apgr(routing_curve(scores, s, w), weak_q, strong_q))
            for ref in ("in_pair", "in_domain"):
                if f"kept_vs_{ref}" in entry:
                    want = kept_share(scored["transferred"], scored[ref], s, w)
                    assert entry[f"kept_vs_{ref}"]["value"] == pytest.approx(want, nan_ok=True)


def test_a_slice_of_the_shipped_routers_scores_again():
    """The transferred rows score with the shipped artifacts: rescore a slice through a real scorer."""
    res = json.loads((REPORTS / "transfer.json").read_text())
    pair = res["pairs"][0]
    checked = 0
    for entry in pair["routers"]:
        row = entry["rows"]["transferred"]
        path = ROUTERS / entry["router"]
        manifest = load_artifact(path, verify_hashes=False).manifest
        if "as shipped" not in row["source"] or f"({manifest.name} v{manifest.version})" not in row["source"]:
            pytest.skip(f"{path} is not the artifact the committed report used: run `make eval-tiers` again")
        by_key = {p.key: p for p in load_arena_grades(default_data_dir()).prompts}
        keys = pair["prompt_keys"][:SLICE]
        with (
            local_scorer({manifest.name: path}, ENCODER, threads=1) as target,
            ScorerClient(target, strong="", weak="") as client,
        ):
            got = client.score([(manifest.name, k, by_key[k].prompt) for k in keys], progress=False)
        assert got.tolist() == pytest.approx(row["scores"][:SLICE], abs=1e-6)
        checked += 1
    assert checked
