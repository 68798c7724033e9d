"""Local sentence encoder: tokenizer + ONNX session, no torch, no remote API.

The encoder is all-MiniLM-L6-v2 exported to ONNX by ``ferryman build encoder``
(``lab.train.export``) with mean pooling and L2 normalisation inside the
graph, so ``encode`` returns unit-length embeddings directly.

Two graphs per precision may exist: ``model.<p>.onnx`` takes an attention mask (padded
batches), ``model.<p>.unpadded.onnx`` takes none and is used for every run without padding
(with int8, every run: one sequence per run, see ``allowed_rows_per_run``). Without a mask the
attention skips the masking arithmetic (``Where``/``IsNaN`` on every layer's scores) and
the pooling is a plain mean: the same embeddings (cosine to the masked graph ≥ 0.999999 on
the Arena prompts) about 1.1x faster (``ferryman bench encoder``). An encoder directory
without the unpadded graph (built before it existed) still works, on the masked graph.

Truncation keeps the end of a long prompt: the question usually comes last
(after context or few-shot examples), while the first few tokens often name
the task. We keep ``head_tokens`` from the start and fill the remaining window
from the end (see ``truncate_ids``).
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from scorer.artifacts import EncoderSpec, read_json_file
from scorer.errors import ArtifactError

Precision = Literal["int8", "fp32"]
ENCODER_META = "encoder.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOKENIZER_FILE = "tokenizer.json"


def model_file(precision: Precision, *, unpadded: bool = False) -> str:
    """File name of the encoder graph for a precision (``unpadded``: the mask-free graph)."""
    return f"model.{precision}.unpadded.onnx" if unpadded else f"model.{precision}.onnx"


def truncate_ids(ids: Sequence[int], max_tokens: int, head_tokens: int) -> list[int]:
    """Cut wordpiece ids (without [CLS]/[SEP]) to ``max_tokens - 2``, keeping head and tail."""
    budget = max_tokens - 2
    if len(ids) <= budget:
        return list(ids)
    head = min(head_tokens, budget)
    tail = budget - head
    return list(ids[:head]) + (list(ids[-tail:]) if tail > 0 else [])


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    """An onnxruntime CPU session with a fixed intra-op thread count."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        raise ArtifactError(f"{path}: cannot load ONNX model ({type(exc).__name__})") from exc


def length_buckets(lengths: Sequence[int], rows_per_run: int, slack: float = 0.15) -> list[list[int]]:
    """Group indices into runs of similar length so that padding stays small.

    On CPU a transformer's cost is proportional to the padded token count, and
    batching saves only per-call overhead, so a batch padded to its longest
    prompt can be slower than no batching at all. Indices are sorted by length
    and a bucket grows while its padded size stays within ``1 + slack`` of its
    real token count (and holds at most ``rows_per_run`` items).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    buckets: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        # Sorted ascending, so ``n`` is the new bucket width.
        if current and (len(current) >= rows_per_run or n * (len(current) + 1) > (1 + slack) * (real + n)):
            buckets.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        buckets.append(current)
    return buckets


def allowed_rows_per_run(path: Path, rows_per_run: int) -> int:
    """How many of the requested ``rows_per_run`` sequences one ONNX run of this graph may hold
    without changing any result.

    Dynamically quantised graphs (``DynamicQuantizeLinear``) pick one activation scale
    per tensor, i.e. per batch, so a prompt's score would depend on its batch mates
    (we measured win rates moving by 0.04). Such graphs run one sequence per call;
    on CPU that costs nothing measurable, because the cost is per token, not per call.
    """
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        quantized = data.find(b"DynamicQuantizeLinear") >= 0
    return 1 if quantized else rows_per_run


@dataclass(frozen=True)
class Batch:
    """Padded model inputs for a list of texts."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class WordpieceTokenizer:
    """Fast tokenizer with Ferryman's head+tail truncation and dynamic padding."""

    def __init__(self, tokenizer_path: Path, spec: EncoderSpec) -> None:
        if not tokenizer_path.is_file():
            raise ArtifactError(f"{tokenizer_path}: tokenizer not found; run `make setup`")
        self._tok = Tokenizer.from_file(str(tokenizer_path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.spec = spec
        cls_id = self._tok.token_to_id("[CLS]")
        sep_id = self._tok.token_to_id("[SEP]")
        pad_id = self._tok.token_to_id("[PAD]")
        if cls_id is None or sep_id is None or pad_id is None:
            raise ArtifactError(f"{tokenizer_path}: not a BERT wordpiece tokenizer")
        self._cls, self._sep, self._pad = cls_id, sep_id, pad_id

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with [CLS]/[SEP], truncated to the spec's window."""
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        spec = self.spec
        return [[self._cls, *truncate_ids(e.ids, spec.max_tokens, spec.head_tokens), self._sep] for e in encs]

    def batch(self, texts: Sequence[str]) -> Batch:
        """Tokenize and pad to the longest sequence of the batch."""
        return self.pad(self.ids(texts))

    def pad(self, seqs: Sequence[Sequence[int]]) -> Batch:
        """Pad token id sequences (from ``ids``) to the longest one."""
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return Batch(ids, mask, np.zeros_like(ids))


def feeds(batch: Batch, names: set[str]) -> dict[str, np.ndarray]:
    """The batch's arrays that a graph with inputs ``names`` takes (``INPUTS`` order)."""
    arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    arrays["token_type_ids"] = batch.token_type_ids
    return {k: v for k, v in arrays.items() if k in names}


class GraphPair:
    """An ONNX graph over a padded batch and, optionally, its mask-free twin for batches without padding.

    The masked graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` if it
    declares it); the unpadded one takes ``input_ids`` and no mask. ``run`` picks the unpadded
    graph whenever the batch has no padding (see the module docstring for why).
    """

    def __init__(self, path: Path, unpadded_path: Path | None, threads: int) -> None:
        self.session = make_session(path, threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self.inputs <= set(INPUTS):
            raise ArtifactError(f"{path}: graph inputs must be input_ids, attention_mask[, token_type_ids]")
        self.unpadded: ort.InferenceSession | None = None
        self.unpadded_inputs: set[str] = set()
        if unpadded_path is not None:
            self.unpadded = make_session(unpadded_path, threads)
            self.unpadded_inputs = {i.name for i in self.unpadded.get_inputs()}
            if not {"input_ids"} <= self.unpadded_inputs <= {"input_ids", "token_type_ids"}:
                raise ArtifactError(f"{unpadded_path}: must take input_ids and no attention_mask")

    def run(self, batch: Batch) -> np.ndarray:
        """The first output for a prepared batch, on the unpadded graph when the batch has no padding."""
        if self.unpadded is not None and batch.attention_mask.all():
            session, names = self.unpadded, self.unpadded_inputs
        else:
            session, names = self.session, self.inputs
        return np.asarray(session.run(None, feeds(batch, names))[0])


class Encoder:
    """Embeds texts into unit vectors with the exported ONNX encoder."""

    def __init__(
        self,
        encoder_dir: Path,
        *,
        precision: Precision = "int8",
        spec: EncoderSpec | None = None,
        threads: int = 1,
    ) -> None:
        self.meta = self.read_meta(encoder_dir)
        model_path = encoder_dir / model_file(precision)
        if not model_path.is_file():
            raise ArtifactError(f"{model_path}: encoder graph missing; run `make setup`")
        self.spec = spec or EncoderSpec(name=str(self.meta.get("name", "all-MiniLM-L6-v2")))
        self.precision = precision
        self.dim = int(str(self.meta.get("dim", 384)))
        self.tokenizer = WordpieceTokenizer(encoder_dir / TOKENIZER_FILE, self.spec)
        unpadded_path = encoder_dir / model_file(precision, unpadded=True)
        self._graphs = GraphPair(model_path, unpadded_path if unpadded_path.is_file() else None, threads)
        self.rows_per_run_limit = allowed_rows_per_run(model_path, 1 << 30)

    @property
    def has_unpadded_graph(self) -> bool:
        """Whether runs without padding use the mask-free graph (see the module docstring)."""
        return self._graphs.unpadded is not None

    @staticmethod
    def read_meta(encoder_dir: Path) -> dict[str, object]:
        """Contents of ``encoder.json``; raises ``ArtifactError`` naming it when missing or corrupt."""
        meta_path = encoder_dir / ENCODER_META
        meta = read_json_file(meta_path, missing="encoder not built; run `make setup` (ferryman build encoder)")
        if not isinstance(meta, dict):
            raise ArtifactError(f"{meta_path}: must be a JSON object")
        return meta

    def run(self, batch: Batch) -> np.ndarray:
        """Run the graph on a prepared batch; returns float32 [B, dim].

        A batch without padding runs on the mask-free graph when there is one.
        """
        return np.asarray(self._graphs.run(batch), dtype=np.float32)

    def encode(self, texts: Sequence[str], rows_per_run: int = 64) -> np.ndarray:
        """Embed texts (any count) in length buckets of at most ``rows_per_run`` (see ``length_buckets``).

        Results do not depend on which other texts are encoded with a text (see ``allowed_rows_per_run``).
        """
        return self.encode_ids(self.tokenizer.ids(texts), rows_per_run)

    def encode_ids(self, seqs: Sequence[Sequence[int]], rows_per_run: int = 64) -> np.ndarray:
        """Embed already tokenized sequences (from ``tokenizer.ids``)."""
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        for bucket in length_buckets([len(s) for s in seqs], min(rows_per_run, self.rows_per_run_limit)):
            out[bucket] = self.run(self.tokenizer.pad([seqs[i] for i in bucket]))
        return out
