"""What the learning-curve studies share (gate, penalty and mix studies): their common flags, setup and output.

Each study reads ``make learn-curve``'s rows (``<learn-dir>/<row>.csv`` and the prior
``<learn-dir>/mf-without-<row>``), runs the curve's splits, and writes one JSON report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ferryman import paths
from lab.learn.curve import CurvePlan
from lab.learn.scoring import Embedder


def study_args(p: argparse.ArgumentParser, *, json_help: str, rows: str, rows_help: str) -> None:
    """The flags every study takes: the report, the rows, where they live, the splits, the encoder."""
    p.add_argument("--json", type=Path, required=True, help=json_help)
    p.add_argument("--learn-dir", type=Path, default=Path("build/learn"), help="make learn-curve's traffic and priors")
    p.add_argument("--rows", default=rows, help=f"{rows_help} (comma-separated)")
    p.add_argument("--splits", type=int, default=10, help="random splits, as the learning curve")
    p.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir())
    p.add_argument("--cache-dir", type=Path, default=paths.cache_dir())


def study_setup(args: argparse.Namespace) -> tuple[CurvePlan, Embedder, list[str]]:
    """(the curve's plan with ``--splits``, an embedder on the cache, the ``--rows``)."""
    plan = CurvePlan(splits=args.splits)
    embedder = Embedder(args.encoder_dir, args.cache_dir, progress=False)
    return plan, embedder, [r for r in args.rows.split(",") if r]


def write_report(path: Path, result: dict[str, Any]) -> None:
    """Write the study's JSON report and say where (with its ``wall_s``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} in {result['wall_s']} s")
