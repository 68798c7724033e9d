"""``ferryman eval --suite tiers|transfer`` end to end on the real arena-bench-v1 grades, with the test routers.

The test routers (``harness.scorer``) know GPT-4-1106, Mixtral, Claude-2.1 and GPT-3.5-turbo-1106 and
were never trained on arena-bench-v1, so they score every prompt as shipped (no cross-fitting needed);
the in-pair references need ``ferryman train crossfit --schemes arena``, which a small run below
builds for one pair from the real battles (SW, the fast trainer). Checks: the reports exist, their
numbers follow from the stored scores and the data (the slice CI re-checks), and missing
artifacts are said, not skipped silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ferryman.cli import main
from harness.scorer import build_test_routers
from lab.data.arena_grades import load_arena_grades
from lab.data.benchmarks import default_data_dir
from lab.eval.arena import kept_share
from lab.eval.metrics import apgr, endpoints, routing_curve
from lab.eval.tier_metrics import mixing_hull, policy_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIERS = "mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-3.5-turbo-1106,gpt-4-1106-preview"
PAIR = "gpt-3.5-turbo-1106:claude-2.1"


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_routers(tmp_path_factory.mktemp("arena") / "routers")


def _quality(keys: list[str], models: list[str]) -> np.ndarray:
    by_key = {p.key: p for p in load_arena_grades(default_data_dir()).prompts}
    return np.array([[by_key[k].grades[m] for m in models] for k in keys])


def test_tiers_suite(routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reports"
    args = ["eval", "--suite", "tiers", "--tiers", TIERS, "--routers", "mf", "sw", "--routers-dir", str(routers)]
    args += ["--out", str(out), "--no-cache", "--quiet", "--arena-crossfit-dir", str(tmp_path / "none")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "at the cost of `gpt-3.5-turbo-1106`" in printed
    assert (out / "tiers.png").read_bytes()[:8] == PNG_MAGIC
    res = json.loads((out / "tiers.json").read_text())
    tiers = TIERS.split(",")
    quality = _quality(res["prompt_keys"], tiers)
    cost = np.array([res["relative_cost"][m] for m in tiers])
    assert cost.tolist() == pytest.approx([1.2 / 40, 3.0 / 40, 1.0])
    labels = [r["router"] for r in res["rows"]]
    rules = [
        f"{r}, {k} rule{p}"
        for r in ("mf", "sw")
        for k in ("cost_aware", "cheapest")
        for p in ("", " + operating points")
    ]
    assert labels == rules
    hull = mixing_hull(quality, cost)
    for row in res["rows"]:
        assert "as shipped" in row["source"] and "never on arena-bench-v1" in row["source"]
        lo, hi = row["min_margin_interval"]
        assert lo <= hi
        if row["operating_points"]:  # each half's points, cheapest first, from the cheapest tier to the top one
            for points in row["fitted_points"].values():
                assert points[0]["tier"] == tiers[0] and points[-1]["tier"] == tiers[-1]
            continue
        curve = policy_curve(np.array(row["scores"]), quality, cost, row["rule"])
        assert row["quality_at_middle_cost"] == pytest.approx(curve.at(cost[1]), abs=1e-12)
        assert row["at"]["0.1"]["mixing"] == pytest.approx(hull.at(0.1))
        assert row["middle_model_quality"] == pytest.approx(quality[:, 1].mean())


def test_transfer_suite_with_an_in_pair_reference(routers: Path, tmp_path: Path) -> None:
    crossfit = tmp_path / "crossfit"
    train = ["train", "crossfit", "--schemes", "arena", "--routers", "sw", "--golden", "", "--pairs", PAIR]
    train += ["--out", str(crossfit), "--k", "3", "--threads", "1"]
    assert main(train) == 0
    folds = json.loads((crossfit / "arena" / "folds.json").read_text())
    assert folds["k"] == 3 and len(folds["assignments"]) == len(load_arena_grades(default_data_dir()).prompts)
    pair_dir = crossfit / "arena" / "pair-gpt-3.5-turbo-1106-vs-claude-2.1" / "sw"
    assert sorted(p.name for p in pair_dir.iterdir()) == ["fold-0", "fold-1", "fold-2"]
    manifest = json.loads((pair_dir / "fold-1" / "manifest.json").read_text())
    assert manifest["default_strong"] == "gpt-3.5-turbo-1106"
    assert manifest["name"] == "sw-gpt-3.5-turbo-1106-vs-claude-2.1-fold1"
    assert int(manifest["provenance"]["excluded_heldout_prompts"]) > 0

    out = tmp_path / "reports"
    args = ["eval", "--suite", "transfer", "--pairs", PAIR, "--routers", "sw", "--routers-dir", str(routers)]
    args += ["--out", str(out), "--no-cache", "--quiet", "--arena-crossfit-dir", str(crossfit / "arena")]
    assert main(args) == 0
    res = json.loads((out / "transfer.json").read_text())
    (pair,) = res["pairs"]
    (entry,) = pair["routers"]
    rows = entry["rows"]
    assert "as shipped" in rows["transferred"]["source"]
    assert "trained in-pair" in rows["in_pair"]["source"]
    assert "every model's arena-bench-v1 battles" in rows["in_domain"]["source"]
    s, w = np.array(pair["strong_grades"]), np.array(pair["weak_grades"])
    weak_q, strong_q = endpoints(s, w)
    for key in ("transferred", "in_pair", "in_domain"):
        assert rows[key]["apgr"] == pytest.approx(
            apgr(routing_curve(np.array(rows[key]["scores"]), s, w), weak_q, strong_q)
        )
    kept = kept_share(np.array(rows["transferred"]["scores"]), np.array(rows["in_pair"]["scores"]), s, w)
    assert entry["kept_vs_in_pair"]["value"] == pytest.approx(kept, nan_ok=True)
    assert (out / "transfer.png").read_bytes()[:8] == PNG_MAGIC
    assert "79-82 %" in (out / "transfer.md").read_text()


def test_bad_suite_inputs_are_clear_errors(routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "--routers-dir", str(routers), "--out", str(tmp_path), "--quiet"]
    assert main([*base, "--suite", "tiers", "--tiers", "gpt-4-1106-preview,gpt-3.5-turbo-1106"]) == 2
    assert "cheapest first" in capsys.readouterr().err
    assert main([*base, "--suite", "tiers", "--tiers", "nobody,gpt-4-1106-preview", "--price", "nobody=0/0"]) == 2
    assert "arena-bench-v1 has no grades for nobody" in capsys.readouterr().err
    assert main([*base, "--suite", "transfer", "--pairs", "claude-2.1"]) == 2
    assert "expected STRONG:WEAK" in capsys.readouterr().err
    assert main([*base, "--suite", "transfer", "--pairs", "claude-instant-1:claude-2.1"]) == 2
    assert "claude-instant-1 is not the stronger" in capsys.readouterr().err
