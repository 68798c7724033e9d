"""SW selection: inner folds keep subjects whole, and a small grid runs end to end on a data slice."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from harness.data_slice import write_slice
from harness.scorer import DEFAULT_ENCODER_DIR
from lab.data.benchmarks import LabeledPrompt, default_data_dir, load_benchmark
from lab.data.embed_cache import cache_path
from lab.data.folds import FoldAssignment
from lab.select.sw import inner_folds, main
from lab.train.recipe import load_recipe
from scorer.encoder import Encoder


def _items() -> list[LabeledPrompt]:
    out = []
    for s, size in enumerate([30, 12, 9, 7, 5, 3]):
        out += [LabeledPrompt(f"m{s}-{i}", f"q{s} {i}", "mmlu", f"subject{s}", 1.0, 0.0) for i in range(size)]
    return out + [LabeledPrompt(f"g{i}", f"g {i}", "gsm8k", "gsm8k", 1.0, 1.0) for i in range(40)]


def test_subject_inner_folds_keep_subjects_whole_and_balance_sizes() -> None:
    items = _items()
    folds = inner_folds(items, "subject", 3, seed=0)
    by_subject: dict[str, set[int]] = {}
    for it, f in zip(items, folds.tolist(), strict=True):
        by_subject.setdefault(it.group, set()).add(f)
    assert all(len(v) == 1 for g, v in by_subject.items() if g != "gsm8k")
    assert len(by_subject["gsm8k"]) == 3  # GSM8K prompts are spread at random
    mmlu_sizes = np.bincount([f for it, f in zip(items, folds, strict=True) if it.benchmark == "mmlu"], minlength=3)
    assert sorted(mmlu_sizes.tolist()) == [17, 19, 30]  # largest subject alone, the rest balanced greedily
    np.testing.assert_array_equal(folds, inner_folds(items, "subject", 3, seed=0))  # seeded


def test_prompt_inner_folds_split_subjects() -> None:
    folds = inner_folds(_items(), "prompt", 3, seed=1)
    assert len(set(folds[:30].tolist())) == 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slice(default_data_dir(), tmp_path_factory.mktemp("data"), mmlu_rows=30, gsm8k_rows=60)


def _select_args(data: Path, tmp_path: Path, *, dims: str, exponents: str) -> tuple[list[str], Path]:
    """Two prompt folds over the slice's MMLU and GSM8K items, saved under ``tmp_path``: the selection's
    arguments for a grid of ``dims`` x ``exponents`` (without ``--out``) and the results path to give it."""
    items = load_benchmark("mmlu", data) + load_benchmark("gsm8k", data)
    folds = FoldAssignment.from_items(items, np.arange(len(items)) % 2, scheme="prompt", seed=0)
    folds.save(tmp_path / "folds.json")
    argv = ["--folds", str(tmp_path / "folds.json"), "--k-inner", "2", "--dims", dims, "--exponents", exponents]
    argv += ["--data-dir", str(data), "--encoder-dir", str(DEFAULT_ENCODER_DIR), "--cache-dir", str(tmp_path / "c")]
    return argv, tmp_path / "select.json"


def test_grid_runs_on_a_slice_and_writes_every_candidate(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, out = _select_args(data, tmp_path, dims="0,2", exponents="1,4")
    assert main([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["scheme"] == "prompt" and len(result["rows"]) == 4
    for row in result["rows"]:
        assert len(row["per_outer"]) == 2
        assert all(np.isfinite(v) for v in row["mean"].values())
    assert result["best"]["criterion"] == max(r["criterion"] for r in result["rows"])
    printed = capsys.readouterr().out
    assert "pls d=2 K=4" in printed and "best:" in printed
    # Candidates are embedded at the sw recipe's window and depth, as sw is trained and served (was: the
    # default 256 tokens, all 6 layers, whatever the recipe said; sw serves 160 since issue #12).
    spec = load_recipe("sw").encoder
    assert result["encoder"] == asdict(spec)
    cached = {p.name for p in (tmp_path / "c").glob("emb-*.npz")}
    assert cached == {cache_path(tmp_path / "c", Encoder(DEFAULT_ENCODER_DIR, precision="int8", spec=spec)).name}


def test_candidates_start_from_the_recipe(data: Path, tmp_path: Path) -> None:
    """Each candidate is the recipe's settings with the grid's changed, as training reads them (was: SWConfig's
    defaults for every setting but the grid's, whatever the recipe said, e.g. within_groups)."""
    text = resources.files("lab").joinpath("recipes/sw.toml").read_text()
    recipe_path = tmp_path / "grouped.toml"
    recipe_path.write_text(text + "within_groups = true\nlength_residual = true\n")
    recipe = load_recipe(str(recipe_path))
    argv, out = _select_args(data, tmp_path, dims="2", exponents="4")
    assert main([*argv, "--recipe", str(recipe_path), "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["config"] == asdict(replace(recipe.settings, weight_exponent=4.0, projection_dim=2, top_k=0))
    assert row["config"]["within_groups"] and row["config"]["length_residual"]
