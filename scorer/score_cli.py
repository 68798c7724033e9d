"""``ferryman score``: score prompts locally (no server) and print JSON, one object per prompt.

It runs the same scoring plane as the gRPC server (``scorer.plane.ScoringPlane``: validation,
queuing, batching, scoring), in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

from ferryman import paths
from scorer.batching import BatchingConfig
from scorer.core import ScoreQuery, ScorerCore, ScoreResult
from scorer.errors import ScorerError
from scorer.plane import ScoringPlane


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompts", nargs="+", help="prompt text(s) to score")
    parser.add_argument("--router", default="mf", help="router name")
    parser.add_argument("--strong", default="", help="strong model (default: the router's default pair)")
    parser.add_argument("--weak", default="", help="weak model (default: the router's default pair)")
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="router artifacts directory")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder directory")
    parser.add_argument("--encoder-precision", choices=["int8", "fp32"], default="int8", help="encoder graph")


async def _score(core: ScorerCore, queries: list[ScoreQuery]) -> list[ScoreResult]:
    plane = ScoringPlane(core, BatchingConfig())
    plane.start()
    try:
        return await plane.score_batch(queries)
    finally:
        await plane.close()


def run(args: argparse.Namespace) -> int:
    try:
        core = ScorerCore.load(args.routers_dir, args.encoder_dir, precision=args.encoder_precision, only=[args.router])
        queries = [ScoreQuery(args.router, p, strong_model=args.strong, weak_model=args.weak) for p in args.prompts]
        results = asyncio.run(_score(core, queries))
    except ScorerError as exc:
        print(f"ferryman score: error: {exc}", file=sys.stderr)
        return 2
    for prompt, res in zip(args.prompts, results, strict=True):
        print(json.dumps({"prompt": prompt, **dataclasses.asdict(res)}))
    return 0
