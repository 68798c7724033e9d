"""``ferryman build routers``: rebuild router files that artifacts do not commit.

A BERT artifact commits only the tensors fine-tuning changed (``delta.npz``);
its ONNX graphs (``files.onnx`` and, when declared, its mask-free twin
``files.onnx_unpadded``; both ``built_by``) are rebuilt here from the PyPI
MiniLM plus that delta, exported with the same helpers as the encoder and
quantised to int8 per-channel.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from scorer.artifacts import MANIFEST_NAME, Manifest, discover_artifacts, parse_manifest, read_json_file, sha256_of
from scorer.errors import ArtifactError


def _manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    return parse_manifest(read_json_file(path, missing="manifest not found"), path)


def build_bert_onnx(root: Path, *, force: bool = False) -> list[Path]:
    """Build the ``built_by`` graphs of a BERT artifact from its delta; returns those built (missing ones only)."""
    manifest = _manifest(root)
    if manifest.kind != "bert":
        return []
    roles = [r for r in ("onnx", "onnx_unpadded") if r in manifest.files and manifest.files[r].built_by is not None]
    todo = {r: root / manifest.files[r].path for r in roles}
    for role, dst in list(todo.items()):
        if dst.is_file() and not force:
            print(f"{dst} exists (use --force to rebuild)")
            del todo[role]
    if not todo:
        return []
    delta_spec = manifest.files.get("delta")
    if delta_spec is None:
        raise ArtifactError(f"{root / MANIFEST_NAME}: bert artifact has no files.delta to build from")
    delta_path = root / delta_spec.path
    if not delta_path.is_file():
        raise ArtifactError(f"{delta_path}: delta file missing")
    if delta_spec.sha256 and sha256_of(delta_path) != delta_spec.sha256:
        raise ArtifactError(f"{delta_path}: SHA-256 mismatch (file is corrupt or was changed after training)")
    from lab.train.bert import load_delta, module_from_delta
    from lab.train.export import export_onnx, quantize_int8, unpadded_module

    t0 = time.perf_counter()
    module = module_from_delta(load_delta(delta_path))
    with tempfile.TemporaryDirectory() as tmp:
        for role, dst in todo.items():
            fp32 = Path(tmp) / f"{role}.fp32.onnx"
            if role == "onnx":
                export_onnx(module, fp32, "logits")
            else:
                export_onnx(unpadded_module(module.inner, module.head), fp32, "logits", with_mask=False)
            quantize_int8(fp32, dst)
            print(f"built {dst} in {time.perf_counter() - t0:.1f} s", flush=True)
    return list(todo.values())


def rebuild_routers(routers_dir: Path, *, force: bool = False) -> list[Path]:
    """Build every ``built_by`` file of the artifacts under ``routers_dir``; returns what was built."""
    if not routers_dir.is_dir():
        print(f"no routers directory at {routers_dir}; nothing to build")
        return []
    built = [p for root in discover_artifacts(routers_dir) for p in build_bert_onnx(root, force=force)]
    if not built:
        print(f"no router files to build under {routers_dir}")
    return built
