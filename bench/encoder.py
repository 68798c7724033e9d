"""``ferryman bench encoder``: encoder graph variants side by side (speed, fidelity, batch-mate independence).

Variants, all one sequence per ``session.run`` (what the scorer does for int8):

* ``current int8``: ``build/encoder/model.int8.onnx`` as shipped (SDPA trace, unfused, dynamic int8).
* ``unpadded int8``: ``build/encoder/model.int8.unpadded.onnx``, the same graph traced without an
  attention mask, which the scorer uses for every one-sequence run (timed one per run and checked
  for fidelity; it cannot run padded batches, so it has no bucketed or batch-mate figures).
* ``opt int8``: eager-attention export fused by onnxruntime's transformer optimizer
  (``lab.train.export.optimize_bert``), then the same dynamic per-channel int8.
* ``opt int8 fp32-emb``: the same without quantising ``EmbedLayerNormalization`` (fp32 embedding tables).
* ``opt fp32``: the fused graph unquantised.
* ``current fp32``: ``build/encoder/model.fp32.onnx`` (unfused; also the fidelity reference).
* ``static int8`` (``--batch-independent``): the shipped fp32 graph statically quantised (QDQ,
  per-channel int8 weights, uint8 activations with MinMax scales calibrated once on MT-Bench and
  GSM8K prompts, not on the Arena prompts measured here), so no scale depends on the batch.
* ``nbits8 int8`` (``--batch-independent``): ``MatMulNBits`` 8-bit weights in blocks of 32 with
  int8 compute (``accuracy_level=4``: activations quantised per row and block), also batch-independent.

With a batch-independent graph the scorer could batch a busy queue's prompts grouped by length
(``scorer.encoder.length_buckets``) without any score depending on its batch mates, so each
variant is also timed that way (arrival chunks of ``--max-batch`` prompts, buckets of similar
length, 1 thread) next to one sequence per run, with the drift of a bucketed embedding from alone.

Timing runs every variant over the same pre-tokenized prompts at each intra-op thread count,
in ``--rounds`` rounds with the variant order rotated each round, so other load on the machine
hits all variants alike. Fidelity is the cosine of each variant's embeddings against the
unfused fp32 reference (``build/encoder/model.fp32.onnx``). Batch-mate independence is the
largest change of an embedding when a prompt runs padded in a batch of ``--batch`` instead of alone.
Building the fused graphs needs the ``train`` extra (torch); they are kept in ``--work-dir``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.prompts import QUESTIONS, first_turns
from ferryman import paths
from scorer.artifacts import EncoderSpec
from scorer.encoder import (
    TOKENIZER_FILE,
    Batch,
    WordpieceTokenizer,
    feeds,
    length_buckets,
    make_session,
    model_file,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="built encoder")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("build/encoder-variants"), help="where the fused graphs are written"
    )
    parser.add_argument("--prompts", type=Path, default=QUESTIONS, help="JSONL with a 'turns' list per line")
    parser.add_argument("--limit", type=int, default=300, help="prompts used (first turns)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts to time")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the batch-mate check")
    parser.add_argument("--max-batch", type=int, default=64, help="arrival chunk of the length-bucketed timing")
    parser.add_argument(
        "--batch-independent",
        action="store_true",
        help="also build and time static int8 and MatMulNBits int8 graphs (needs onnx and onnx_ir)",
    )
    parser.add_argument(
        "--calibration-dir",
        type=Path,
        default=QUESTIONS.parents[1] / "routellm-benchmarks",
        help="RouteLLM benchmarks folder whose MT-Bench and GSM8K prompts calibrate the static int8 graph",
    )


def build_variants(work: Path) -> dict[str, Path]:
    """Export (eager attention), fuse and quantise into ``work``; reuses files already there."""
    from lab.train.export import export_onnx, load_base_encoder, optimize_bert, pooled_module, quantize_int8

    work.mkdir(parents=True, exist_ok=True)
    raw, fp32, int8 = work / "eager.fp32.onnx", work / "opt.fp32.onnx", work / "opt.int8.onnx"
    int8_emb = work / "opt.int8-fp32emb.onnx"
    if not raw.is_file():
        export_onnx(pooled_module(load_base_encoder("eager")), raw, "embedding")
    if not fp32.is_file():
        print("fusions:", optimize_bert(raw, fp32), flush=True)
    if not int8.is_file():
        quantize_int8(fp32, int8)
    if not int8_emb.is_file():
        quantize_int8(fp32, int8_emb, op_types=["MatMul", "Attention"])
    return {"opt int8": int8, "opt int8 fp32-emb": int8_emb, "opt fp32": fp32}


def calibration_texts(bench_dir: Path, gsm8k: int = 100) -> list[str]:
    """MT-Bench turns and the first ``gsm8k`` GSM8K prompts: varied, and disjoint from the Arena prompts timed here."""
    import csv
    import json

    with (bench_dir / "mt_bench" / "question.jsonl").open(encoding="utf-8") as fh:
        texts = [t for line in fh if line.strip() for t in json.loads(line)["turns"]]
    with (bench_dir / "gsm8k" / "gsm8k_responses.csv").open(encoding="utf-8", newline="") as fh:
        texts += [row["prompt"] for _, row in zip(range(gsm8k), csv.DictReader(fh), strict=False)]
    return texts


def build_batch_independent(src: Path, work: Path, tok: WordpieceTokenizer, calib_dir: Path) -> dict[str, Path]:
    """Int8 graphs whose quantisation scales do not depend on the batch; reuses files already in ``work``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work.mkdir(parents=True, exist_ok=True)
    pre, static, nbits = work / "pre.fp32.onnx", work / "static.int8.onnx", work / "nbits8-b32.onnx"
    if not static.is_file():
        texts = iter(calibration_texts(calib_dir))

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def get_next(self) -> dict[str, np.ndarray] | None:
                text = next(texts, None)
                if text is None:
                    return None
                b = tok.batch([text])
                return {
                    "input_ids": b.input_ids,
                    "attention_mask": b.attention_mask,
                    "token_type_ids": b.token_type_ids,
                }

        if not pre.is_file():
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(static),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True},
        )
    if not nbits.is_file():
        import onnx
        from onnxruntime.quantization import matmul_nbits_quantizer as mnb

        cfg = mnb.DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=8)
        quantizer = mnb.MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=cfg)
        quantizer.process()
        quantizer.model.save_model_to_file(str(nbits), use_external_data_format=False)
    return {"static int8": static, "nbits8 int8": nbits}


def bucketed_plan(seqs: Sequence[Sequence[int]], chunk: int) -> list[list[int]]:
    """What a busy queue would run: arrival chunks of ``chunk`` prompts, each grouped by length."""
    plan = []
    for start in range(0, len(seqs), chunk):
        idx = range(start, min(start + chunk, len(seqs)))
        plan += [[idx[j] for j in b] for b in length_buckets([len(seqs[i]) for i in idx], chunk)]
    return plan


def embed_plan(
    session: ort.InferenceSession, tok: WordpieceTokenizer, seqs: Sequence[Sequence[int]], plan: list[list[int]]
) -> tuple[np.ndarray, float]:
    """Embeddings of every prompt run in the plan's batches, and the seconds it took."""
    out = np.zeros((len(seqs), 384), dtype=np.float32)
    t0 = time.perf_counter()
    for b in plan:
        out[b] = run_one(session, tok.pad([seqs[i] for i in b]))
    return out, time.perf_counter() - t0


def takes_mask(session: ort.InferenceSession) -> bool:
    """Whether a graph takes an attention mask (the unpadded graph does not, and cannot run padded batches)."""
    return "attention_mask" in {i.name for i in session.get_inputs()}


def run_one(session: ort.InferenceSession, batch: Batch) -> np.ndarray:
    names = {i.name for i in session.get_inputs()}
    if "attention_mask" not in names and not batch.attention_mask.all():
        raise ValueError("a graph without attention_mask cannot run a padded batch")
    return np.asarray(session.run(None, feeds(batch, names))[0], dtype=np.float32)


def embed_each(session: ort.InferenceSession, batches: Sequence[Batch]) -> tuple[np.ndarray, list[float]]:
    """Embeddings of one-sequence batches and each run's latency in seconds."""
    out, lat = [], []
    for b in batches:
        t0 = time.perf_counter()
        out.append(run_one(session, b)[0])
        lat.append(time.perf_counter() - t0)
    return np.stack(out), lat


def batch_mate_drift(
    session: ort.InferenceSession, tok: WordpieceTokenizer, seqs: Sequence[Sequence[int]], size: int
) -> float:
    """Max abs change of an embedding run in a padded batch of ``size`` instead of alone."""
    worst = 0.0
    for start in range(0, len(seqs), size):
        group = seqs[start : start + size]
        together = run_one(session, tok.pad(group))
        alone = np.stack([run_one(session, tok.pad([s]))[0] for s in group])
        worst = max(worst, float(np.abs(together - alone).max()))
    return worst


def run(args: argparse.Namespace) -> int:
    tok = WordpieceTokenizer(args.encoder_dir / TOKENIZER_FILE, EncoderSpec())
    seqs = tok.ids(first_turns(args.prompts)[: args.limit])
    singles = [tok.pad([s]) for s in seqs]
    print(f"{len(seqs)} prompts, mean {statistics.mean(map(len, seqs)):.1f} tokens, max {max(map(len, seqs))}")
    unpadded = args.encoder_dir / model_file("int8", unpadded=True)
    paths = {
        "current int8": args.encoder_dir / model_file("int8"),
        **({"unpadded int8": unpadded} if unpadded.is_file() else {}),
        **build_variants(args.work_dir),
        "current fp32": args.encoder_dir / model_file("fp32"),
    }
    if args.batch_independent:
        paths |= build_batch_independent(
            args.encoder_dir / model_file("fp32"), args.work_dir, tok, args.calibration_dir
        )
    names = list(paths)
    threads = [int(t) for t in args.threads.split(",")]

    ref, _ = embed_each(make_session(args.encoder_dir / model_file("fp32"), 1), singles)
    sessions = {(n, t): make_session(paths[n], t) for n in names for t in threads}
    for s in sessions.values():  # warm-up
        run_one(s, singles[0])
    totals: dict[tuple[str, int], list[float]] = {k: [] for k in sessions}
    lats: dict[tuple[str, int], list[float]] = {k: [] for k in sessions}
    embeds: dict[str, np.ndarray] = {}
    plan = bucketed_plan(seqs, args.max_batch)
    bucketed: dict[str, list[float]] = {n: [] for n in names}
    bucket_drift: dict[str, float] = {}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for t in threads:
            for n in order:
                emb, lat = embed_each(sessions[(n, t)], singles)
                embeds.setdefault(n, emb)
                totals[(n, t)].append(sum(lat))
                lats[(n, t)].extend(lat)
        for n in order:
            if not takes_mask(sessions[(n, threads[0])]):
                continue
            emb, seconds = embed_plan(sessions[(n, threads[0])], tok, seqs, plan)
            bucketed[n].append(seconds)
            bucket_drift[n] = float(np.abs(emb - embeds[n]).max())
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    print(f"\nspeed: one sequence per run, {len(seqs)} prompts per pass, median of {args.rounds} interleaved passes")
    print(f"{'variant':<19}{'threads':>8}{'pass s':>9}{'prompts/s':>11}{'p50 ms':>8}{'p90 ms':>8}{'vs current':>12}")
    for t in threads:
        base = statistics.median(totals[("current int8", t)])
        for n in names:
            med = statistics.median(totals[(n, t)])
            p50, p90 = np.percentile(lats[(n, t)], [50, 90]) * 1e3
            print(f"{n:<19}{t:>8}{med:>9.3f}{len(seqs) / med:>11.1f}{p50:>8.2f}{p90:>8.2f}{base / med:>11.2f}x")

    padded = sum(len(b) * max(len(seqs[i]) for i in b) for b in plan)
    print(
        f"\nlength-bucketed batches: {len(plan)} runs for {len(seqs)} prompts (arrival chunks of {args.max_batch}, "
        f"{padded / sum(map(len, seqs)) - 1:.1%} padding), {threads[0]} thread(s), median of {args.rounds} passes"
    )
    head = f"{'variant':<19}{'prompts/s':>11}{'vs its one-per-run':>20}"
    print(f"{head}{'vs current int8 one-per-run':>29}{'max drift':>11}")
    base = statistics.median(totals[("current int8", threads[0])])
    for n in names:
        if not bucketed[n]:
            print(f"{n:<19}{'n/a (takes no attention mask, cannot pad)':>40}")
            continue
        med = statistics.median(bucketed[n])
        own = statistics.median(totals[(n, threads[0])])
        print(f"{n:<19}{len(seqs) / med:>11.1f}{own / med:>19.2f}x{base / med:>28.2f}x{bucket_drift[n]:>11.2e}")

    print("\nfidelity: cosine vs unfused fp32 reference (embeddings are unit vectors)")
    for n in names:
        cos = np.sum(embeds[n] * ref, axis=1)
        print(f"{n:<19} min {cos.min():.5f}  mean {cos.mean():.5f}  p1 {np.percentile(cos, 1):.5f}")

    print(f"\nbatch-mate independence: max |batched({args.batch}, padded) - alone| over {len(seqs)} prompts, 1 thread")
    for n in names:
        session = sessions[(n, 1)] if 1 in threads else make_session(paths[n], 1)
        if not takes_mask(session):
            print(f"{n:<19} n/a (takes no attention mask: one unpadded sequence per run)")
            continue
        print(f"{n:<19} {batch_mate_drift(session, tok, seqs, args.batch):.2e}")
    return 0
