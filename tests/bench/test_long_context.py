"""``ferryman bench long-context`` on a tiny mix: the clamp's figures agree with a router served without its head."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from bench import long_context
from lab.data.benchmarks import DataError, default_data_dir
from lab.train.recipe import add_length_head
from scorer.artifacts import load_artifact, write_manifest
from scorer.routers.length_head import LengthHead


def test_long_context_table(test_routers_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        data = default_data_dir()
    except DataError:
        pytest.skip("public data not found")
    routers = tmp_path / "routers"
    shutil.copytree(test_routers_dir / "mf", routers / "plain", symlinks=True)
    shutil.copytree(test_routers_dir / "mf", routers / "headed", symlinks=True)
    # z of a 2,000-character prompt is (7.6 - 4.1) / 0.5 = 7: every long-context prompt is past the clamp.
    for name in ("plain", "headed"):
        manifest = load_artifact(routers / name).manifest
        write_manifest(routers / name, dataclasses.replace(manifest, name=name))
    add_length_head(routers / "headed", LengthHead(beta=0.5, mean=math.log1p(60), std=0.5))
    parser = argparse.ArgumentParser()
    long_context.add_arguments(parser)
    out = tmp_path / "lc"
    argv = ["--routers", "headed", "plain", "--routers-dir", str(routers), "--data-dir", str(data)]
    argv += ["--mix-size", "24", "--out", str(out), "--quiet"]
    assert long_context.run(parser.parse_args(argv)) == 0
    printed = capsys.readouterr().out
    assert "6 long-context prompts, 18 other" in printed and "| headed | 6/6 / " in printed
    rows = {r["router"]: r for r in json.loads(out.with_suffix(".json").read_text("utf-8"))["routers"]}
    headed, plain = rows["headed"], rows["plain"]
    assert headed["touched_long"] == 6 and plain["touched_long"] == 0 and plain["head"] is None
    # Taking the clamped term back out of the served logit gives what the same weights serve without a head.
    assert headed["mean_no_head"] == pytest.approx(plain["mean_clamped"], abs=1e-9)
    assert headed["mean_no_head"] < headed["mean_clamped"] < headed["mean_unclamped"]
    assert headed["max_change_long"] > 0 and plain["max_change_long"] == 0
    assert headed["thresholds"] == plain["thresholds"] and set(headed["thresholds"]) == {"0.1", "0.3"}
    assert headed["strong_no_head"] == plain["strong_clamped"]
    assert all(headed["strong_unclamped"][s] >= headed["strong_clamped"][s] for s in ("0.1", "0.3"))
    assert out.with_suffix(".md").read_text("utf-8").count("| headed |") == 1
