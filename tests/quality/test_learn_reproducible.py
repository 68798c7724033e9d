"""The committed learning curves come from the code as it stands: one split of one row, regenerated.

``make learn-curve`` writes ``reports/learn/<row>.json`` (issue #17's learning curves). This test
rebuilds one row from the public data with the Makefile's own commands — the folds, the traffic
file and its prior (the mf recipe trained without that traffic's subjects and kind) — and reruns
the simulation for the first split only, at 0, 100 and 300 judged samples, with the report's test
part size (so split 0 draws the same test part and judging order as in the 10-split run). Each
recomputed APGR must match that split's committed value within ``TOLERANCE``: a difference means the
report is stale (the encoder, the recipe, the learner or the gate changed without ``make
learn-curve``) or that the simulation depends on something it should not.

The row is ``mix-fold4`` (every GSM8K prompt plus held-out-subject MMLU fold 4; a prior that never
saw GSM8K nor those subjects): the mixed traffic where the gain target is met. It embeds about 15k
prompts once (cached in the embedding cache like ``make learn-curve``), the slowest quality check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferryman import paths
from ferryman.cli import main
from lab.data.benchmarks import default_data_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TOLERANCE = 1e-3
ROW = "mix-fold4"
FOLD = "4"
SAMPLES = (0, 100, 300)
REPORT = Path("reports/learn") / f"{ROW}.json"


def _ferryman(command: str, *argv: str) -> None:
    """Run ``ferryman COMMAND ARGV...`` in-process (the words of ``command`` split on spaces); it must succeed."""
    assert main([*command.split(), *argv]) == 0, f"ferryman {command} failed"


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(REPORT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def recomputed(report: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("learn-row")
    data, encoder = str(default_data_dir()), str(paths.encoder_dir())
    common = ["--data-dir", data, "--encoder-dir", encoder]
    folds = work / "crossfit" / "subject" / "folds.json"
    _ferryman("train crossfit --folds-only --schemes subject --routers mf", *common, "--out", str(work / "crossfit"))
    traffic = work / f"{ROW}.csv"
    mix = ["--folds", str(folds), "--fold", FOLD, "--mix-in", "gsm8k"]
    _ferryman("data arena --benchmark mmlu", "--data-dir", data, *mix, "--out", str(traffic))
    prior = work / f"mf-without-{ROW}"
    without = ["--exclude-folds", str(folds), "--fold", FOLD]
    _ferryman("train mf --arena= --golden mmlu", *without, *common, "--out", str(prior))
    out = work / f"{ROW}.json"
    files = ["--traffic", str(traffic), "--shipped", str(prior), "--json", str(out), "--encoder-dir", encoder]
    plan = ["--splits", "1", "--samples", ",".join(map(str, SAMPLES)), "--test-size", str(report["test_size"])]
    _ferryman("learn curve --quiet", *files, *plan)
    return json.loads(out.read_text(encoding="utf-8"))


def test_the_row_has_the_reported_shape(report: dict, recomputed: dict) -> None:
    assert recomputed["traffic_samples"] == report["traffic_samples"]
    assert recomputed["test_size"] == report["test_size"]
    assert recomputed["shipped_trained_on"] == report["shipped_trained_on"]


@pytest.mark.parametrize("samples", SAMPLES)
def test_split_zero_matches_the_committed_report(report: dict, recomputed: dict, samples: int) -> None:
    (committed,) = [c["per_split"][0] for c in report["curve"] if c["samples"] == samples]
    (again,) = [c["apgr"] for c in recomputed["curve"] if c["samples"] == samples]
    print(f"{ROW}, split 0, {samples} judged: APGR recomputed {again:.5f}, reported {committed:.5f}")
    assert abs(again - committed) <= TOLERANCE, (
        f"{ROW} split 0 after {samples} judged samples: APGR {again:.5f} here, {committed:.5f} in {REPORT}; "
        "regenerate the learning curves (`make learn-curve`) or find what moved them"
    )
