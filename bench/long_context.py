"""``ferryman bench long-context``: what the length head's clamp does to long-context prompts.

The benchmark mix (``bench.prompts.prompt_mix``) is scored by each router through the scorer's
BatchScore RPC (an in-process scorer on loopback over the artifacts, as ``lab.eval.scoring`` does
for every evaluation). The served win rate carries the clamped head (``scorer.routers.length_head``);
from it, per prompt, ``logit - beta * clamp(z)`` is the router without its head and
``logit - beta * clamp(z) + beta * z`` the head unclamped. Per router it prints: prompts whose
``|z|`` exceeds the clamp, the mean long-context win rate without head / unclamped / clamped, the
largest change the clamp makes on one prompt, and how many long-context prompts go strong at the
thresholds the artifact's calibration gives for each ``--shares`` target (``ferryman.calibration``).
This lives in ``bench/`` because the mix does (the lab may not import the benchmarks).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.prompts import prompt_mix
from ferryman import paths
from lab.data.benchmarks import STRONG, WEAK, DataError, default_data_dir
from lab.eval.scoring import ScorerClient, local_scorer
from scorer.artifacts import MANIFEST_NAME, load_artifact
from scorer.routers import length_head
from scorer.routers.base import logit, sigmoid
from scorer.routers.length_head import Z_LIMIT, LengthHead

DEFAULT_ROUTERS = ("mf", "sw", "bert")


@dataclass(frozen=True)
class RouterRow:
    """One router's figures on the mix's long-context prompts (and the clamp's reach on the rest)."""

    router: str
    head: dict[str, float] | None
    long_prompts: int
    touched_long: int
    touched_other: int
    mean_no_head: float
    mean_unclamped: float
    mean_clamped: float
    max_change_long: float
    max_change_other: float
    lowest_clamped: float
    thresholds: dict[str, float]  # share -> threshold
    strong_unclamped: dict[str, int]  # share -> long-context prompts at or above its threshold
    strong_clamped: dict[str, int]
    strong_no_head: dict[str, int]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ferryman bench long-context``."""
    parser.description = __doc__.split("\n\n", 1)[1].replace("``", "") if __doc__ else None
    parser.add_argument("--routers", nargs="+", default=list(DEFAULT_ROUTERS), help="routers in --routers-dir")
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="router artifacts")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder")
    parser.add_argument("--data-dir", type=Path, help="public data (default: $FERRYMAN_DATA or ../shared/data)")
    parser.add_argument("--mix-size", type=int, default=400, help="prompts in the mix")
    parser.add_argument("--long-share", type=float, default=0.25, help="share of long-context prompts in the mix")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mix")
    parser.add_argument(
        "--shares", type=float, nargs="+", default=[0.1, 0.3], help="target strong shares whose thresholds to apply"
    )
    parser.add_argument("--threads", type=int, default=2, help="ONNX threads of the in-process scorer")
    parser.add_argument("--out", type=Path, help="also write the table and figures to OUT.md and OUT.json")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def router_row(
    router: str,
    head: LengthHead | None,
    thresholds: dict[str, float],
    served: np.ndarray,
    texts: Sequence[str],
    long: np.ndarray,
) -> RouterRow:
    """The figures of one router from its served (clamped-head) win rates on ``texts``; ``long`` marks long-context."""
    if head is None:
        z = np.zeros(len(texts))
        no_head = unclamped = served
    else:
        z = head.z(texts)
        base = logit(served) - head.shift(texts)
        no_head, unclamped = sigmoid(base), sigmoid(base + head.beta * z)
    touched = np.abs(z) > Z_LIMIT
    change = np.abs(unclamped - served)

    def strong(rates: np.ndarray) -> dict[str, int]:
        return {s: int((rates[long] >= t).sum()) for s, t in thresholds.items()}

    def top(values: np.ndarray) -> float:
        return float(values.max()) if values.size else 0.0

    return RouterRow(
        router=router,
        head=head.to_params() if head is not None else None,
        long_prompts=int(long.sum()),
        touched_long=int(touched[long].sum()),
        touched_other=int(touched[~long].sum()),
        mean_no_head=float(no_head[long].mean()),
        mean_unclamped=float(unclamped[long].mean()),
        mean_clamped=float(served[long].mean()),
        max_change_long=top(change[long]),
        max_change_other=top(change[~long]),
        lowest_clamped=float(served[long].min()),
        thresholds=thresholds,
        strong_unclamped=strong(unclamped),
        strong_clamped=strong(served),
        strong_no_head=strong(no_head),
    )


def markdown(rows: Sequence[RouterRow], shares: Sequence[str], n_other: int) -> str:
    """The table: one line per router."""
    head = "| router | clamp touches (long / other) | mean win rate, long: no head / unclamped / clamped "
    head += "| max change on one prompt (long / other) | lowest clamped "
    head += "".join(f"| {float(s):.0%} share: threshold, long strong unclamped / clamped / no head " for s in shares)
    lines = [head + "|", "|" + " --- |" * (5 + len(shares))]
    for r in rows:
        cells = [
            r.router,
            f"{r.touched_long}/{r.long_prompts} / {r.touched_other}/{n_other}",
            f"{r.mean_no_head:.3f} / {r.mean_unclamped:.3f} / {r.mean_clamped:.3f}",
            f"{r.max_change_long:.3f} / {r.max_change_other:.3f}",
            f"{r.lowest_clamped:.3f}",
        ]
        cells += [
            f"{r.thresholds[s]:.3f}: {r.strong_unclamped[s]} / {r.strong_clamped[s]} / {r.strong_no_head[s]}"
            for s in shares
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        data_dir = args.data_dir or default_data_dir()
    except DataError as exc:
        print(f"ferryman bench long-context: {exc}", file=sys.stderr)
        return 2
    mix = prompt_mix(data_dir, args.mix_size, long_share=args.long_share, seed=args.seed)
    texts = [p.text for p in mix]
    long = np.array([p.kind == "long-context" for p in mix])
    if not long.any():
        print("ferryman bench long-context: the mix has no long-context prompt (--long-share)", file=sys.stderr)
        return 2
    shares = [str(s) for s in args.shares]
    artifacts = {name: args.routers_dir / name for name in args.routers}
    heads: dict[str, LengthHead | None] = {}
    thresholds: dict[str, dict[str, float]] = {}
    served_as: dict[str, str] = {}  # directory -> the name the scorer serves it under (its manifest's)
    for name, path in artifacts.items():
        manifest = load_artifact(path).manifest
        served_as[name] = manifest.name
        heads[name] = length_head.parse(manifest.params, path / MANIFEST_NAME)
        if manifest.calibration is None:
            print(f"ferryman bench long-context: {path / MANIFEST_NAME} has no calibration table", file=sys.stderr)
            return 2
        thresholds[name] = {s: manifest.calibration.threshold_for(float(s)) for s in shares}
    with (
        local_scorer(artifacts, args.encoder_dir, threads=args.threads) as target,
        ScorerClient(target, strong=STRONG, weak=WEAK) as client,
    ):
        items = [(served_as[name], str(i), text) for name in artifacts for i, text in enumerate(texts)]
        scores = client.score(items, label="long-context", progress=not args.quiet).reshape(len(artifacts), -1)
    rows = [router_row(name, heads[name], thresholds[name], scores[k], texts, long) for k, name in enumerate(artifacts)]
    n_other = int((~long).sum())
    table = markdown(rows, shares, n_other)
    what = f"prompt_mix(data, {args.mix_size}, long_share={args.long_share}, seed={args.seed}): "
    what += f"{int(long.sum())} long-context prompts, {n_other} other; routers from {args.routers_dir}"
    print(what)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(f"{what}\n\n{table}\n", encoding="utf-8")
        report = {"mix": what, "routers": [asdict(r) for r in rows]}
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
