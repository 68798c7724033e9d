"""``ferryman learn curve``: the learning-curve simulation on a traffic file (docs/learning.md).

A fake judge answers from the file's labels; the product's own retraining runs after 0, 100, 300
and 1,000 judged samples (``--samples``), over ``--splits`` random splits, and its APGR on a fixed
test part is reported beside the shipped router's and random's, with the promotion gate's verdicts.
Writes ``--json`` and a PNG plot beside it, and prints progress.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ferryman import paths
from lab.learn import cli
from lab.learn.curve import CurvePlan, plot_curve, simulate
from lab.learn.traffic import load_traffic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    cli.traffic_args(parser, defaults=True)
    parser.add_argument("--json", type=Path, required=True, help="write the result here (a PNG plot beside it)")
    parser.add_argument("--png", type=Path, help="plot path (default: the --json path with .png)")
    parser.add_argument(
        "--shipped", type=Path, default=paths.routers_dir() / "mf", help="the shipped router (an mf artifact)"
    )
    parser.add_argument("--samples", default="0,100,300,1000", help="judged-sample counts to retrain at")
    parser.add_argument("--splits", type=int, default=10, help="random splits (test part / judging order)")
    parser.add_argument("--test-size", type=int, default=0, help="test part (0: min(3000, samples - largest count))")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first split")
    parser.add_argument("--title", default="", help="plot title (default: the traffic file's name)")
    cli.learn_args(parser)
    cli.gate_args(parser)
    cli.embedder_args(parser)


def run(args: argparse.Namespace) -> int:
    return cli.guarded("curve", lambda: _curve(args))


def _curve(args: argparse.Namespace) -> int:
    config = cli.config(args)
    embedder = cli.embedder(args)
    try:
        samples = tuple(int(x) for x in args.samples.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--samples must be comma-separated counts, got {args.samples!r}") from None
    plan = CurvePlan(
        samples=samples,
        splits=args.splits,
        test_size=args.test_size,
        seed=args.seed,
        gate=cli.gate_rule(args),
    )
    traffic = load_traffic(args.traffic, args.strong, args.weak)
    print(traffic.summary(), file=sys.stderr, flush=True)
    result = simulate(
        traffic,
        args.shipped,
        embedder,
        config,
        plan,
        router_strong=args.router_strong,
        router_weak=args.router_weak,
        progress=not args.quiet,
    )
    result["traffic"] = str(args.traffic)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    png = args.png or args.json.with_suffix(".png")
    plot_curve(result, png, args.title or f"{args.traffic.name}: retraining on judged traffic")
    print(f"shipped {result['shipped_apgr']:.4f}, random {result['random_apgr']:.4f}")
    for point in result["curve"]:
        print(
            f"{point['samples']:>5} judged: APGR {point['apgr']:.4f} ± {point['sd']:.4f} "
            f"(shipped {point['gain_over_shipped']:+.4f} ± {point['gain_sd']:.4f}); served {point['served_apgr']:.4f}; "
            f"judged-only LR {point['judged_only_apgr']:.4f}; "
            f"promoted in {point['promoted']}/{result['splits']} splits, "
            f"{point['promoted_not_better']} of them not better on the test part"
        )
    print(f"wrote {args.json} and {png}")
    return 0
