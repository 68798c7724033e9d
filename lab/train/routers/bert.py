"""Training the bert kind: a linear probe (and optional fine-tuning) on the MiniLM encoder, stored as a delta."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lab.train.bert import (
    LABELS,
    BertConfig,
    FeatureSource,
    ServedFeatures,
    bert_groups,
    bert_labels,
    bert_weights,
    changed_layers,
    head_delta,
    probe_feature_source,
    probe_head,
    save_delta,
)
from lab.train.data import TrainingData
from lab.train.jobs import (
    ExampleInputs,
    Target,
    TrainContext,
    Trainer,
    report,
    require_data,
    settings_provenance,
    write_example,
)
from lab.train.output import provenance, write_artifact
from scorer.artifacts import DEFAULT_HEAD_PRECISION, HEAD_PRECISION_PARAM, EncoderSpec
from scorer.encoder import model_file

# A BERT artifact's graphs are named like the encoder's: masked, and the mask-free twin for unpadded runs.
ONNX_FILE = model_file("int8")
ONNX_UNPADDED_FILE = model_file("int8", unpadded=True)
VOCAB_SIZE = 30522  # all-MiniLM-L6-v2's wordpiece vocabulary


def train_bert_artifact(
    data: TrainingData,
    target: Target,
    spec: EncoderSpec,
    config: BertConfig,
    *,
    source: FeatureSource | None = None,
    device: str = "cpu",
    build_onnx: bool = True,
    cache_dir: Path | None = None,
    threads: int = 1,
) -> Path:
    """Probe + fine-tune, write ``delta.npz`` + manifest, then build the ONNX graph from base + delta.

    ``source`` is what the probe is fitted on (``lab.train.bert.probe_feature_source`` of ``config``,
    made here when not given): with ``config.probe_features = "served"`` the served graph's pooled
    vectors (no torch states needed); with ``"torch"`` a trainer, which may be built over a superset
    of the prompts to reuse its cached lower-layer states (cross-fitting trains k models on the same
    prompts); ``cache_dir`` keeps those states on disk between runs.
    """
    t0 = time.perf_counter()
    prompts, labels = bert_labels(data, target.strong, target.weak)
    weights = bert_weights(data, target.strong, target.weak, config)
    groups = bert_groups(data, target.strong, target.weak) if config.group_intercepts else None
    source = source or probe_feature_source(config, spec, prompts, cache_dir=cache_dir, threads=threads, device=device)
    if isinstance(source, ServedFeatures) != (config.probe_features == "served"):
        raise ValueError(f"probe_features = {config.probe_features!r} cannot be fitted on a {type(source).__name__}")
    if isinstance(source, ServedFeatures):
        weight, bias = probe_head(source.features(prompts), labels, prompts, config, weights, groups)
        delta = head_delta(weight, bias)
    else:
        if missing := [p for p in prompts if p not in source.index]:
            raise ValueError(f"{len(missing)} training prompts are not in the shared trainer's pool")
        module = source.train(prompts, labels, config, seed=target.seed, weights=weights, groups=groups)
        delta = source.delta(module, config)
    save_delta(target.out_dir / "delta.npz", delta)
    counts = np.bincount(labels, minlength=len(LABELS))
    prov = provenance(
        data.provenance(),
        seed=target.seed,
        wall_s=time.perf_counter() - t0,
        device=device,
        bert_rows=len(labels),
        bert_class_counts=",".join(f"{n}={c}" for n, c in zip(LABELS, counts, strict=True)),
        **settings_provenance(config),
    )
    write_artifact(
        target.out_dir,
        name=target.name,
        kind="bert",
        models=[target.strong, target.weak],
        strong=target.strong,
        weak=target.weak,
        committed={"delta": "delta.npz"},
        built={"onnx": ONNX_FILE, "onnx_unpadded": ONNX_UNPADDED_FILE},
        encoder=spec,
        prov=prov,
        params={
            "labels": list(LABELS),
            "tie_weight": 0.5,
            "train_layers": changed_layers(config),
            **({HEAD_PRECISION_PARAM: config.served_head} if config.served_head != DEFAULT_HEAD_PRECISION else {}),
        },
    )
    if build_onnx:
        from scorer.graphs.build import build_bert_graphs

        build_bert_graphs(target.out_dir, force=True)
    report("bert", target, t0)
    return target.out_dir


def _train(
    data: TrainingData | None, target: Target, spec: EncoderSpec, settings: BertConfig, ctx: TrainContext
) -> Path:
    data = require_data(data, "bert")
    # One feature source for every run of the series (lab.train.bert.probe_feature_source): the served
    # graph (one session; its vectors are cached on disk), or a trainer over the pool (every prompt of
    # the series), whose lower-layer states every run reuses.
    key = f"bert_{settings.probe_features}"
    source = ctx.shared.get(key)
    if source is None and (settings.probe_features == "served" or ctx.pool is not None):
        pool = bert_labels(ctx.pool, target.strong, target.weak)[0] if ctx.pool is not None else []
        source = ctx.shared[key] = probe_feature_source(
            settings, spec, pool, cache_dir=ctx.cache_dir, threads=ctx.threads, device=ctx.device
        )
    return train_bert_artifact(
        data,
        target,
        spec,
        settings,
        source=source,
        device=ctx.device,
        build_onnx=ctx.build_onnx,
        cache_dir=ctx.cache_dir,
    )


def _example(dest: Path, ex: ExampleInputs) -> None:
    """A tiny classifier with the real interface: embedding bag → masked mean → linear → 3 logits.

    Like a built BERT artifact it also has the mask-free twin (``files.onnx_unpadded``: a plain
    mean, no ``attention_mask`` input) that runs every batch without padding.
    """
    width = 8
    weights = {
        "table": ex.rng.normal(0, 1.0, (VOCAB_SIZE, width)).astype(np.float32),
        "head": ex.rng.normal(0, 1.0, (width, 3)).astype(np.float32),
        "bias": np.array([0.2, -0.4, 0.0], dtype=np.float32),
    }
    _save_tiny_bert(dest / "model.onnx", weights, masked=True)
    _save_tiny_bert(dest / "model.unpadded.onnx", weights, masked=False)
    params = {"labels": list(LABELS), "tie_weight": 0.5}
    files = {"onnx": "model.onnx", "onnx_unpadded": "model.unpadded.onnx"}
    write_example(dest, "bert", ex, files, models=(ex.strong, ex.weak), params=params, encoder=EncoderSpec())


def _save_tiny_bert(path: Path, weights: dict[str, np.ndarray], *, masked: bool) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if masked:
        pool = [
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
            helper.make_node("Max", ["count", "one"], ["safe"]),
            helper.make_node("Div", ["summed", "safe"], ["mean"]),
        ]
    else:
        pool = [helper.make_node("ReduceMean", ["tok"], ["mean"], axes=[1], keepdims=0)]  # opset 17: axes attribute
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tok"]),
        *pool,
        helper.make_node("Mul", ["mean", "gain"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "head"], ["proj"]),
        helper.make_node("Add", ["proj", "bias"], ["logits"]),
        # token_type_ids is part of the interface but unused by this tiny graph.
        helper.make_node("Shape", ["token_type_ids"], ["unused"]),
    ]
    constants: dict[str, np.ndarray] = {
        "axis2": np.array([2], dtype=np.int64),
        "axis1": np.array([1], dtype=np.int64),
        "one": np.array([1.0], dtype=np.float32),
        "gain": np.array([4.0], dtype=np.float32),
    }
    inits = [numpy_helper.from_array(v, k) for k, v in (weights | constants).items()]
    names = ("input_ids", "attention_mask", "token_type_ids") if masked else ("input_ids", "token_type_ids")
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names]
    out = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])]
    graph = helper.make_graph(nodes, "tiny_bert_router", ids, out, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


TRAINER = Trainer(
    kind="bert",
    settings=BertConfig,
    train=_train,
    example=_example,
    help="linear probe (then optional fine-tuning) of the MiniLM encoder on strong/tie/weak labels",
)
