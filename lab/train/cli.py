"""``ferryman train mf|sw|bert|crossfit``: train routers into artifact directories.

Training data: ``--battles FILE`` (Chatbot Arena 55k schema) and/or
``--golden mmlu,gsm8k`` (benchmark correctness labels). With golden labels,
``--exclude-folds folds.json --fold i`` leaves fold ``i`` out (cross-fitting);
``crossfit`` makes the folds and trains every fold's artifact in one go.
MT-Bench is never trained on. Each run is deterministic for a ``--seed`` and
prints its wall time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from lab.data.benchmarks import STRONG, WEAK, default_data_dir
from lab.train.bert import BertConfig
from lab.train.mf import MFConfig
from lab.train.sw import SWConfig
from scorer.artifacts import EncoderSpec

ROUTERS = ("mf", "sw", "bert")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--battles", type=Path, help="pairwise battles, Chatbot Arena 55k schema (.csv/.jsonl/.parquet)")
    p.add_argument("--golden", default="", help="benchmark labels to train on, e.g. mmlu,gsm8k (never mt-bench)")
    p.add_argument("--data-dir", type=Path, help="public data root or routellm-benchmarks (default $FERRYMAN_DATA)")
    p.add_argument("--seed", type=int, default=0, help="random seed (runs are deterministic for a seed)")
    p.add_argument("--strong", default=STRONG, help="default strong model of the artifact")
    p.add_argument("--weak", default=WEAK, help="default weak model of the artifact")
    p.add_argument("--encoder-dir", type=Path, default=Path("build/encoder"), help="ONNX encoder (make setup)")
    p.add_argument("--cache-dir", type=Path, default=Path("build/cache"), help="embedding cache")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime")
    p.add_argument("--max-tokens", type=int, default=EncoderSpec.max_tokens, help="encoder window (tokens)")
    p.add_argument("--head-tokens", type=int, default=EncoderSpec.head_tokens, help="tokens kept from the start")
    p.add_argument("--mf-dim", type=int, default=MFConfig.dim, help="MF: latent dimension")
    p.add_argument("--mf-epochs", type=int, default=MFConfig.epochs, help="MF: epochs")
    p.add_argument("--mf-lr", type=float, default=MFConfig.lr, help="MF: learning rate")
    p.add_argument(
        "--mf-battle-weight", type=float, default=MFConfig.battle_weight, help="MF: loss weight of --battles pairs"
    )
    p.add_argument(
        "--sw-weight-exponent",
        type=float,
        default=SWConfig.weight_exponent,
        help="SW: battle weight 10 * 10 ** (k * sim / max sim); 1 = RouteLLM, larger favours the nearest prompts",
    )
    p.add_argument(
        "--sw-projection-dim",
        type=int,
        default=SWConfig.projection_dim,
        help="SW: similarity in D PLS directions learnt from the strong-vs-weak labels (0 = raw embeddings, RouteLLM)",
    )
    p.add_argument(
        "--sw-top-k", type=int, default=SWConfig.top_k, help="SW: only the K most similar prompts' battles (0 = all)"
    )
    p.add_argument("--bert-layers", type=int, default=BertConfig.train_layers, help="BERT: top layers fine-tuned")
    p.add_argument(
        "--bert-epochs",
        type=int,
        default=BertConfig.epochs,
        help="BERT: fine-tuning epochs after the probe (0 = probe only)",
    )
    p.add_argument(
        "--bert-probe-c", type=float, default=BertConfig.probe_c, help="BERT: inverse L2 strength of the linear probe"
    )
    p.add_argument(
        "--bert-gsm8k-weight", type=float, default=BertConfig.gsm8k_weight, help="BERT: probe loss weight of GSM8K rows"
    )
    p.add_argument("--bert-lr", type=float, default=BertConfig.lr, help="BERT: learning rate of the layers")
    p.add_argument("--bert-batch", type=int, default=BertConfig.batch_size, help="BERT: batch size")
    p.add_argument(
        "--bert-max-rows", type=int, default=BertConfig.max_rows, help="BERT: fine-tuning rows (0 = all; CPU budget)"
    )
    p.add_argument("--bert-max-tokens", type=int, default=128, help="BERT: token window of its artifact")
    p.add_argument("--device", default="cpu", help="BERT: torch device (cpu, cuda)")
    p.add_argument("--no-build", action="store_true", help="BERT: write the delta only (ferryman build routers later)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ferryman train``."""
    parser.description = (
        "Train a router into an artifact directory the scorer loads (docs/artifacts.md). Data: --battles "
        "(Chatbot Arena 55k schema) and/or --golden mmlu,gsm8k (benchmark correctness labels; never mt-bench). "
        "`crossfit` writes k fold artifacts that each leave one fold of the golden prompts out. "
        "Run `ferryman train ROUTER --help` for a router's options."
    )
    sub = parser.add_subparsers(dest="router", required=True, metavar="{mf,sw,bert,random,crossfit}")
    for name in ROUTERS:
        p = sub.add_parser(name, help=f"train a {name} router", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        _data_args(p)
        p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
        p.add_argument("--name", help="router name in the manifest (default: the directory name)")
        p.add_argument("--exclude-folds", type=Path, help="folds.json (cross-fitting): leave --fold out")
        p.add_argument("--fold", type=int, help="fold to leave out of training")
    p = sub.add_parser("random", help="write the random baseline router (no training)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--name", help="router name in the manifest (default: the directory name)")
    p.add_argument("--seed", type=int, default=0, help="seed mixed into the prompt hash")
    p.add_argument("--strong", default=STRONG, help="default strong model of the artifact")
    p.add_argument("--weak", default=WEAK, help="default weak model of the artifact")
    p = sub.add_parser(
        "crossfit",
        help="make k folds and train every fold's artifact",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _data_args(p)
    p.add_argument("--out", type=Path, default=Path("build/crossfit"), help="writes <scheme>/folds.json + artifacts")
    p.add_argument("--schemes", default="prompt,subject", help="fold schemes (prompt, subject)")
    p.add_argument("--routers", default="mf,sw,bert", help="routers to cross-fit")
    p.add_argument("--k", type=int, default=5, help="number of folds")
    p.add_argument("--folds-only", action="store_true", help="only (re)make the folds.json files")


def _split(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise SystemExit(f"bad {what} {value!r}; choose from {', '.join(allowed)}")
    return names


def run(args: argparse.Namespace) -> int:
    if args.router == "random":
        from lab.train.jobs import Target, write_random_artifact

        write_random_artifact(Target(args.out, args.name or args.out.name, args.strong, args.weak, args.seed))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from lab.data.folds import FoldAssignment
    from lab.data.report import DataError
    from lab.train.data import load_training_data, parse_golden
    from lab.train.jobs import Target, train_bert_artifact, train_mf_artifact, train_sw_artifact
    from scorer.encoder import Encoder

    t0 = time.perf_counter()
    spec = EncoderSpec(max_tokens=args.max_tokens, head_tokens=args.head_tokens)
    mf_cfg = MFConfig(dim=args.mf_dim, epochs=args.mf_epochs, lr=args.mf_lr, battle_weight=args.mf_battle_weight)
    bert_cfg = BertConfig(
        train_layers=args.bert_layers,
        epochs=args.bert_epochs,
        lr=args.bert_lr,
        batch_size=args.bert_batch,
        max_rows=args.bert_max_rows,
        probe_c=args.bert_probe_c,
        gsm8k_weight=args.bert_gsm8k_weight,
    )
    bert_spec = EncoderSpec(max_tokens=args.bert_max_tokens, head_tokens=args.head_tokens)
    try:
        sw_cfg = SWConfig(
            weight_exponent=args.sw_weight_exponent, projection_dim=args.sw_projection_dim, top_k=args.sw_top_k
        )
        golden = parse_golden(args.golden)
        data_dir = args.data_dir or (default_data_dir() if golden else None)
        if args.router == "crossfit":
            from lab.train.crossfit import CrossfitPlan, run_crossfit

            plan = CrossfitPlan(
                out=args.out,
                schemes=_split(args.schemes, ("prompt", "subject"), "schemes"),
                routers=_split(args.routers, ROUTERS, "routers"),
                k=args.k,
                seed=args.seed,
                battles=args.battles,
                golden=golden,
                data_dir=data_dir,
                strong=args.strong,
                weak=args.weak,
                folds_only=args.folds_only,
                build_onnx=not args.no_build,
                sw=sw_cfg,
            )
            run_crossfit(
                plan, spec, bert_spec, mf_cfg, bert_cfg, args.encoder_dir, args.cache_dir, args.device, args.threads
            )
        else:
            exclude = FoldAssignment.load(args.exclude_folds) if args.exclude_folds else None
            data = load_training_data(
                battles=args.battles, golden=golden, data_dir=data_dir, exclude=exclude, fold=args.fold
            )
            print(f"training data: {data.provenance()}", flush=True)
            target = Target(args.out, args.name or args.out.name, args.strong, args.weak, args.seed)
            if args.router == "bert":
                train_bert_artifact(
                    data,
                    target,
                    bert_spec,
                    bert_cfg,
                    device=args.device,
                    build_onnx=not args.no_build,
                    cache_dir=args.cache_dir,
                )
            else:
                encoder = Encoder(args.encoder_dir, precision="int8", spec=spec, threads=args.threads)
                if args.router == "mf":
                    train_mf_artifact(data, target, encoder, mf_cfg, cache_dir=args.cache_dir)
                else:
                    train_sw_artifact(data, target, encoder, sw_cfg, cache_dir=args.cache_dir)
    except (ValueError, DataError) as exc:
        print(f"ferryman train: error: {exc}")
        return 2
    print(f"wall time: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0
