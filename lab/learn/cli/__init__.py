"""``ferryman learn retrain|promote|rollback|versions|curve`` (the lab half; table in ``ferryman/learn.py``).

One module per subcommand, each with ``add_arguments(parser)`` and ``run(args)``; what they share
is here: the traffic and learner flags, the embedder, and one error boundary (bad input → exit 2
with a message, never a traceback). A scorer watching the router directory loads a promoted or
rolled-back version within its reload interval, without a restart (docs/artifacts.md, "Versions").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ferryman import paths
from lab.data.benchmarks import STRONG, WEAK
from lab.learn.gate import GateRule
from lab.learn.retrain import LearnConfig
from lab.learn.scoring import Embedder

GATE_REFUSED = 3  # exit code of `promote` when the gate keeps the serving version


def embedder_args(p: argparse.ArgumentParser) -> None:
    """Where the encoder and the embedding cache are, and progress output."""
    p.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder (make setup)")
    p.add_argument("--cache-dir", type=Path, default=paths.cache_dir(), help="embedding cache")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _router_dir(text: str) -> Path:
    """An ``argparse`` type: a router's directory, i.e. one holding its base artifact's manifest (was: a missing
    directory listed no versions and exit 0, and `rollback` said it was "already serving 'base'")."""
    from scorer.artifacts import MANIFEST_NAME

    path = Path(text)
    if not (path / MANIFEST_NAME).is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a router directory (no {MANIFEST_NAME}), e.g. routers/mf")
    return path


def router_dir_arg(p: argparse.ArgumentParser) -> None:
    """The router directory whose versions a command works on."""
    p.add_argument(
        "--router-dir",
        type=_router_dir,
        required=True,
        help="the router's directory, e.g. routers/mf (docs/artifacts.md)",
    )


def traffic_args(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The judged-traffic file and which pair in it (``defaults``: the benchmarks' pair)."""
    p.add_argument(
        "--traffic", type=Path, required=True, help="judged traffic, Arena 55k schema (.csv/.jsonl/.parquet)"
    )
    p.add_argument(
        "--strong",
        default=STRONG if defaults else None,
        required=not defaults,
        help="the traffic's strong model (a model_a/model_b name in the file); rows of other pairs are ignored",
    )
    p.add_argument("--weak", default=WEAK if defaults else None, required=not defaults, help="the traffic's weak model")
    p.add_argument(
        "--router-strong", default="", help="the router model the strong tier maps to (default: its default)"
    )
    p.add_argument("--router-weak", default="", help="the router model the weak tier maps to (default: its default)")


def learn_args(p: argparse.ArgumentParser) -> None:
    """The learner's settings (defaults chosen on the tuning sources, docs/learning.md)."""
    d = LearnConfig()
    p.add_argument("--l2", type=float, default=d.l2, help="penalty on the correction's embedding weights (mf prior)")
    p.add_argument(
        "--prior-l2", type=float, default=d.prior_l2, help="penalty pulling the prior's weight to 1 (mf prior)"
    )
    p.add_argument("--holdout", type=float, default=d.holdout, help="share of prompts held back for the gate")


def gate_args(p: argparse.ArgumentParser) -> None:
    """The promotion rule's settings (lab.learn.gate.GateRule); the defaults are the rule."""
    d = GateRule()
    p.add_argument("--resamples", type=int, default=d.resamples, help="paired bootstrap resamples of the gate")
    p.add_argument(
        "--level",
        type=float,
        default=d.level,
        help="interval level: promote only if the whole central interval of the gain is above 0",
    )
    p.add_argument(
        "--min-decisive", type=int, default=d.min_decisive, help="fewest non-tie held-back verdicts to decide on"
    )


def gate_rule(args: argparse.Namespace) -> GateRule:
    """The promotion rule the flags describe."""
    return GateRule(resamples=args.resamples, level=args.level, min_decisive=args.min_decisive)


def embedder(args: argparse.Namespace) -> Embedder:
    """The embedder the flags describe."""
    return Embedder(args.encoder_dir, args.cache_dir, progress=not args.quiet)


def config(args: argparse.Namespace) -> LearnConfig:
    """The learner settings the flags describe."""
    return LearnConfig(l2=args.l2, prior_l2=args.prior_l2, holdout=args.holdout)


def guarded(name: str, work: Callable[[], int]) -> int:
    """Run a subcommand with one BLAS thread; bad data, artifacts or settings → a message and exit 2."""
    from threadpoolctl import threadpool_limits

    from lab.data.report import DataError
    from scorer.errors import ArtifactError

    try:
        # One BLAS thread: the fits are small, and more threads only contend on a shared machine.
        with threadpool_limits(limits=1, user_api="blas"):
            return work()
    except (DataError, ArtifactError, ValueError) as exc:
        print(f"ferryman learn {name}: error: {exc}", file=sys.stderr)
        return 2
