"""``ferryman data``: data conversions for the lab.

``ferryman data arena --benchmark mmlu --out FILE.csv`` writes a benchmark's
correctness labels as battles in the Chatbot Arena 55k schema (see
:mod:`lab.data.arena`), e.g. to simulate a user's judged traffic from a source a
router never trained on (``ferryman learn curve --traffic FILE``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ferryman.cli import HelpFormatter
from lab.data.benchmarks import GOLDEN_BENCHMARKS, default_data_dir, load_benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ferryman data``."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="{arena}")
    p = sub.add_parser(
        "arena",
        help="write benchmark correctness labels as Arena 55k-schema battles (strong vs weak, one per prompt)",
        description=(
            "Write one battle per benchmark prompt between the benchmark's strong and weak model in the Chatbot "
            "Arena 55k schema (the model that alone was correct wins; both or neither: tie), contaminated prompts "
            "removed, with an extra `source` column (<benchmark>/<subject>). MT-Bench is never converted."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--benchmark", required=True, choices=GOLDEN_BENCHMARKS, help="benchmark to convert")
    p.add_argument("--data-dir", type=Path, help="public data root (default $FERRYMAN_DATA or ../shared/data)")
    p.add_argument("--subjects", default="", help="only these comma-separated groups (MMLU subjects)")
    p.add_argument("--folds", type=Path, help="a folds.json (ferryman train crossfit): keep only the prompts of --fold")
    p.add_argument("--fold", type=int, help="the fold of --folds to keep (e.g. held-out subjects)")
    p.add_argument(
        "--mix-in",
        default="",
        help="also write every prompt of these comma-separated benchmarks, not filtered by --subjects or --folds "
        "(traffic mixing kinds of prompts, e.g. --benchmark mmlu --folds F --fold 2 --mix-in gsm8k)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the per-prompt model_a/model_b order")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ferryman data``."""
    from lab.data.arena import arena_rows, check_benchmark, write_arena_csv
    from lab.data.folds import FoldAssignment
    from lab.data.report import DataError

    try:
        data_dir = args.data_dir or default_data_dir()
        mixed = _mix_in(args.mix_in, args.benchmark)
        items = load_benchmark(check_benchmark(args.benchmark), data_dir)
        wanted = {s.strip() for s in args.subjects.split(",") if s.strip()}
        if wanted:
            unknown = wanted - {it.group for it in items}
            if unknown:
                raise DataError(f"unknown {args.benchmark} subject(s): {', '.join(sorted(unknown))}")
            items = [it for it in items if it.group in wanted]
        if (args.folds is None) != (args.fold is None):
            raise ValueError("--folds and --fold go together")
        if args.folds is not None:
            folds = FoldAssignment.load(args.folds)
            if not 0 <= args.fold < folds.k:
                raise ValueError(f"--fold {args.fold} out of range for k={folds.k}")
            items = [it for it in items if folds.assignments.get(it.key) == args.fold]
        if not items:
            raise DataError("no prompts left to convert")
        for name in mixed:
            items = [*items, *load_benchmark(name, data_dir)]
        rows = arena_rows(items, seed=args.seed)
        write_arena_csv(args.out, rows)
    except (DataError, ValueError) as exc:
        print(f"ferryman data: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out not writable (was a traceback)
        print(f"ferryman data: error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} battles ({', '.join([args.benchmark, *mixed])}) to {args.out}")
    return 0


def _mix_in(spec: str, benchmark: str) -> list[str]:
    """``--mix-in``'s benchmarks: each a golden benchmark other than ``--benchmark``, at most once."""
    from lab.data.arena import check_benchmark

    names = [check_benchmark(s.strip().lower()) for s in spec.split(",") if s.strip()]
    if benchmark in names or len(set(names)) != len(names):
        raise ValueError(f"--mix-in {spec!r}: each benchmark once, and not --benchmark itself")
    return names
