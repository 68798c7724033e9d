"""``ferryman learn retrain`` on a bert prior: trained again by its recipe on the recipe's data plus the judged
training part, written as a version a real scorer serves and ``learn promote`` gates.

The prior is a real probe-only BERT router trained here by ``ferryman train bert`` from a tiny recipe (a
battles file of 120 synthetic battles, a 32-token window), so the retrain trains and builds real graphs.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import grpc
import pytest

from ferryman.cli import main
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from harness.scorer import DEFAULT_ENCODER_DIR, scorer_in_thread
from harness.traffic import judged_rows, shuffled_verdicts
from lab.data.arena import write_arena_csv
from lab.learn import bert_retrain
from lab.learn.bert_retrain import recorded_recipe
from lab.learn.candidate import JUDGED_SOURCE
from lab.learn.retrain import LearnConfig, split_holdout
from lab.learn.scoring import Embedder, load_scoring_router
from lab.learn.traffic import load_traffic
from lab.train.data import TrainingData
from lab.train.recipe import load_recipe, recipe_data
from scorer.artifacts import load_artifact

STRONG, WEAK = "gpt-4o", "gpt-4o-mini"
SHIPPED = Path(__file__).resolve().parents[2] / "routers"
TINY_RECIPE = """
kind = "bert"
seed = 0
length_beta = 0.3
[data]
battles = "{battles}"
[encoder]
max_tokens = 32
head_tokens = 8
[settings]
epochs = 0
probe_c = 1.0
probe_features = "served"
served_head = "fp32"
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bert-retrain")
    public = write_arena_csv(root / "public.csv", judged_rows(120, STRONG, WEAK, seed=5))
    recipe = root / "tiny-bert.toml"
    recipe.write_text(TINY_RECIPE.format(battles=public))
    bert = root / "routers" / "bert"
    cache = root / "cache"
    argv = ["train", "bert", "--recipe", str(recipe), "--out", str(bert), "--strong", STRONG, "--weak", WEAK]
    assert main([*argv, "--cache-dir", str(cache), "--threads", "1"]) == 0
    # Coin-flip verdicts (shuffled across prompts): the retrained router learns nothing the gate can see.
    noise = write_arena_csv(root / "noise.csv", shuffled_verdicts(judged_rows(600, STRONG, WEAK, seed=1)))
    return {"bert": bert, "recipe": recipe, "noise": noise, "cache": cache, "root": root}


def _learn(lab: dict[str, Path], *args: str) -> int:
    argv = ["--traffic", str(lab["noise"]), "--strong", STRONG, "--weak", WEAK, "--router-dir", str(lab["bert"])]
    return main(["learn", *args, *argv, "--cache-dir", str(lab["cache"]), "--quiet"])


def test_the_shipped_bert_routers_recipe_is_recovered_from_its_manifest() -> None:
    artifact = load_artifact(SHIPPED / "bert")
    recovered = recorded_recipe(artifact.manifest, artifact.root)
    shipped = load_recipe("bert")
    assert recovered.source.startswith("the recipe recorded in")
    assert dataclasses.replace(recovered, name=shipped.name, source=shipped.source) == shipped


def test_retrain_on_a_bert_prior_trains_it_again_without_the_held_back_slice(
    lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bert = lab["bert"]
    base = load_artifact(bert).manifest
    # Its manifest names the battles file but not its path: the recipe is not recoverable, and retrain says so.
    assert _learn(lab, "retrain") == 2
    err = capsys.readouterr().err
    assert "that recipe cannot be recovered from" in err and "Pass --recipe FILE" in err
    assert "trained on 'public', a battles file whose path it does not record" in err
    assert not (bert / "versions").exists() or not list((bert / "versions").iterdir())

    trained: list[TrainingData] = []
    real = bert_retrain.train_recipe

    def spy(recipe, data, target, ctx):  # type: ignore[no-untyped-def]
        trained.append(data)
        return real(recipe, data, target, ctx)

    monkeypatch.setattr(bert_retrain, "train_recipe", spy)
    assert _learn(lab, "retrain", "--recipe", str(lab["recipe"])) == 0
    assert "bert trained again:" in capsys.readouterr().out
    cand = bert / "versions" / "v0001"
    manifest = load_artifact(cand).manifest
    assert (manifest.kind, manifest.version, manifest.encoder) == ("bert", "v0001", base.encoder)
    assert manifest.files["delta"].sha256 != base.files["delta"].sha256
    assert manifest.calibration is not None and "noise.csv" in manifest.calibration.reference
    prov = manifest.provenance
    config = LearnConfig()
    assert (prov["learn_cfg_salt"], float(prov["learn_cfg_holdout"])) == (config.salt, config.holdout)
    assert "learn_cfg_l2" not in prov and prov["learn_recipe"] == str(lab["recipe"])
    assert prov["cfg_probe_features"] == "served" and prov["length_beta"] == "0.3"  # the recipe's, as it is
    # Trained on the recipe's battles plus one battle of strong (model_a) vs weak per training-part sample:
    # none of the held-back slice.
    train, held = split_holdout(load_traffic(lab["noise"], STRONG, WEAK).samples, config)
    (data,) = trained
    judged = [p for p in data.pairs if p.source == JUDGED_SOURCE]
    assert [p.key for p in judged] == [s.key for s in train] and len(held) > 80
    assert not {p.key for p in judged} & {s.key for s in held}
    assert {(p.model_a, p.model_b) for p in judged} == {(STRONG, WEAK)}
    assert data.pairs[: -len(judged)] == recipe_data(load_recipe(str(lab["recipe"])), None).pairs  # the recipe's
    assert int(prov["learn_new_battles"]) == int(prov["learn_train_samples"]) == len(train)
    assert prov[f"pairs_{JUDGED_SOURCE}"] == str(len(train))

    # Its graphs carry the build record the scorer checks: a real scorer serves what the lab scored.
    served = lab["root"] / "serve"
    shutil.copytree(cand, served / "bert")
    embedder = Embedder(DEFAULT_ENCODER_DIR, lab["cache"], progress=False)
    texts = ["Prove that 17 is prime.", "Say hi to Bob in Welsh."]
    want = load_scoring_router(cand, embedder).score(texts, embedder)
    with scorer_in_thread(served) as target, grpc.insecure_channel(target) as channel:
        stub = scorer_pb2_grpc.ScorerServiceStub(channel)
        for prompt, rate in zip(texts, want, strict=True):
            resp = stub.Score(scorer_pb2.ScoreRequest(router="bert", prompt=prompt), timeout=30)
            assert resp.strong_win_rate == pytest.approx(rate, abs=1e-6)

    # The gate runs on it unchanged and keeps the base on coin-flip verdicts.
    assert _learn(lab, "promote", "--candidate", "v0001") == 3
    out = capsys.readouterr().out
    assert f"held-back slice: {len(held)} of" in out and "not promoted: base keeps serving" in out
