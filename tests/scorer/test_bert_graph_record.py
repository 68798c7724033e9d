"""A built BERT graph records what it was built from (``scorer.graphs.build.bert_build_records``).

``ferryman build routers`` writes the record into each graph's metadata and, without ``--force``,
rebuilds a graph whose record differs from the artifact as it is now (its ``params.head_precision``,
its delta, the base encoder, the builder), saying why; the scorer refuses at load a graph whose
record names another head precision or delta than its manifest (``scorer.routers.bert``).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from ferryman import paths
from scorer.artifacts import HEAD_PRECISION_PARAM, load_artifact, sha256_of, write_manifest
from scorer.core import ScoreQuery, ScorerCore
from scorer.encoder import BASE_DIGESTS_KEY, ENCODER_META
from scorer.errors import ArtifactError
from scorer.graphs.base import BaseEncoder, read_base_encoder
from scorer.graphs.build import (
    GRAPH_MODULES,
    bert_build_records,
    build_bert_graphs,
    build_routers,
    graph_build_record,
)

SHIPPED_BERT = paths.routers_dir().resolve() / "bert"  # fp32 head (params.head_precision)
GRAPHS = ("model.int8.onnx", "model.int8.unpadded.onnx")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base() -> BaseEncoder:
    return read_base_encoder()


@pytest.fixture(scope="module")
def built_bert(base: BaseEncoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped BERT router with its graphs built here."""
    root = tmp_path_factory.mktemp("built") / "bert"
    shutil.copytree(SHIPPED_BERT, root, ignore=shutil.ignore_patterns("*.onnx"))
    build_bert_graphs(root, base=base)
    return root


@pytest.fixture
def bert(built_bert: Path, tmp_path: Path) -> Path:
    """A routers directory with a fresh copy of ``built_bert`` (graphs included); returns the artifact."""
    root = tmp_path / "routers" / "bert"
    shutil.copytree(built_bert, root)
    return root


def set_head_precision(root: Path, precision: str) -> None:
    """Rewrite the manifest with ``params.head_precision`` (format_version follows), as a retrain would."""
    manifest = load_artifact(root, verify_hashes=False).manifest
    params = {k: v for k, v in manifest.params.items() if k != HEAD_PRECISION_PARAM}
    params |= {HEAD_PRECISION_PARAM: precision} if precision != "int8" else {}
    write_manifest(root, dataclasses.replace(manifest, params=params))


def head_ops(path: Path) -> set[str]:
    """The operator types of the head's nodes (int8: MatMulInteger among them; fp32: MatMul, Add)."""
    return {n.op_type for n in onnx.load(str(path)).graph.node if n.name.startswith("head")}


def strip_record(path: Path) -> None:
    """The graph as a builder before build records wrote it."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))


def test_build_rebuilds_a_graph_whose_inputs_changed_and_says_why(
    bert: Path, base: BaseEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: `ferryman build routers` printed "... exists (use --force to rebuild)" and kept a graph with an
    fp32 head under a manifest that asks for int8 (and any graph built from an older delta)."""
    graphs = [bert / g for g in GRAPHS]
    assert {graph_build_record(g)["head_precision"] for g in graphs} == {"fp32"}  # type: ignore[index]
    assert all(head_ops(g) == {"MatMul", "Add"} for g in graphs)
    assert build_routers(bert.parent, base=base) == []
    assert capsys.readouterr().out.count("is up to date (use --force to rebuild)") == 2
    # params.head_precision changed: both graphs rebuilt with the head quantised
    set_head_precision(bert, "int8")
    assert build_routers(bert.parent, base=base) == graphs
    out = capsys.readouterr().out
    for g in graphs:
        assert f"{g} is stale: its head is fp32, the manifest says params.head_precision int8; rebuilding it" in out
        assert "MatMulInteger" in head_ops(g)
        assert graph_build_record(g)["head_precision"] == "int8"  # type: ignore[index]
    # another delta (a retrain that was not rebuilt)
    delta = bert / "delta.npz"
    with np.load(delta) as npz:
        tensors = {k: npz[k] for k in npz.files}
    np.savez(delta, **(tensors | {"head.bias": (tensors["head.bias"] + 1).astype(tensors["head.bias"].dtype)}))
    manifest = load_artifact(bert, verify_hashes=False).manifest
    files = dict(manifest.files) | {"delta": dataclasses.replace(manifest.files["delta"], sha256=sha256_of(delta))}
    write_manifest(bert, dataclasses.replace(manifest, files=files))
    assert build_routers(bert.parent, base=base) == graphs
    assert f"{graphs[0]} is stale: the delta changed since it was built; rebuilding it" in capsys.readouterr().out
    # a graph built before the record existed
    strip_record(graphs[1])
    assert build_routers(bert.parent, base=base) == [graphs[1]]
    assert f"{graphs[1]} is stale: it records no build inputs" in capsys.readouterr().out
    assert build_routers(bert.parent, base=base) == []


def _modules_shaping_graphs(module: str = "scorer.graphs.build") -> list[str]:
    """The builder and every ``scorer.graphs`` module whose code it runs, transitively (from their imports)."""
    seen: list[str] = []
    todo = [module]
    while todo:
        name = todo.pop()
        spec = importlib.util.find_spec(name)
        if name in seen or spec is None or spec.origin is None:
            continue
        seen.append(name)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        todo += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        todo = [m for m in todo if m.startswith("scorer.graphs.")]
    return sorted(seen)


@pytest.mark.parametrize("module", _modules_shaping_graphs())
def test_a_change_to_any_module_that_shapes_a_graph_makes_built_graphs_stale(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build record's ``builder`` digest changes with the code of every module the builder runs
    (``GRAPH_MODULES``, the one list), so ``ferryman build routers`` rebuilds after any of them changed. Was:
    build.py and bert_graph.py only; base.py, which reads the weights the graph is written from, was left out."""
    assert module in GRAPH_MODULES
    before = bert_build_records(SHIPPED_BERT)["onnx"]["builder"]
    source = Path(str(importlib.util.find_spec(module).origin))  # type: ignore[union-attr]
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: read_bytes(p) + (b"# changed" if p == source else b""))
    assert bert_build_records(SHIPPED_BERT)["onnx"]["builder"] != before


def test_the_scorer_refuses_a_graph_built_under_another_head_precision(
    bert: Path, base: BaseEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: a graph built with an fp32 head served under a manifest that says int8 (or the reverse), with other
    probabilities than the artifact was calibrated on. Now the scorer refuses it at load, naming the command."""
    encoder_dir, routers = paths.encoder_dir(), bert.parent
    ScorerCore.load(routers, encoder_dir, only=["bert"])  # as built
    set_head_precision(bert, "int8")  # a manifest that says int8 (the default) over the fp32 graphs
    command = re.escape(f"ferryman build routers --routers-dir {routers}")
    rebuild = rf"so it would serve other probabilities; `{command}` rebuilds it"
    graph = re.escape(str(bert / GRAPHS[0]))
    says = re.escape(f"but {bert / 'manifest.json'} says params.head_precision")
    fp32_graph = rf"{graph}: built with an fp32 head, {says} int8 \(the default\), {rebuild}"
    with pytest.raises(ArtifactError, match=fp32_graph):
        ScorerCore.load(routers, encoder_dir, only=["bert"])
    build_routers(routers, base=base)  # the command it names
    int8 = ScorerCore.load(routers, encoder_dir, only=["bert"])
    assert int8.score([ScoreQuery("bert", "Prove that there are infinitely many primes.")])[0].strong_win_rate > 0
    set_head_precision(bert, "fp32")  # the reverse
    with pytest.raises(ArtifactError, match=rf"{graph}: built with an int8 head, {says} fp32, {rebuild}"):
        ScorerCore.load(routers, encoder_dir, only=["bert"])
    build_routers(routers, base=base)
    capsys.readouterr()
    # the mask-free twin is checked too, and a graph that records nothing is refused
    strip_record(bert / GRAPHS[1])
    twin = re.escape(str(bert / GRAPHS[1]))
    with pytest.raises(ArtifactError, match=rf"{twin}: the graph records no build inputs .*ferryman build routers"):
        ScorerCore.load(routers, encoder_dir, only=["bert"])


def test_the_scorer_refuses_a_graph_built_from_other_base_encoder_files(bert: Path, tmp_path: Path) -> None:
    """A built graph whose record names other base encoder files than those the served encoder was written from
    (its ``encoder.json``) is refused at load, naming the commands that rebuild either. Was: only ``ferryman build
    routers`` compared them (with the installed base), and the scorer served the graph's weights with another
    encoder's tokenizer. Cheap: two recorded digests compared, nothing hashed at load."""
    served, routers = paths.encoder_dir(), bert.parent
    meta = json.loads((served / ENCODER_META).read_text(encoding="utf-8"))
    assert meta[BASE_DIGESTS_KEY] == graph_build_record(bert / GRAPHS[0])["base_encoder_sha256"]  # type: ignore[index]
    ScorerCore.load(routers, served, only=["bert"])  # built from the same base files: served
    encoder_dir = tmp_path / "encoder"
    encoder_dir.mkdir()
    for f in served.iterdir():
        if f.name != ENCODER_META:
            (encoder_dir / f.name).symlink_to(f.resolve())
    other = meta[BASE_DIGESTS_KEY] | {"model.safetensors": "0" * 64}  # an encoder written from other weights
    (encoder_dir / ENCODER_META).write_text(json.dumps(meta | {BASE_DIGESTS_KEY: other}), encoding="utf-8")
    graph, meta_path = re.escape(str(bert / GRAPHS[0])), re.escape(str(encoder_dir / ENCODER_META))
    command = re.escape(f"`ferryman build routers --routers-dir {routers}` rebuilds it")
    says = rf"{graph}: built from other base encoder files \(config.json, model.safetensors\) than the encoder it is"
    says += rf" served with \({meta_path}\); {command} .*`ferryman build encoder --force --encoder-dir"
    with pytest.raises(ArtifactError, match=says):
        ScorerCore.load(routers, encoder_dir, only=["bert"])
    # an encoder.json that records no base files (written before they were recorded) is not checked
    unknown = {k: v for k, v in meta.items() if k != BASE_DIGESTS_KEY}
    (encoder_dir / ENCODER_META).write_text(json.dumps(unknown), encoding="utf-8")
    ScorerCore.load(routers, encoder_dir, only=["bert"])


def test_each_refusal_names_a_command_that_fixes_the_artifact_it_refuses(
    bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An artifact outside ``routers/`` (a cross-fitted, LOSO or learning prior under ``build/``: every such
    BERT graph built before the build record, today) is refused with a command that rebuilds *it*. Was:
    "`ferryman build routers` rebuilds it", which rebuilds ``routers/`` ("nothing to build under routers")
    and left the refused artifact as it was; likewise the format_version 4 message."""
    routers = bert.parent
    strip_record(bert / GRAPHS[0])  # a graph built before the record
    manifest = bert / "manifest.json"
    raw = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps(raw | {"format_version": 2}), encoding="utf-8")  # written before 4 existed
    commands = []
    for fix in ("format_version", "graph"):
        with pytest.raises(ArtifactError) as refused:
            ScorerCore.load(routers, paths.encoder_dir(), only=["bert"])
        named = re.search(r"`(ferryman build routers[^`]*)`", str(refused.value))
        assert named, refused.value
        commands.append(named.group(1))
        if fix == "format_version":  # the message's first step: set format_version 4
            assert "set format_version 4" in str(refused.value)
            manifest.write_text(json.dumps(raw), encoding="utf-8")
            continue
        # run the command it names as a user would, from another directory than the artifact's
        argv = shlex.split(named.group(1))
        done = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    ScorerCore.load(routers, paths.encoder_dir(), only=["bert"])  # the command fixed it
    assert commands[0] == commands[1], commands  # both refusals name the same command
