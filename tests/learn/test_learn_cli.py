"""``ferryman learn retrain | promote | rollback | versions | curve`` on synthetic judged traffic.

The traffic (``harness.traffic``) has families of prompts whose judged outcome is known; the prior
is the small untrained MF test artifact, so there is a real, known improvement to learn. The
candidate is served by a real scorer to check that what the lab scored is what the scorer serves.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from ferryman.cli import main
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from harness.scorer import build_test_routers, scorer_in_thread
from harness.traffic import FAMILIES, family_of, judged_rows, shuffled_verdicts
from lab.data.arena import write_arena_csv
from lab.learn.scoring import Embedder, load_scoring_router
from lab.learn.traffic import load_traffic
from scorer import versions
from scorer.artifacts import load_artifact

STRONG, WEAK = "gpt-4o", "gpt-4o-mini"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("learn")
    routers = build_test_routers(root / "src")
    served = root / "routers"
    served.mkdir()
    shutil.copytree(routers / "mf", served / "mf")
    rows = judged_rows(800, STRONG, WEAK, seed=1, other_pairs=20)
    good = write_arena_csv(root / "traffic.csv", rows)
    bad = write_arena_csv(root / "noise.csv", shuffled_verdicts(rows))  # the same prompts, nothing to learn
    return {"routers": served, "mf": served / "mf", "traffic": good, "noise": bad, "cache": root / "cache"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small artifact of every router kind (``harness.scorer.build_test_routers``)."""
    return build_test_routers(tmp_path_factory.mktemp("built"))


def _learn(setup: dict[str, Path], *args: str) -> int:
    return main(["learn", *args, "--cache-dir", str(setup["cache"]), "--quiet"])


def _pair(setup: dict[str, Path], traffic: Path) -> list[str]:
    return ["--traffic", str(traffic), "--strong", STRONG, "--weak", WEAK, "--router-dir", str(setup["mf"])]


def test_retrain_promote_serve_rollback(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    mf = setup["mf"]
    assert _learn(setup, "retrain", *_pair(setup, setup["traffic"])) == 0
    out = capsys.readouterr().out
    assert "800 judged gpt-4o vs gpt-4o-mini" in out and "20 of 820 rows were other pairs" in out
    assert versions.list_versions(mf) == ["base", "v0001"] and versions.current_version(mf) == "base"
    manifest = load_artifact(mf / "versions" / "v0001").manifest
    assert manifest.version == "v0001" and manifest.kind == "mf"
    prov = manifest.provenance
    assert prov["learn_prior_version"].startswith("base@") and int(prov["learn_train_samples"]) > 550
    assert int(prov["learn_train_samples"]) + int(prov["learn_heldout_samples"]) == 800
    assert manifest.calibration is not None and "traffic.csv" in manifest.calibration.reference

    assert _learn(setup, "promote", *_pair(setup, setup["traffic"]), "--candidate", "v0001") == 0
    out = capsys.readouterr().out
    assert "promoted: mf now serves v0001 (was base)" in out and "excludes 0" in out
    assert versions.current_version(mf) == "v0001"
    evidence = versions.history(mf)[-1]["evidence"]
    assert evidence["promote"] is True and evidence["interval_low"] > 0

    # What the lab scored is what a scorer serves from the promoted pointer.
    embedder = Embedder(Path("build/encoder"), setup["cache"], progress=False)
    candidate = load_scoring_router(mf / "versions" / "v0001", embedder)
    prompts = [json.loads(r)[0] for r in ('["Prove that 17 is prime."]', '["Say hi to Bob in Welsh."]')]
    want = candidate.score(prompts, embedder)
    with scorer_in_thread(setup["routers"]) as target, grpc.insecure_channel(target) as channel:
        stub = scorer_pb2_grpc.ScorerServiceStub(channel)
        for prompt, rate in zip(prompts, want, strict=True):
            resp = stub.Score(scorer_pb2.ScoreRequest(router="mf", prompt=prompt), timeout=30)
            assert resp.strong_win_rate == pytest.approx(rate, abs=1e-9)
            assert resp.router_version == "v0001"

    # Verdicts shuffled across prompts: the candidate learns noise and the gate keeps v0001.
    assert _learn(setup, "retrain", *_pair(setup, setup["noise"])) == 0
    assert _learn(setup, "promote", *_pair(setup, setup["noise"]), "--candidate", "v0002") == 3
    assert "not promoted: v0001 keeps serving" in capsys.readouterr().out
    assert versions.current_version(mf) == "v0001"
    assert _learn(setup, "promote", *_pair(setup, setup["traffic"]), "--candidate", "v0001") == 2  # already serving
    # a mistyped candidate: was '.../versions/v0009/manifest.json: manifest not found', after loading the encoder
    capsys.readouterr()
    assert _learn(setup, "promote", *_pair(setup, setup["traffic"]), "--candidate", "v0009") == 2
    assert f"{mf}: version 'v0009' does not exist (there: base, v0001, v0002)" in capsys.readouterr().err
    # a bad gate setting before any work (was: after embedding the held-back slice)
    assert _learn(setup, "promote", *_pair(setup, setup["traffic"]), "--candidate", "v0002", "--level", "0.5") == 2
    out, err = capsys.readouterr()
    assert "held-back slice" not in out and "gate level must be in (0.5, 1), is 0.5" in err

    assert main(["learn", "rollback", "--router-dir", str(mf)]) == 0
    assert versions.current_version(mf) == "base"
    assert main(["learn", "versions", "--router-dir", str(mf)]) == 0
    out = capsys.readouterr().out
    assert "* base" in out and "v0002" in out and "rollback v0001 -> base" in out
    assert main(["learn", "rollback", "--router-dir", str(mf)]) == 2  # nothing earlier than base


def test_retrain_refuses_what_it_cannot_learn_from(
    setup: dict[str, Path], built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _learn(
            setup,
            "retrain",
            *_pair(setup, setup["traffic"])[:2],
            "--strong",
            "a",
            "--weak",
            "b",
            "--router-dir",
            str(setup["mf"]),
        )
        == 2
    )  # no battles of that pair
    # a bert prior is trained again by the recipe it records; the test routers' bert records none (untrained)
    says = {
        "bert": ("that recipe cannot be recovered from", "names no training data (trained_on)", "Pass --recipe FILE"),
        "random": ("the prior is a random router; retraining from traffic updates mf, sw, bert artifacts only",),
    }
    for kind, lines in says.items():
        prior = tmp_path / kind
        shutil.copytree(built / kind, prior)
        argv = ["--traffic", str(setup["traffic"]), "--strong", STRONG, "--weak", WEAK, "--router-dir", str(prior)]
        capsys.readouterr()
        assert _learn(setup, "retrain", *argv) == 2
        err = capsys.readouterr().err
        assert all(line in err for line in lines), err
        assert not (prior / "versions").exists() or not list((prior / "versions").iterdir())


def test_retrain_on_an_sw_prior_appends_the_judged_battles(
    setup: dict[str, Path], built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = tmp_path / "routers"
    sw = served / "sw"
    shutil.copytree(built / "sw", sw)
    base = load_artifact(sw).manifest

    def argv(traffic: Path) -> list[str]:
        return ["--traffic", str(traffic), "--strong", STRONG, "--weak", WEAK, "--router-dir", str(sw)]

    # Coin-flip verdicts (shuffled across prompts): the battles teach nothing and the gate keeps the base.
    assert _learn(setup, "retrain", *argv(setup["noise"])) == 0
    assert _learn(setup, "promote", *argv(setup["noise"]), "--candidate", "v0001") == 3
    assert "not promoted: base keeps serving" in capsys.readouterr().out
    assert versions.current_version(sw) == "base"

    assert _learn(setup, "retrain", *argv(setup["traffic"])) == 0
    assert "new battles:" in capsys.readouterr().out
    cand_dir = sw / "versions" / "v0002"
    manifest = load_artifact(cand_dir).manifest
    assert (manifest.kind, manifest.version, manifest.params) == ("sw", "v0002", base.params)
    assert manifest.encoder == base.encoder and manifest.calibration is not None
    prov = manifest.provenance
    train = int(prov["learn_new_battles"])
    assert train == int(prov["learn_train_samples"]) > 550 and train + int(prov["learn_heldout_samples"]) == 800
    assert prov["learn_cfg_salt"] and "learn_cfg_l2" not in prov  # the correction's penalty does not apply
    # The prior's battles unchanged, then one battle of the strong (model_a) vs the weak model per training sample.
    with np.load(sw / "battles.npz") as old, np.load(cand_dir / "battles.npz") as new:
        n = len(old["outcome"])
        assert all(np.array_equal(new[k][:n], old[k]) for k in old.files) and len(new["outcome"]) == n + train
        assert set(new["model_a"][n:].tolist()) == {base.models.index(base.default_strong)}
        assert set(new["model_b"][n:].tolist()) == {base.models.index(base.default_weak)}
        assert set(new["outcome"][n:].tolist()) == {0, 1, 2}
    # The scores move toward the verdicts: up on the family judged strong-better most (prior 0.41 there, candidate
    # 0.62), and the families' mean scores in the order of their judged strong-win rates (the prior's are not).
    embedder = Embedder(Path("build/encoder"), setup["cache"], progress=False)
    prior, candidate = load_scoring_router(sw, embedder), load_scoring_router(cand_dir, embedder)
    prompts = load_traffic(setup["traffic"], STRONG, WEAK).prompts
    families = sorted(FAMILIES, key=lambda f: f.p_strong - f.p_weak)
    means = []
    for family in families:
        ps = list(dict.fromkeys(p for p in prompts if family_of(p) == family))
        means.append((prior.score(ps, embedder), candidate.score(ps, embedder)))
    before, after = means[-1]
    assert after.mean() - before.mean() > 0.1 and (after > before).mean() > 0.9
    assert all(a[1].mean() < b[1].mean() for a, b in itertools.pairwise(means))
    assert not all(a[0].mean() < b[0].mean() for a, b in itertools.pairwise(means))

    # A running scorer hot-reloads the promoted candidate and serves what the lab scored.
    texts = ["Prove that 17 is prime.", "Say hi to Bob in Welsh."]
    want = candidate.score(texts, embedder)
    with (
        scorer_in_thread(served, reload_interval_s=0.05) as target,
        grpc.insecure_channel(target) as channel,
    ):
        stub = scorer_pb2_grpc.ScorerServiceStub(channel)

        def score(prompt: str) -> scorer_pb2.ScoreResponse:
            return stub.Score(scorer_pb2.ScoreRequest(router="sw", prompt=prompt), timeout=30)

        assert score(texts[0]).artifact_version.startswith("base@")
        assert _learn(setup, "promote", *argv(setup["traffic"]), "--candidate", "v0002") == 0
        assert "promoted: sw now serves v0002 (was base)" in capsys.readouterr().out
        deadline = time.monotonic() + 20
        while score(texts[0]).router_version != "v0002" and time.monotonic() < deadline:
            time.sleep(0.05)
        for prompt, rate in zip(texts, want, strict=True):
            resp = score(prompt)
            assert resp.strong_win_rate == pytest.approx(rate, abs=1e-9)
            assert resp.router_version == "v0002"


def test_a_directory_that_is_no_router_is_named_not_taken_for_an_empty_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --router-dir: was `versions` printing nothing (exit 0) and `rollback` saying "already serving
    'base'"; now every command that takes it refuses it, naming the directory."""
    typo = tmp_path / "routers" / "fm"
    traffic = ["--traffic", str(tmp_path / "t.csv"), "--strong", "a", "--weak", "b"]
    for command in (["versions"], ["rollback"], ["retrain", *traffic], ["promote", *traffic, "--candidate", "v0001"]):
        with pytest.raises(SystemExit) as done:
            main(["learn", *command, "--router-dir", str(typo)])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --router-dir: {typo} is not a router directory (no manifest.json)" in err, command


def test_curve_writes_json_and_plot(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "curve.json"
    argv = ["curve", "--traffic", str(setup["traffic"]), "--strong", STRONG, "--weak", WEAK]
    argv += ["--shipped", str(setup["mf"]), "--samples", "0,60,300", "--splits", "2", "--test-size", "300"]
    assert _learn(setup, *argv, "--json", str(out), "--resamples", "200") == 0
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 1000
    assert [p["samples"] for p in result["curve"]] == [0, 60, 300]
    first, last = result["curve"][0], result["curve"][-1]
    assert first["apgr"] == pytest.approx(result["shipped_apgr"], abs=1e-9)  # nothing judged: the shipped router
    assert last["apgr"] > result["shipped_apgr"] + 0.1  # the families are learnable; the prior is untrained
    assert 0.4 < result["random_apgr"] < 0.6 and result["test_size"] == 300
    for point in result["curve"]:
        assert point["promoted_not_better"] == 0 and len(point["per_split"]) == 2
        assert np.isfinite([point["sd"], point["served_apgr"], point["judged_only_apgr"]]).all()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--splits", "0", "--splits must be at least 1, is 0"),
        ("--splits", "-2", "--splits must be at least 1, is -2"),
        ("--test-size", "-5", "--test-size must be >= 0 (0: chosen from the traffic), is -5"),
        ("--samples", "0,-100", "--samples must be counts >= 0, got '0,-100'"),
    ],
)
def test_curve_refuses_a_plan_with_nothing_to_simulate(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    """Was (--splits 0): "APGR nan ± 0.0000 (shipped +nan ...) ... promoted in 0/0 splits" lines, exit 0, NumPy's
    'Mean of empty slice' warnings and a JSON of NaNs; now exit 2 with what is wrong, and nothing written."""
    out = tmp_path / "curve.json"
    argv = ["curve", "--traffic", str(setup["traffic"]), "--strong", STRONG, "--weak", WEAK]
    argv += ["--shipped", str(setup["mf"]), "--samples", "0,60", "--test-size", "300", "--json", str(out)]
    capsys.readouterr()
    assert _learn(setup, *argv, flag, value) == 2
    assert f"ferryman learn curve: error: {message}" in capsys.readouterr().err
    assert not out.exists()


def test_promote_refuses_a_candidate_with_no_held_back_slice(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: a candidate retrained with --holdout 0 got "only 0 non-tie verdicts in the held-back slice (need 30);
    judge more traffic" (exit 3), advice no amount of traffic could follow."""
    mf = tmp_path / "mf"
    shutil.copytree(setup["routers"] / "mf", mf)
    pair = ["--traffic", str(setup["traffic"]), "--strong", STRONG, "--weak", WEAK, "--router-dir", str(mf)]
    capsys.readouterr()
    assert _learn(setup, "retrain", *pair, "--holdout", "0") == 0
    assert "note: nothing is held back (--holdout 0 or too little traffic)" in capsys.readouterr().out  # said at once
    candidate = versions.list_versions(mf)[-1]
    assert _learn(setup, "promote", *pair, "--candidate", candidate, "--dry-run") == 2
    assert (
        f"ferryman learn promote: error: {candidate} was retrained with --holdout 0: no prompts were held back, so "
        "the gate has nothing to test it on (more traffic would not help); retrain with --holdout > 0"
    ) in capsys.readouterr().err


def test_promote_and_curve_say_why_the_apgr_is_undefined(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was 'serving base: APGR nan; candidate v0001: APGR nan; ...' from promote when the held-back slice had
    too few verdicts or no net strong wins, and 'APGR nan' lines from curve on traffic where the strong model
    is not better; now promote says the APGR is undefined and why, and curve refuses such traffic."""
    mf = tmp_path / "mf"
    shutil.copytree(setup["routers"] / "mf", mf)
    pair = ["--strong", STRONG, "--weak", WEAK, "--router-dir", str(mf)]
    assert _learn(setup, "retrain", "--traffic", str(setup["traffic"]), *pair) == 0
    candidate = versions.list_versions(mf)[-1]
    rows = judged_rows(800, STRONG, WEAK, seed=1, other_pairs=20)
    few = write_arena_csv(tmp_path / "few.csv", rows[:60])
    swapped = [r | {"winner_model_a": r["winner_model_b"], "winner_model_b": r["winner_model_a"]} for r in rows]
    flipped = write_arena_csv(tmp_path / "flipped.csv", swapped)  # the weak answer better wherever the strong was
    capsys.readouterr()
    for traffic, why in ((few, "(too few verdicts); only "), (flipped, "(no net strong wins: ")):
        argv = ["promote", "--traffic", str(traffic), *pair, "--candidate", candidate, "--dry-run"]
        assert _learn(setup, *argv) == 3
        out = capsys.readouterr().out
        assert f"APGR undefined on the held-back slice {why}" in out and "nan" not in out.lower(), out
    argv = ["curve", "--traffic", str(flipped), "--strong", STRONG, "--weak", WEAK, "--shipped", str(mf)]
    argv += ["--samples", "0", "--splits", "1", "--test-size", "300", "--json", str(tmp_path / "curve.json")]
    assert _learn(setup, *argv) == 2
    out, err = capsys.readouterr()
    assert "APGR is undefined on the traffic (800 judged samples): no net strong wins" in err and "nan" not in out
    assert not (tmp_path / "curve.json").exists()
