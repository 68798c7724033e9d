"""The lab's side of a truncated MiniLM (``EncoderSpec.layers``): recipes name it, caches keep it apart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.scorer import copy_full_encoder
from lab.data.embed_cache import cache_path
from lab.train.jobs import TrainContext
from lab.train.recipe import load_recipe
from scorer.artifacts import EncoderSpec
from scorer.encoder import model_file


def test_a_recipe_names_the_depth() -> None:
    shipped = load_recipe("mf").encoder
    assert load_recipe("mf", ["layers=3"]).encoder == dataclasses.replace(shipped, layers=3)
    with pytest.raises(ValueError, match=r"encoder.layers must be 1..6"):
        load_recipe("mf", ["layers=7"])
    with pytest.raises(ValueError, match=r"encoder.layers must be 1..6"):
        load_recipe("sw", ["layers=0"])
    # a kind that does not score the shared encoder's embeddings (was: bert trained and served at full depth
    # under a manifest saying encoder.layers 4; random wrote the depth nowhere)
    for kind in ("bert", "random"):
        with pytest.raises(ValueError, match=rf"^--set layers=4: encoder.layers 4: a {kind} router cannot use a trunc"):
            load_recipe(kind, ["layers=4"])
    assert load_recipe("bert", ["layers=6"]).encoder.layers == 6


def test_the_training_context_builds_a_missing_depth_and_caches_it_apart(tmp_path: Path) -> None:
    enc_dir = copy_full_encoder(tmp_path / "encoder")
    ctx = TrainContext(encoder_dir=enc_dir, cache_dir=tmp_path / "cache", threads=1)
    full, two = ctx.encoder(EncoderSpec()), ctx.encoder(EncoderSpec(layers=2))
    assert (enc_dir / model_file("int8", unpadded=True, layers=2)).is_file()
    assert full.fingerprint != two.fingerprint
    assert cache_path(tmp_path, full).name == "emb-all-MiniLM-L6-v2-int8-256-32.npz"  # unchanged for the full depth
    assert cache_path(tmp_path, two).name == "emb-all-MiniLM-L6-v2-int8-256-32-L2.npz"
