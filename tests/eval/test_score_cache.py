"""``ferryman eval``'s score cache: a changed artifact or encoder never reuses another one's scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.scorer import DEFAULT_ENCODER_DIR, SAMPLE_PROMPTS, build_test_routers, scorer_in_thread
from lab.data.keys import prompt_key
from lab.eval.cli import random_artifacts
from lab.eval.scoring import ScorerClient, cache_key, local_scorer
from scorer.artifacts import MANIFEST_NAME
from scorer.encoder import Encoder, Precision


def _fingerprint_and_scores(routers: Path, cache: Path) -> tuple[str, list[float]]:
    with scorer_in_thread(routers) as address, ScorerClient(address, strong="", weak="", cache_dir=cache) as client:
        scores = client.score([("mf", str(i), p) for i, p in enumerate(SAMPLE_PROMPTS)], progress=False)
        return client.ref("mf").fingerprint, [float(s) for s in scores]


def test_a_manifest_edit_is_a_new_fingerprint_and_is_scored_again(tmp_path: Path) -> None:
    routers = build_test_routers(tmp_path / "routers")
    cache = tmp_path / "cache"
    first, scores = _fingerprint_and_scores(routers, cache)
    again, cached = _fingerprint_and_scores(routers, cache)
    assert again == first and cached == scores

    # The same name, version, provenance and pair, but a manifest that scores differently: a
    # shorter encoder window (what a hand edit or a recipe override does).
    edited = tmp_path / "edited"
    shutil.copytree(routers, edited)
    path = edited / "mf" / MANIFEST_NAME
    manifest = json.loads(path.read_text("utf-8"))
    manifest["encoder"]["max_tokens"] = 8
    manifest["encoder"]["head_tokens"] = 2
    path.write_text(json.dumps(manifest), encoding="utf-8")
    changed, rescored = _fingerprint_and_scores(edited, cache)
    assert changed != first
    long_prompts = [i for i, p in enumerate(SAMPLE_PROMPTS) if len(p.split()) > 6]
    assert long_prompts and any(rescored[i] != scores[i] for i in long_prompts)


def _local_scores(artifacts: dict[str, Path], cache: Path, precision: Precision) -> tuple[str, str, list[float]]:
    with (
        local_scorer(artifacts, DEFAULT_ENCODER_DIR, threads=1, precision=precision) as address,
        ScorerClient(address, strong="", weak="", cache_dir=cache) as client,
    ):
        scores = client.score([("mf", str(i), p) for i, p in enumerate(SAMPLE_PROMPTS)], progress=False)
        return client.encoder_fingerprint, client.ref("mf").fingerprint, [float(s) for s in scores]


def test_a_scorer_with_other_encoder_numerics_does_not_reuse_the_scores(tmp_path: Path) -> None:
    routers = build_test_routers(tmp_path / "routers")
    artifacts = {"mf": routers / "mf"}
    cache = tmp_path / "cache"
    encoder, first, scores = _local_scores(artifacts, cache, "int8")
    assert encoder == Encoder(DEFAULT_ENCODER_DIR, precision="int8").fingerprint
    # Mark the cached scores (no win rate is negative) to tell a reused score from a recomputed one.
    (path,) = cache.glob(f"mf-{first}.json")
    path.write_text(json.dumps({cache_key(str(i), p): -1.0 for i, p in enumerate(SAMPLE_PROMPTS)}), encoding="utf-8")
    _, again, reused = _local_scores(artifacts, cache, "int8")
    assert again == first and reused == [-1.0] * len(SAMPLE_PROMPTS)

    # The same artifact (manifest and all) served by the fp32 graph: other numbers, scored again.
    fp32, other, rescored = _local_scores(artifacts, cache, "fp32")
    assert fp32 != encoder and other != first
    assert min(rescored) >= 0.0 and rescored != scores


def test_two_spellings_of_one_prompt_key_keep_their_own_scores(tmp_path: Path) -> None:
    # One prompt key (whitespace-normalised text), two texts the random router scores apart.
    texts = ["Prove that  sqrt(2) is irrational.", "Prove that sqrt(2) is irrational."]
    assert prompt_key(texts[0]) == prompt_key(texts[1])
    artifacts = random_artifacts(tmp_path / "random", 1)
    cache = tmp_path / "cache"
    runs = []
    for _ in range(2):  # fresh, then from the cache
        with (
            local_scorer(artifacts, DEFAULT_ENCODER_DIR, threads=1) as address,
            ScorerClient(address, strong="", weak="", cache_dir=cache) as client,
        ):
            items = [("random-s0", prompt_key(t), t) for t in texts]
            runs.append([float(s) for s in client.score(items, progress=False)])
    assert runs[0][0] != runs[0][1]
    assert runs[1] == runs[0]
