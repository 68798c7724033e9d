"""BERT classifier router (RouteLLM's causal/BERT design) served from an ONNX graph.

The graph maps token ids to 3 logits (labels in ``params.labels``, e.g. strong wins /
tie / weak wins); ``strong_win_rate = p[strong] + tie_weight * p[tie]``. It scores one
fixed pair, ``models = [strong, weak]``; asking for the swapped pair returns the
weak model's side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from scorer.artifacts import (
    DEFAULT_HEAD_PRECISION,
    HEAD_PRECISION_PARAM,
    MANIFEST_NAME,
    Artifact,
    EncoderSpec,
    Manifest,
    rebuild_command,
)
from scorer.encoder import (
    ENCODER_META,
    TOKENIZER_FILE,
    GraphPair,
    WordpieceTokenizer,
    allowed_rows_per_run,
    length_buckets,
)
from scorer.errors import ArtifactError
from scorer.routers.base import LoadContext, RouterBase, check

LABELS = ("strong", "tie", "weak")
#: ``params.head_precision`` of a BERT artifact: its head quantised with the encoder (default) or kept fp32
#: (``scorer.graphs.build.build_bert_graphs`` builds the graph either way; the scoring code is the same).
HEAD_PRECISIONS = (DEFAULT_HEAD_PRECISION, "fp32")
#: The graph roles ``ferryman build routers`` writes for a BERT artifact (``built_by`` files).
GRAPH_ROLES = ("onnx", "onnx_unpadded")
#: The ONNX metadata key under which ``ferryman build routers`` records what a graph was built from
#: (``scorer.graphs.build.bert_build_records``: JSON with at least ``head_precision`` and ``delta_sha256``).
BUILD_RECORD_KEY = "ferryman.build"


def head_precision(manifest: Manifest, where: Path) -> str:
    """The manifest's ``params.head_precision`` (default int8); any value but ``HEAD_PRECISIONS`` is refused."""
    value = manifest.params.get(HEAD_PRECISION_PARAM, DEFAULT_HEAD_PRECISION)
    check(
        value in HEAD_PRECISIONS,
        where,
        f"params.{HEAD_PRECISION_PARAM} must be one of {', '.join(HEAD_PRECISIONS)}, got {value!r}",
    )
    return str(value)


def parse_build_record(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """The build record among a graph's metadata (``BUILD_RECORD_KEY``); None when it has none or a malformed one."""
    try:
        record = json.loads(metadata[BUILD_RECORD_KEY])
    except (KeyError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def check_built_graph(
    artifact: Artifact, role: str, session: ort.InferenceSession, ctx: LoadContext | None = None
) -> None:
    """Refuse a built graph (``built_by``) that is not the one the manifest describes.

    ``ferryman build routers`` records in each graph's metadata the head precision, the delta and the
    base encoder files it was built from; a graph built under another ``params.head_precision`` (or
    from another delta) would serve other probabilities than the artifact was calibrated on, and one
    built from other base files than the served encoder (``ctx.encoder_base``, its ``encoder.json``'s
    digests; None: not checked) pairs its weights with another encoder's tokenizer and vectors.
    Committed graphs (a SHA-256 in the manifest) are pinned by their digest and not checked here.
    """
    m = artifact.manifest
    spec = m.files.get(role)
    if spec is None or spec.built_by is None:
        return
    path, where = artifact.path(role), artifact.root / MANIFEST_NAME
    rebuild = f"`{rebuild_command(artifact.root)}` rebuilds it"
    record = parse_build_record(session.get_modelmeta().custom_metadata_map)
    if record is None:
        raise ArtifactError(f"{path}: the graph records no build inputs (built before they were recorded); {rebuild}")
    want = head_precision(m, where)
    if record.get("head_precision") != want:
        raise ArtifactError(
            f"{path}: built with an {record.get('head_precision')} head, but {where} says "
            f"params.{HEAD_PRECISION_PARAM} {want}{' (the default)' if HEAD_PRECISION_PARAM not in m.params else ''},"
            f" so it would serve other probabilities; {rebuild}"
        )
    delta = m.files.get("delta")
    if delta is not None and delta.sha256 and record.get("delta_sha256") != delta.sha256:
        raise ArtifactError(f"{path}: built from another {delta.path} than {where} names; {rebuild}")
    base = None if ctx is None else ctx.encoder_base
    if ctx is not None and base is not None and record.get("base_encoder_sha256") != dict(base):
        raise ArtifactError(
            f"{path}: built from other base encoder files ({', '.join(sorted(base))}) than the encoder it is "
            f"served with ({ctx.encoder_dir / ENCODER_META}); {rebuild} from the installed base encoder (if the "
            f"encoder is the stale one, `ferryman build encoder --force --encoder-dir {ctx.encoder_dir}` rebuilds it)"
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise class probabilities of ``[B, C]`` logits (float64, max-shifted)."""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(p / p.sum(axis=1, keepdims=True))


class BertRouter(RouterBase):
    """Tokenizes with the shared wordpiece vocabulary and runs the classifier graph."""

    needs_embeddings = False

    def __init__(self, artifact: Artifact, ctx: LoadContext) -> None:
        super().__init__(artifact.manifest, aliases=False)
        m = artifact.manifest
        where = artifact.root / "manifest.json"
        check(len(m.models) == 2, where, "a bert router has exactly two models: [strong, weak]")
        check(
            (m.default_strong, m.default_weak) == m.models, where, "bert models must be [default_strong, default_weak]"
        )
        labels = tuple(m.params.get("labels", LABELS))
        check(sorted(labels) == sorted(LABELS), where, f"params.labels must order {', '.join(LABELS)}")
        self._col = {name: labels.index(name) for name in LABELS}
        self.tie_weight = float(m.params.get("tie_weight", 0.5))
        check(0.0 <= self.tie_weight <= 1.0, where, "params.tie_weight must be in [0, 1]")
        self.tokenizer = WordpieceTokenizer(ctx.encoder_dir / TOKENIZER_FILE, m.encoder or EncoderSpec())
        path = artifact.path("onnx")
        # Optional mask-free twin (``files.onnx_unpadded``), used for every run without padding.
        unpadded = artifact.path("onnx_unpadded") if "onnx_unpadded" in m.files else None
        head_precision(m, where)
        self._graphs = GraphPair(path, unpadded, ctx.threads)
        check_built_graph(artifact, "onnx", self._graphs.session, ctx)
        if self._graphs.unpadded is not None:
            check_built_graph(artifact, "onnx_unpadded", self._graphs.unpadded, ctx)
        check(self._graphs.session.get_outputs()[0].shape[-1] == 3, path, "graph output must be logits [B, 3]")
        self._rows_per_run = allowed_rows_per_run(path, ctx.rows_per_run)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``[B, 3]`` in ``LABELS`` order."""
        seqs = self.tokenizer.ids(texts)
        logits = np.zeros((len(seqs), 3), dtype=np.float64)
        for bucket in length_buckets([len(s) for s in seqs], self._rows_per_run):
            logits[bucket] = np.asarray(
                self._graphs.run(self.tokenizer.pad([seqs[i] for i in bucket])), dtype=np.float64
            )
        return softmax(logits)[:, [self._col[name] for name in LABELS]]

    def score(
        self, texts: Sequence[str], embeddings: np.ndarray | None, strong: np.ndarray, weak: np.ndarray
    ) -> np.ndarray:
        p = self.probabilities(texts)
        # models[0] is the trained strong side; a swapped pair scores the other side.
        side = np.where(strong == 0, 0, 2)
        rows = np.arange(len(p))
        win = p[rows, side] + self.tie_weight * p[:, 1]
        return np.clip(win, 0.0, 1.0)
