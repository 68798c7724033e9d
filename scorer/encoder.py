"""Local sentence encoder: tokenizer + ONNX session, no torch, no remote API.

The encoder is all-MiniLM-L6-v2 exported to ONNX by ``ferryman build encoder``
(``scorer.train.export``) with mean pooling and L2 normalisation inside the
graph, so ``encode`` returns unit-length embeddings directly.

Truncation keeps the end of a long prompt: the question usually comes last
(after context or few-shot examples), while the first few tokens often name
the task. We keep ``head_tokens`` from the start and fill the remaining window
from the end (see ``truncate_ids``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from scorer.artifacts import EncoderSpec
from scorer.errors import ArtifactError

Precision = Literal["int8", "fp32"]
ENCODER_META = "encoder.json"
TOKENIZER_FILE = "tokenizer.json"


def model_file(precision: Precision) -> str:
    """File name of the encoder graph for a precision."""
    return f"model.{precision}.onnx"


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
        seqs = self.ids(texts)
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return Batch(ids, mask, np.zeros_like(ids))


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
        meta_path = encoder_dir / ENCODER_META
        if not meta_path.is_file():
            raise ArtifactError(f"{meta_path}: encoder not built; run `make setup` (ferryman build encoder)")
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{meta_path}: not valid JSON") from exc
        model_path = encoder_dir / model_file(precision)
        if not model_path.is_file():
            raise ArtifactError(f"{model_path}: encoder graph missing; run `make setup`")
        self.spec = spec or EncoderSpec(name=str(self.meta.get("name", "all-MiniLM-L6-v2")))
        self.precision = precision
        self.dim = int(self.meta.get("dim", 384))
        self.tokenizer = WordpieceTokenizer(encoder_dir / TOKENIZER_FILE, self.spec)
        self._session = make_session(model_path, threads)
        self._input_names = {i.name for i in self._session.get_inputs()}

    def run(self, batch: Batch) -> np.ndarray:
        """Run the graph on a prepared batch; returns float32 [B, dim]."""
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = batch.token_type_ids
        out = self._session.run(None, feeds)[0]
        return np.asarray(out, dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts (any count) in batches; length-sorted to reduce padding."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.run(self.tokenizer.batch([texts[i] for i in idx]))
        return out
