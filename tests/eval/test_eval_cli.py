"""``ferryman eval`` end to end on a slice: real in-process scorer, test artifacts, real data."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ferryman.cli import main
from harness.scorer import build_test_routers
from lab.data.benchmarks import default_data_dir, load_benchmark
from lab.data.folds import FoldAssignment, assign_folds
from scorer.artifacts import load_artifact, write_manifest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_test_routers(tmp_path_factory.mktemp("eval") / "routers")
    sw = load_artifact(root / "sw").manifest
    provenance = {**sw.provenance, "trained_on": "arena-bench-v1,gsm8k"}
    write_manifest(root / "sw", replace(sw, provenance=provenance))
    return root


def _crossfit(dest: Path, routers: Path) -> FoldAssignment:
    """A 2-fold cross-fit dir over GSM8K with mf fold artifacts (copies of the test mf)."""
    items = load_benchmark("gsm8k", default_data_dir())
    folds = FoldAssignment.from_items(items, assign_folds(items, 2, scheme="prompt"), scheme="prompt", seed=0)
    folds.save(dest / "folds.json")
    for fold in range(2):
        target = dest / "mf" / f"fold-{fold}"
        shutil.copytree(routers / "mf", target)
        manifest = load_artifact(target).manifest
        provenance = {**manifest.provenance, "trained_on": "arena-bench-v1,gsm8k"}
        write_manifest(target, replace(manifest, name=f"mf-fold{fold}", provenance=provenance))
    return folds


def test_eval_crossfit_shipped_random_baselines_and_reports(routers: Path, tmp_path: Path) -> None:
    cf = tmp_path / "crossfit" / "prompt"
    folds = _crossfit(cf, routers)
    out, scores = tmp_path / "reports", tmp_path / "score-cache"
    argv = ["eval", "--benchmark", "gsm8k", "--benchmark", "mt-bench", "--routers", "mf", "sw", "random"]
    argv += ["--routers-dir", str(routers), "--crossfit-dir", str(cf), "--baselines", "--limit", "24"]
    argv += ["--random-seeds", "4", "--out", str(out), "--score-cache", str(scores), "--cache-dir", str(tmp_path)]
    assert main(argv) == 0

    for png in ("gsm8k-prompt.png", "mt-bench.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and 5_000 < len(data) < 200_000
    report = json.loads((out / "eval.json").read_text())
    sets = {s["key"]: s for s in report["sets"]}
    assert set(sets) == {"gsm8k-prompt", "mt-bench"}
    gsm = {r["name"]: r for r in sets["gsm8k-prompt"]["rows"]}
    mt = {r["name"]: r for r in sets["mt-bench"]["rows"]}
    assert sets["gsm8k-prompt"]["n"] == 24 and sets["mt-bench"]["n"] == 24
    assert set(gsm) == {"mf", "sw", "random", "baseline: logreg", "baseline: subject-mean", "oracle"}
    # GSM8K: mf scored by its fold artifacts; no cross-fitted sw exists, so no number for it.
    assert "fold-0..1" in gsm["mf"]["source"] and "apgr" in gsm["mf"]
    assert 0.0 < gsm["mf"]["apgr_fold_calibrated"] < 1.5 and "apgr_fold_calibrated" not in mt["mf"]
    assert "apgr" not in gsm["sw"] and gsm["sw"]["note"].startswith("missing:")
    # MT-Bench is scored by the shipped routers, which never trained on it.
    assert "apgr" in mt["sw"] and str(routers / "sw") in mt["sw"]["source"]
    assert sets["mt-bench"]["paper"] == {"apgr": 0.802, "cpt50": 13.4, "cpt80": 31.3}
    for rows in (gsm, mt):
        assert rows["oracle"]["apgr"] >= max(r["apgr"] for r in rows.values() if "apgr" in r) - 1e-9
        assert len(rows["random"]["curve"]["quality"]) == 101
        assert set(rows["mf"]["cpt"]) == {"20%", "50%", "80%"}
        assert abs(rows["mf"]["apgr_10bin"] - rows["mf"]["apgr"]) < 0.2  # RouteLLM's coarse curve, same ballpark
    assert "4 seeds" in gsm["random"]["source"]

    # Each GSM8K prompt was scored by the artifact of its own fold (the score cache is per artifact).
    sampled = {it.key for it in load_benchmark("gsm8k", default_data_dir()) if it.key in _scored(scores, "mf-fold")}
    assert len(sampled) == 24
    for fold in range(2):
        for key in _scored(scores, f"mf-fold{fold}"):
            assert folds.fold_of(key) == fold

    md = (out / "eval.md").read_text()
    assert "| MT-Bench | *paper (best)* | *0.802* |" in md
    assert "| GSM8K, prompt folds | sw | — |" in md and "| GSM8K, prompt folds | mf | " in md
    assert "n = 24 prompts" in md


def _scored(cache_dir: Path, prefix: str) -> set[str]:
    keys: set[str] = set()
    for path in cache_dir.glob(f"{prefix}*.json"):
        # entries are "<prompt key>:<digest of the exact text>" (lab.eval.scoring.cache_key)
        keys |= {entry.split(":", 1)[0] for entry in json.loads(path.read_text())}
    return keys


def test_eval_refuses_routers_trained_on_the_benchmark(
    routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--benchmark", "gsm8k", "--routers", "sw", "--routers-dir", str(routers), "--limit", "10"]
    argv += ["--out", str(tmp_path / "reports"), "--no-cache", "--quiet"]
    assert main(argv) == 0
    assert "| GSM8K | sw | — |" in (tmp_path / "reports" / "eval.md").read_text()
    (row,) = [
        r for r in json.loads((tmp_path / "reports" / "eval.json").read_text())["sets"][0]["rows"] if r["name"] == "sw"
    ]
    assert row["note"].startswith("refused:") and "trained on gsm8k" in row["note"]
    assert "| GSM8K | sw | — |" in capsys.readouterr().out


def test_eval_bad_inputs_are_clear_errors(routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "stale"
    FoldAssignment("prompt", 2, 0, {"abc": 0}).save(stale / "folds.json")
    argv = ["eval", "--benchmark", "gsm8k", "--crossfit-dir", str(stale), "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    assert "gsm8k prompts have no fold" in capsys.readouterr().err
    assert main(["eval", "--data-dir", str(tmp_path / "nowhere"), "--benchmark", "mmlu", "--quiet"]) == 2
    assert "benchmark folder not found" in capsys.readouterr().err


def test_eval_commonsense_writes_shares_beside_the_length_baseline(routers: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    argv = ["eval", "--benchmark", "commonsense", "--routers", "mf", "sw", "--routers-dir", str(routers)]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    rows = {r["name"]: r for r in json.loads((out / "commonsense.json").read_text())["rows"]}
    assert set(rows) == {"mf", "sw", "baseline: length"}
    assert rows["baseline: length"]["share"] == 0.5  # the suite is length-balanced
    for row in rows.values():
        assert row["total"] >= 40 and row["ordered"] + len(row["wrong"]) == row["total"]
    assert "| baseline: length | 25/50 | 50% |" in (out / "commonsense.md").read_text()
