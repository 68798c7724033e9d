"""``ferryman eval``'s score cache: a changed artifact never reuses another artifact's scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.scorer import SAMPLE_PROMPTS, build_test_routers, scorer_in_thread
from lab.eval.scoring import ScorerClient
from scorer.artifacts import MANIFEST_NAME


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
