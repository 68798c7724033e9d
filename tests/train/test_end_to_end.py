"""Train -> artifact -> real scorer -> calibrate -> eval, on a slice of the public data (tiny epochs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ferryman.cli import main
from harness.data_slice import write_slice
from lab.data.benchmarks import default_data_dir, load_benchmark
from lab.data.folds import FoldAssignment
from scorer.artifacts import load_artifact

ROUTERS = ("mf", "sw", "bert")
FAST = ["--set", "mf.epochs=3", "--set", "bert.epochs=1", "--set", "bert.probe_features=torch"]
FAST += ["--set", "bert.max_rows=64", "--threads", "2"]
# Every SW artifact here uses the sharpened weighting and a 4-d PLS space: the scorer and eval run both.
SW_ARGS = ["--set", "sw.weight_exponent=4", "--set", "sw.projection_dim=4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slice(default_data_dir(), tmp_path_factory.mktemp("data"))


def _sources(data: Path) -> list[str]:
    return [
        "--battles",
        str(data / "arena-bench-v1" / "battles.csv"),
        "--golden",
        "mmlu,gsm8k",
        "--arena",
        "",  # the slice has only battles.csv; the recipes' named Arena sources are replaced by it
        "--data-dir",
        str(data),
    ]


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Default routers and prompt-scheme cross-fitted folds (k=2), trained by the CLI."""
    root = tmp_path_factory.mktemp("train")
    routers, cache = root / "routers", root / "cache"
    for router in ROUTERS:
        argv = [
            "train",
            router,
            *_sources(data),
            "--out",
            str(routers / router),
            "--cache-dir",
            str(cache),
            *FAST,
            *SW_ARGS,
        ]
        assert main(argv) == 0
    assert main(["train", "random", "--out", str(routers / "random")]) == 0
    argv = ["train", "crossfit", *_sources(data), "--out", str(root / "cf"), "--schemes", "prompt", "--k", "2"]
    assert main([*argv, "--cache-dir", str(cache), *FAST, *SW_ARGS]) == 0
    return routers, root / "cf"


def test_artifacts_are_complete_with_provenance(trained: tuple[Path, Path]) -> None:
    routers, _ = trained
    for router in ROUTERS:
        manifest = load_artifact(routers / router).manifest
        assert manifest.kind == router and manifest.name == router
        prov = manifest.provenance
        assert prov["trained_on"] == "arena-bench-v1,mmlu,gsm8k"
        assert prov["seed"] == "0" and prov["git_commit"] and float(prov["wall_time_s"]) >= 0
        assert int(prov["pairs_mmlu"]) > 0 and int(prov["pairs_arena-bench-v1"]) > 0
    assert load_artifact(routers / "bert").manifest.files["onnx"].built_by == "ferryman build routers"
    assert load_artifact(routers / "mf").manifest.models[:2] == (
        "gpt-4-1106-preview",
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
    )


def test_fold_artifacts_never_train_on_their_fold(trained: tuple[Path, Path], data: Path) -> None:
    _, cf = trained
    folds = FoldAssignment.load(cf / "prompt" / "folds.json")
    items = load_benchmark("mmlu", data) + load_benchmark("gsm8k", data)
    assert {it.key for it in items} <= set(folds.assignments)
    for router in ROUTERS:
        for fold in range(2):
            manifest = load_artifact(cf / "prompt" / router / f"fold-{fold}").manifest
            assert manifest.name == f"{router}-fold{fold}"
            held_out = sum(1 for f in folds.assignments.values() if f == fold)
            assert int(manifest.provenance["excluded_heldout_prompts"]) == held_out
            golden = int(manifest.provenance["pairs_mmlu"]) + int(manifest.provenance["pairs_gsm8k"])
            assert golden == len(items) - held_out
    # SW stores its training prompts: none of fold 0's prompts may be among them.
    sw = load_artifact(cf / "prompt" / "sw" / "fold-0")
    stored = np.load(sw.path("embeddings")).astype(np.float32)
    full = load_artifact(trained[0] / "sw")
    all_emb = np.load(full.path("embeddings")).astype(np.float32)
    assert len(stored) < len(all_emb) and stored.shape[1] == all_emb.shape[1] == 4
    assert sw.manifest.params["weight_exponent"] == full.manifest.params["weight_exponent"] == 4.0
    # The fold's projection is learnt without the fold too: it differs from the full artifact's.
    with np.load(sw.path("projection")) as fold_proj, np.load(full.path("projection")) as full_proj:
        assert fold_proj["matrix"].shape == full_proj["matrix"].shape == (4, 384)
        assert not np.allclose(fold_proj["matrix"], full_proj["matrix"])
    assert "PLS1, 4 directions" in sw.manifest.provenance["sw_projection"]


def test_scorer_calibrate_and_eval_run_on_trained_artifacts(
    trained: tuple[Path, Path], data: Path, tmp_path: Path
) -> None:
    routers, cf = trained
    dirs = [str(routers / r) for r in (*ROUTERS, "random")]
    assert main(["calibrate", *dirs, "--data-dir", str(data), "--quiet"]) == 0
    for router in ROUTERS:
        cal = load_artifact(routers / router).manifest.calibration
        assert cal is not None and len(cal.points) == 101
        assert cal.points[0].threshold >= cal.points[-1].threshold  # more strong calls need a lower threshold
    out = tmp_path / "reports"
    argv = ["eval", "--benchmark", "gsm8k", "--benchmark", "mmlu", "--benchmark", "mt-bench"]
    argv += ["--routers", *ROUTERS, "random", "--routers-dir", str(routers), "--crossfit-dir", str(cf / "prompt")]
    argv += ["--data-dir", str(data), "--random-seeds", "3", "--out", str(out), "--no-cache", "--quiet"]
    assert main(argv) == 0
    report = json.loads((out / "eval.json").read_text())
    names = {s["key"]: {r["name"] for r in s["rows"]} for s in report["sets"]}
    assert {"gsm8k-prompt", "mmlu-prompt", "mt-bench"} <= set(names)
    for key, rows in names.items():
        assert set(ROUTERS) <= rows, key
    for s in report["sets"]:
        for row in s["rows"]:
            if row["name"] in ROUTERS:
                assert math.isfinite(row["apgr"]), (s["key"], row["name"])


def test_bert_graph_rebuilds_from_delta(trained: tuple[Path, Path]) -> None:
    routers, _ = trained
    art = load_artifact(routers / "bert")
    graphs = [art.path("onnx"), art.path("onnx_unpadded")]
    before = [g.stat().st_size for g in graphs]
    for g in graphs:
        g.unlink()
    assert main(["build", "routers", "--routers-dir", str(routers)]) == 0
    for g, size in zip(graphs, before, strict=True):
        assert g.is_file() and abs(g.stat().st_size - size) < size * 0.01
    # The mask-free twin computes what the masked graph computes on unpadded input.
    from harness.scorer import DEFAULT_ENCODER_DIR
    from scorer.artifacts import EncoderSpec
    from scorer.encoder import TOKENIZER_FILE, GraphPair, WordpieceTokenizer

    tok = WordpieceTokenizer(DEFAULT_ENCODER_DIR / TOKENIZER_FILE, EncoderSpec())
    twin, masked = GraphPair(graphs[0], graphs[1], 1), GraphPair(graphs[0], None, 1)
    for prompt in ("What is 2 + 2?", "Prove that there are infinitely many primes. " * 12):
        batch = tok.batch([prompt])
        np.testing.assert_allclose(twin.run(batch), masked.run(batch), atol=1e-5)


def test_mf_training_is_deterministic(data: Path, tmp_path: Path, trained: tuple[Path, Path]) -> None:
    out = tmp_path / "mf"
    argv = ["train", "mf", *_sources(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *FAST]
    assert main(argv) == 0
    again = load_artifact(out).manifest.files["weights"].sha256
    assert again == load_artifact(trained[0] / "mf").manifest.files["weights"].sha256


def test_mt_bench_and_missing_data_are_refused(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "mf", "--golden", "mmlu,mt-bench", "--data-dir", str(data), "--out", str(tmp_path)]) == 2
    assert "MT-Bench is for evaluation only" in capsys.readouterr().out
    assert main(["train", "sw", "--golden", "", "--out", str(tmp_path / "sw")]) == 2
    assert "no training data" in capsys.readouterr().out
    argv = ["train", "sw", *_sources(data), "--out", str(tmp_path / "sw"), "--set", "weight_exponent=0"]
    assert main(argv) == 2
    assert "SW weight exponent must be in (0, 100], is 0.0" in capsys.readouterr().out
