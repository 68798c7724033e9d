"""The MiniLM (BERT) encoder as an ONNX graph, written with ``onnx.helper`` from numpy weights.

No torch: the arithmetic is the graph ``torch.onnx.export`` traced from transformers'
``BertModel`` (opset 17, the SDPA attention path), op for op with the same constants; only the
shape bookkeeping is simpler. So onnxruntime fuses and runs it the same way, the int8 graphs that
``onnxruntime.quantization.quantize_dynamic`` makes from it see the same activations, and every
output is bit-identical to the torch export's (``tests/train/test_graph_equality.py``). Per layer::

    q, k, v = x Wq + bq, x Wk + bk, x Wv + bv            (MatMul, then Add(bias, ·))
    s = (q_h * d**-1/4) (k_h^T * d**-1/4)                 (d = head size; scale split as SDPA does)
    [masked: s + Where(mask, 0, -inf)]  p = Softmax(s)    [masked: Where(IsNaN(p), 0, p)]
    x = LN(x + (p v_h) Wo + bo)
    x = LN(x + GELU_erf(x Wi + bi) Wo2 + bo2)

Then mean pooling over the tokens (masked: ``sum(h * m) / max(sum(m), 1e-9)``; unpadded: a plain
mean) and either L2 normalisation (``embedding``, the encoder), a linear head (``logits``, the
BERT router) or nothing (``pooled``: the vector the BERT router's head reads, which its probe is
fitted on). Weight names are the state-dict names of ``transformers.BertModel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # what torch 2.x writes for opset 17; every onnxruntime >= 1.15 loads it
INT64 = TensorProto.INT64
FLOAT = TensorProto.FLOAT
#: Name of the head's ``Gemm`` node (so that quantisation can leave it out: ``build_bert_graphs``).
HEAD_NODE = "head"


@dataclass(frozen=True)
class BertShape:
    """The sizes of a BERT encoder (``config.json`` of a transformers checkpoint)."""

    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> BertShape:
        """From a ``config.json`` mapping; refuses what this graph does not implement."""
        shape = cls(
            hidden_size=int(str(config["hidden_size"])),
            num_hidden_layers=int(str(config["num_hidden_layers"])),
            num_attention_heads=int(str(config["num_attention_heads"])),
            intermediate_size=int(str(config["intermediate_size"])),
            layer_norm_eps=float(str(config.get("layer_norm_eps", 1e-12))),
            hidden_act=str(config.get("hidden_act", "gelu")),
        )
        if shape.hidden_act != "gelu" or shape.hidden_size % shape.num_attention_heads:
            raise ValueError(f"unsupported BERT config: hidden_act={shape.hidden_act!r}, sizes {shape}")
        if str(config.get("position_embedding_type", "absolute")) != "absolute":
            raise ValueError("unsupported BERT config: position_embedding_type must be 'absolute'")
        return shape


@dataclass(frozen=True)
class Head:
    """A linear classifier on the pooled vector: ``logits = pooled @ weight.T + bias``."""

    weight: np.ndarray  # [classes, hidden]
    bias: np.ndarray  # [classes]


class _Graph:
    """Accumulates nodes, initializers and scalar constants (one Constant node per use, as torch writes)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value: float | list[int] | list[float], dtype: type[np.generic] = np.int64) -> str:
        out = self.name("const")
        arr: np.ndarray = np.array(value, dtype=dtype)
        self.nodes.append(helper.make_node("Constant", [], [out], value=numpy_helper.from_array(arr, out)))
        return out

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def build_bert_graph(
    weights: Mapping[str, np.ndarray],
    shape: BertShape,
    *,
    masked: bool,
    head: Head | None = None,
    output_name: str = "embedding",
    normalise: bool = True,
) -> onnx.ModelProto:
    """The fp32 graph of the encoder with mean pooling and L2 normalisation, or a ``head``.

    Without a head and with ``normalise=False`` the output is the mean-pooled vector itself, the
    input of a BERT router's head: its nodes are those of the router's graph up to the head, so
    the int8 graph ``quantize_dynamic`` makes of it computes the served router's pooled vector.

    ``weights`` holds fp32 arrays under ``BertModel`` state-dict names (``embeddings.*``,
    ``encoder.layer.N.*``). ``masked`` graphs take ``input_ids``, ``attention_mask`` and
    ``token_type_ids``; unpadded ones take no mask and average every token. Batch and
    sequence axes are dynamic.
    """
    g = _Graph()
    w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items() if k != "embeddings.position_ids"}
    inputs = ["input_ids", *(["attention_mask"] if masked else []), "token_type_ids"]
    hidden = _embeddings(g, w, shape)
    additive = _additive_mask(g) if masked else None
    for i in range(shape.num_hidden_layers):
        hidden = _layer(g, w, shape, f"encoder.layer.{i}.", hidden, additive)
    pooled = _masked_mean(g, hidden) if masked else g.op("ReduceMean", [hidden], "mean", axes=[1], keepdims=0)
    if head is None and normalise:
        _l2_normalise(g, pooled, output_name)
    elif head is None:
        g.nodes.append(helper.make_node("Identity", [pooled], [output_name]))
    else:
        wt = g.init("head.weight", np.asarray(head.weight, dtype=np.float32))
        b = g.init("head.bias", np.asarray(head.bias, dtype=np.float32))
        g.nodes.append(
            helper.make_node("Gemm", [pooled, wt, b], [output_name], name=HEAD_NODE, alpha=1.0, beta=1.0, transB=1)
        )
    out_dim = shape.hidden_size if head is None else int(head.weight.shape[0])
    graph = helper.make_graph(
        g.nodes,
        "ferryman_minilm",
        [helper.make_tensor_value_info(n, INT64, ["batch", "sequence"]) for n in inputs],
        [helper.make_tensor_value_info(output_name, FLOAT, ["batch", out_dim])],
        g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ferryman.scorer.graphs"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _embeddings(g: _Graph, w: Mapping[str, np.ndarray], shape: BertShape) -> str:
    word = g.init("embeddings.word_embeddings.weight", w["embeddings.word_embeddings.weight"])
    types = g.init("embeddings.token_type_embeddings.weight", w["embeddings.token_type_embeddings.weight"])
    pos_table = w["embeddings.position_embeddings.weight"]
    positions = g.init("embeddings.position_embeddings.weight", pos_table)
    seq = g.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
    ids = g.init("position_ids", np.arange(pos_table.shape[0], dtype=np.int64)[None, :])
    pos_ids = g.op("Slice", [ids, g.const([0]), seq, g.const([1]), g.const([1])], "position_ids")
    summed = g.op(
        "Add",
        [g.op("Gather", [word, "input_ids"], "word_emb"), g.op("Gather", [types, "token_type_ids"], "type_emb")],
        "emb_sum",
    )
    summed = g.op("Add", [summed, g.op("Gather", [positions, pos_ids], "pos_emb")], "emb_sum")
    return _layer_norm(g, w, "embeddings.LayerNorm.", summed, shape)


def _layer_norm(g: _Graph, w: Mapping[str, np.ndarray], prefix: str, x: str, shape: BertShape) -> str:
    scale = g.init(prefix + "weight", w[prefix + "weight"])
    bias = g.init(prefix + "bias", w[prefix + "bias"])
    return g.op("LayerNormalization", [x, scale, bias], "layer_norm", axis=-1, epsilon=shape.layer_norm_eps)


def _linear(g: _Graph, w: Mapping[str, np.ndarray], prefix: str, x: str) -> str:
    """``x @ W.T + b`` as torch exports ``nn.Linear`` on 3-D input: MatMul on the transposed weight, Add(bias, ·)."""
    weight = g.init(prefix + "weight_t", w[prefix + "weight"].T)
    bias = g.init(prefix + "bias", w[prefix + "bias"])
    return g.op("Add", [bias, g.op("MatMul", [x, weight], "matmul")], "linear")


def _additive_mask(g: _Graph) -> str:
    """``[B, 1, 1, S]``: 0 where a token is attended, -inf at padding (added to every layer's scores)."""
    keep = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const([1, 2])], "mask4d")], "mask_bool", to=9)
    zero, neg_inf = g.const([0.0], np.float32), g.const([-np.inf], np.float32)
    return g.op("Where", [keep, zero, neg_inf], "additive_mask")


def _layer(g: _Graph, w: Mapping[str, np.ndarray], shape: BertShape, prefix: str, x: str, additive: str | None) -> str:
    att = prefix + "attention."
    heads = g.const([0, 0, shape.num_attention_heads, shape.head_size])
    q, k, v = (
        g.op("Reshape", [_linear(g, w, f"{att}self.{n}.", x), heads], f"{n}_heads") for n in ("query", "key", "value")
    )
    q = g.op("Transpose", [q], "q_t", perm=[0, 2, 1, 3])
    k = g.op("Transpose", [k], "k_t", perm=[0, 2, 3, 1])
    v = g.op("Transpose", [v], "v_t", perm=[0, 2, 1, 3])
    # SDPA's scale split over both factors, as torch's exporter writes it (same fp32 rounding).
    root_scale = float(np.float32(1.0 / np.sqrt(np.sqrt(shape.head_size))))
    q = g.op("Mul", [q, g.const(root_scale, np.float32)], "q_scaled")
    k = g.op("Mul", [k, g.const(root_scale, np.float32)], "k_scaled")
    scores = g.op("MatMul", [q, k], "scores")
    if additive is not None:
        scores = g.op("Add", [scores, additive], "masked_scores")
    probs = g.op("Softmax", [scores], "probs", axis=-1)
    if additive is not None:  # a row with every key masked is NaN after Softmax; SDPA makes it 0
        probs = g.op("Where", [g.op("IsNaN", [probs], "nan"), g.const([0.0], np.float32), probs], "probs")
    ctx = g.op("Transpose", [g.op("MatMul", [probs, v], "context")], "context_t", perm=[0, 2, 1, 3])
    # [B, S, H] from a shape computed at run time, as torch exports it (the graph stays the
    # export's op for op). With a constant target onnxruntime could infer the dims and fuse the
    # Add + LayerNormalization below into SkipLayerNormalization; served sessions leave that
    # fusion out anyway (scorer.encoder.DISABLED_FUSIONS).
    flat = g.op("Concat", [g.op("Shape", [x], "batch_seq", start=0, end=2), g.const([-1])], "flat_shape", axis=0)
    ctx = g.op("Reshape", [ctx, flat], "context_flat")
    attended = g.op("Add", [_linear(g, w, f"{att}output.dense.", ctx), x], "res")
    x = _layer_norm(g, w, f"{att}output.LayerNorm.", attended, shape)
    inner = _linear(g, w, prefix + "intermediate.dense.", x)
    erf = g.op("Erf", [g.op("Div", [inner, g.const(float(np.float32(np.sqrt(2.0))), np.float32)], "gelu_div")], "erf")
    gelu = g.op("Mul", [inner, g.op("Add", [erf, g.const(1.0, np.float32)], "erf1")], "gelu_mul")
    gelu = g.op("Mul", [gelu, g.const(0.5, np.float32)], "gelu")
    out = g.op("Add", [_linear(g, w, prefix + "output.dense.", gelu), x], "res")
    return _layer_norm(g, w, prefix + "output.LayerNorm.", out, shape)


def _masked_mean(g: _Graph, hidden: str) -> str:
    m = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const([-1])], "mask3d")], "mask_f", to=FLOAT)
    axis = g.const([1])
    summed = g.op("ReduceSum", [g.op("Mul", [hidden, m], "masked"), axis], "sum", keepdims=0)
    counts = g.op("Clip", [g.op("ReduceSum", [m, axis], "count", keepdims=0), g.const(1e-9, np.float32)], "count")
    return g.op("Div", [summed, counts], "mean")


def _l2_normalise(g: _Graph, x: str, output_name: str) -> None:
    """``torch.nn.functional.normalize(x, p=2, dim=1)``: ``x / max(||x||, 1e-12)``."""
    norm = g.op("ReduceL2", [x], "norm", axes=[1], keepdims=1)
    norm = g.op("Clip", [norm, g.const(1e-12, np.float32)], "norm")
    g.nodes.append(helper.make_node("Div", [x, norm], [output_name]))
