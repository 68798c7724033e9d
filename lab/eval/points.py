"""``ferryman calibrate points``: a ``cost_share`` policy's ``operating_points``, fitted on your graded prompts.

The gateway meets a ``cost_share`` target with calibrated operating points (docs/gateway.md,
"Operating points"): the upper concave hull of the tier rule's operating points and the single
tiers on graded prompts, the two points around the target mixed at random. This command fits
them for one policy of a gateway configuration on a graded-prompts file (:data:`FORMAT`):

- the tiers, their prices (``gateway.tiers.relative_costs``: each tier's first model, input +
  output price, relative to the top tier's, as ``cost_share`` counts them), ``routing.tier_rule``
  and the policy's router come from the configuration (read by the gateway's own loader);
- every prompt is scored through the scorer's BatchScore RPC, top tier vs each lower tier, as the
  gateway asks (an in-process scorer over the router artifact, or a running one: ``--scorer``);
- the points are :func:`lab.eval.tier_metrics.hull_points` on all prompts; how they generalise is
  measured as ``ferryman eval --suite tiers`` does: the prompts split into two halves by a fixed
  hash of their text (:func:`~lab.eval.tier_metrics.half_of`), each half routed by the points
  fitted on the other (:func:`~lab.eval.tier_metrics.crossfit_points_curve`), the margin over
  random mixing of the single tiers with a 90 % paired bootstrap interval over prompts
  (:func:`~lab.eval.tier_metrics.bootstrap_margins`).

Prints a table and a YAML block to paste under the policy (``--out`` writes it; ``--plot`` draws
quality vs cost). The block is checked with the gateway's loader against the configuration before
it is printed, when it carries a ``cost_share``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import logging
import math
import os
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ferryman import paths
from ferryman.cli import HelpFormatter, int_at_least
from gateway.config import GatewayConfig, default_config_path, load_config, parse_config
from gateway.errors import ConfigError
from gateway.policy_config import TARGET_FIELDS
from gateway.scorer_client import last_user_turn
from gateway.tiers import Tiers, relative_costs
from gateway.types import Message
from lab.data.keys import prompt_key
from lab.data.report import DataError
from lab.eval.scoring import ScorerClient, ScorerUnreachableError, local_scorer
from lab.eval.tier_metrics import (
    CostCurve,
    HullPoint,
    bootstrap_margins,
    crossfit_points_curve,
    half_of,
    hull_points,
    log_grid,
    margin_over,
    mixing_hull,
    policy_prompt_curve,
)
from scorer.errors import ArtifactError

#: What the block replaces under the policy (``gateway.policy_config.TARGET_FIELDS``), as the paste line says it.
_REPLACES = "its threshold, strong_share, tier_shares, cost_share or cost_per_request_usd, and any expected_tokens"

#: Fewest prompts in each half: the held-out check needs prompts on both sides.
MIN_PER_HALF = 10

FORMAT = """\
graded prompts (--graded FILE): JSON Lines, one object per prompt, e.g.
  {"prompt": "Summarise this contract ...", "grades": {"small": 6, "medium": 8, "large": 9}}
  {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}],
   "grades": {"gpt-4o-mini": 7, "claude-haiku": 8, "gpt-4o": 9}}
- "prompt" (text) or "messages" (chat turns, each {"role", "content": text}): the router scores the
  last user turn, as the gateway does;
- "grades": a number per tier, higher is better, on any one scale for the whole file (a judge's 1-10,
  a pass rate, ...); a tier's grade is keyed by the tier's name or by its first model's name (the model
  that serves it and whose price counts); other keys are ignored. A row without a grade for some tier
  is skipped and counted; a malformed row stops the command, naming its line. Blank lines are skipped.

output: a table of how the points generalise (fitted on one half of the prompts, used on the other:
mean cost and grade, the margin over random mixing of the single tiers with a 90 % bootstrap interval)
and a YAML block; paste it under policies.<POLICY> of the gateway configuration (in place of its
threshold, strong_share, tier_shares, cost_share or cost_per_request_usd, and any expected_tokens;
calibration.online is not needed), then restart the gateway. The
points hold for this router artifact, these prices and traffic like these prompts: fit them again
after a retrain, a price change or when traffic changes (docs/gateway.md, "Operating points")."""


class _Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The command's help: real defaults (``HelpFormatter``) and the input format's layout kept."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ferryman calibrate points``."""
    parser.formatter_class = _Formatter
    parser.description = textwrap.fill(
        "Fit a cost_share policy's operating_points on your own graded prompts: the upper concave hull of the "
        "policy's tier rule and the single tiers, with tiers, prices, tier_rule and router read from the gateway "
        "configuration, and report how the points do on prompts they were not fitted on.",
        width=100,
    )
    parser.epilog = FORMAT
    parser.add_argument(
        "--config",
        type=Path,
        default=default_config_path(),
        help="gateway YAML configuration (env FERRYMAN_GATEWAY_CONFIG)",
    )
    parser.add_argument("--policy", required=True, help="the policy (policies.<NAME>) to fit points for")
    parser.add_argument("--graded", type=Path, required=True, help="graded prompts, JSON Lines (format below)")
    parser.add_argument(
        "--router-dir",
        type=Path,
        help="the policy's router artifact, scored in this process (default: <routers-dir>/<the policy's router>)",
    )
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="where router artifacts are")
    parser.add_argument("--scorer", metavar="ADDRESS", help="score with a running scorer instead (the router loaded)")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder")
    parser.add_argument(
        "--cost-share",
        type=float,
        help="the target to write beside the points (default: the policy's cost_share, if it has one)",
    )
    parser.add_argument("--out", type=Path, help="also write the YAML block to this file")
    parser.add_argument("--plot", type=Path, help="draw quality vs cost to this PNG (needs the lab extra)")
    parser.add_argument("--bootstrap", type=int_at_least(0), default=2000, help="bootstrap resamples of the intervals")
    parser.add_argument("--threads", type=int_at_least(1), default=2, help="ONNX threads of the in-process scorer")
    parser.add_argument("--batch-size", type=int_at_least(1), default=128, help="items per BatchScore request")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


# ---------------------------------------------------------------- the graded-prompts file


@dataclass(frozen=True)
class GradedPrompt:
    """One graded row: where it was, the text the router scores, and a grade per tier (cheapest first)."""

    line: int
    text: str
    grades: tuple[float, ...]


@dataclass(frozen=True)
class Graded:
    """The usable rows of a graded file, and how many rows lacked each tier's grade."""

    prompts: tuple[GradedPrompt, ...]
    rows: int
    missing: Mapping[str, int]

    def summary(self, path: Path) -> str:
        skipped = self.rows - len(self.prompts)
        text = f"{path}: {self.rows} rows, {len(self.prompts)} graded for every tier"
        if skipped:
            lacking = ", ".join(f"{tier} {n}" for tier, n in self.missing.items() if n)
            text += f"; {skipped} skipped for a missing grade (rows without: {lacking})"
        return text


def _text(where: str, row: Mapping[str, Any]) -> str:
    """The text the router scores: ``prompt``, or the last user turn of ``messages`` (``gateway.scorer_client``)."""
    if ("prompt" in row) == ("messages" in row):
        raise DataError(f'{where}: give exactly one of "prompt" (text) or "messages" (chat turns)')
    if "prompt" in row:
        text = row["prompt"]
        if not isinstance(text, str):
            raise DataError(f'{where}: "prompt" must be text, got {type(text).__name__}')
    else:
        raw = row["messages"]
        if not isinstance(raw, list):
            raise DataError(f'{where}: "messages" must be a list of {{"role", "content"}} turns')
        turns = []
        for i, turn in enumerate(raw):
            if not (
                isinstance(turn, dict) and isinstance(turn.get("role"), str) and isinstance(turn.get("content"), str)
            ):
                raise DataError(f'{where}: messages[{i}] must be {{"role": text, "content": text}}')
            turns.append(Message(turn["role"], turn["content"]))
        text = last_user_turn(tuple(turns))
    if not text.strip():
        raise DataError(f"{where}: no text to route on (an empty prompt, or no user turn with text)")
    return text


def _grade(where: str, grades: Mapping[str, Any], tier: str, model: str) -> float | None:
    """The tier's grade, keyed by its name or its first model's; None when neither is there."""
    given = [k for k in dict.fromkeys((tier, model)) if k in grades]
    if len(given) > 1:
        raise DataError(f"{where}: tier {tier!r} is graded twice (as {tier!r} and as its model {model!r}); keep one")
    if not given:
        return None
    value = grades[given[0]]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{where}: grades[{given[0]!r}] must be a finite number, got {json.dumps(value)}")
    return float(value)


def read_graded(path: Path, tiers: Tiers) -> Graded:
    """The rows of ``path`` (:data:`FORMAT`) graded for every tier; a malformed row raises ``DataError`` naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read graded prompts {path}: {exc}") from exc
    missing = dict.fromkeys(tiers.names, 0)
    prompts: list[GradedPrompt] = []
    rows = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f'{where}: expected an object {{"prompt" or "messages", "grades"}}')
        rows += 1
        text = _text(where, row)
        grades = row.get("grades")
        if not isinstance(grades, dict) or not grades:
            raise DataError(f'{where}: "grades" must be an object of tier (or model) name to number')
        found = [_grade(where, grades, t.name, t.models[0]) for t in tiers.ordered]
        for tier, value in zip(tiers.names, found, strict=True):
            missing[tier] += value is None
        if all(v is not None for v in found):
            prompts.append(GradedPrompt(number, text, tuple(v for v in found if v is not None)))
    graded = Graded(tuple(prompts), rows, missing)
    keys = ", ".join(f"{t.name!r} or {t.models[0]!r}" for t in tiers.ordered)
    if not prompts:
        raise DataError(f"{graded.summary(path)}: no row grades every tier (keys: {keys})")
    return graded


# ---------------------------------------------------------------- scoring


def score(
    target: str, router: str, tiers: Tiers, texts: Sequence[str], *, batch_size: int, progress: bool
) -> tuple[np.ndarray, str]:
    """Per prompt and lower tier, the top tier's win rate over it, as the gateway asks; and the artifact's version."""
    columns = []
    version = ""
    keys = [prompt_key(t) for t in texts]
    for strong, weak in tiers.pairs():
        with ScorerClient(target, strong=strong, weak=weak, batch_size=batch_size) as client:
            ref = client.ref(router)
            if (strong or weak) and (ref.strong, ref.weak) != (strong, weak):
                unknown = [m for m in (strong, weak) if m not in ref.models]
                raise DataError(
                    f"router {router!r} does not know {', '.join(unknown)} (it knows {', '.join(ref.models)}): "
                    "the tiers' router_model must be models the router was trained on"
                )
            version = ref.artifact_version or ref.version
            items = [(router, k, t) for k, t in zip(keys, texts, strict=True)]
            pair = f"{strong or 'default'} vs {weak or 'default'}"
            columns.append(client.score(items, label=f"{router}: {pair}", progress=progress))
    return np.stack(columns, axis=1), version


# ---------------------------------------------------------------- fitting and reporting


@dataclass(frozen=True)
class Fit:
    """Points fitted on all prompts and what the half-split says about them."""

    points: list[HullPoint]
    held_out: CostCurve
    rule: CostCurve
    mixing: CostCurve
    margin: float
    margin_at: float
    margin_interval: tuple[float, float]
    point_intervals: list[tuple[float, float]]
    halves: tuple[int, int]


def fit(scores: np.ndarray, quality: np.ndarray, cost: np.ndarray, kind: str, texts: Sequence[str], n: int) -> Fit:
    """Operating points on all prompts, and the same fit's held-out curve (each half routed by the other's)."""
    half = half_of([prompt_key(t) for t in texts])
    sizes = (int((half == 0).sum()), int((half == 1).sum()))
    if min(sizes) < MIN_PER_HALF:
        raise DataError(
            f"{len(texts)} graded prompts split into halves of {sizes[0]} and {sizes[1]}: the held-out check needs "
            f"at least {MIN_PER_HALF} in each; grade more prompts"
        )
    points = hull_points(scores, quality, cost, kind)
    crossed, _ = crossfit_points_curve(scores, quality, cost, kind, half)
    held = crossed.curve()
    mixing = mixing_hull(quality, cost)
    margin, where = margin_over(held, mixing, float(cost[0]), float(cost[-1]))
    at = [p.cost for p in points] + ([where] if not math.isnan(where) else [])
    intervals = bootstrap_margins(crossed, quality, cost, at, n=n) if n > 0 else np.full((2, len(at)), np.nan)
    pairs = [(float(lo), float(hi)) for lo, hi in intervals.T]
    nan = (float("nan"), float("nan"))
    return Fit(
        points=points,
        held_out=held,
        rule=policy_prompt_curve(scores, quality, cost, kind).curve(),
        mixing=mixing,
        margin=margin,
        margin_at=where,
        margin_interval=pairs[-1] if not math.isnan(where) else nan,
        point_intervals=pairs[: len(points)],
        halves=sizes,
    )


def _signed(x: float) -> str:
    return f"{round(x, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000" for a margin of zero


def _interval(pair: tuple[float, float]) -> str:
    lo, hi = pair
    return "[—]" if math.isnan(lo) else f"[{_signed(lo)}, {_signed(hi)}]"


def table(result: Fit, tiers: Tiers, cost: np.ndarray, quality: np.ndarray) -> str:
    """What the points buy: per point fitted on all prompts, in-sample and held out, against random mixing."""
    lines = [
        "| point (fitted on all prompts) | cost | grade on all prompts | held out: grade at this cost "
        "| random mixing at this cost | held-out margin [90 %] |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p, interval in zip(result.points, result.point_intervals, strict=True):
        name = f"tier {tiers.names[p.tier]}" if p.tier is not None else f"threshold {p.threshold:.6g}"
        held = result.held_out.at(p.cost)
        mixed = result.mixing.at(p.cost)
        lines.append(
            f"| {name} | {p.cost:.4f} | {p.quality:.3f} | {held:.3f} | {mixed:.3f} "
            f"| {_signed(held - mixed)} {_interval(interval)} |"
        )
    singles = ", ".join(
        f"{t} {c:.4f} / {q:.3f}" for t, c, q in zip(tiers.names, cost, quality.mean(axis=0), strict=True)
    )
    rule_margin, rule_at = margin_over(result.rule, result.mixing, float(cost[0]), float(cost[-1]))
    lines += [
        "",
        f"single tiers (cost / mean grade): {singles}",
        f"held out (halves of {result.halves[0]} and {result.halves[1]} prompts, each routed by the points fitted "
        "on the other): smallest margin over random mixing of the tiers "
        + (
            f"{_signed(result.margin)} {_interval(result.margin_interval)} grade points at cost {result.margin_at:.4f}"
            if not math.isnan(result.margin)
            else "— (no cost between the cheapest and the top tier)"
        ),
        "the rule alone on all prompts (one threshold, what online calibration routes by): smallest margin "
        + (f"{_signed(rule_margin)} at cost {rule_at:.4f}" if not math.isnan(rule_margin) else "—"),
        "A margin below 0 whose interval excludes 0: on prompts like these the points do worse than sending each "
        "request to a tier at random with fixed shares; more graded prompts narrow the intervals.",
    ]
    return "\n".join(lines)


def _number(x: float) -> str:
    return repr(float(x))


def _costs(points: Sequence[HullPoint]) -> list[float]:
    """The points' costs to six decimals where that keeps them rising strictly (the gateway's check), else exact."""
    short = [round(p.cost, 6) for p in points]
    return short if all(b > a for a, b in itertools.pairwise(short)) else [p.cost for p in points]


def points_yaml(points: Sequence[HullPoint], tiers: Tiers, cost_share: float | None, header: Sequence[str]) -> str:
    """The block to paste under the policy: ``cost_share`` (when known) and ``operating_points``."""
    lines = [f"# {h}" for h in header]
    if cost_share is not None:
        lines.append(f"cost_share: {_number(cost_share)}")
    lines.append("operating_points:")
    for p, c in zip(points, _costs(points), strict=True):
        which = f"tier: {tiers.names[p.tier]}" if p.tier is not None else f"threshold: {_number(p.threshold or 0.0)}"
        lines.append(f"  - {{cost: {_number(c)}, {which}}}")
    return "\n".join(lines) + "\n"


def check_pasted(config_path: Path, policy: str, block: str) -> None:
    """The configuration with ``block`` pasted under the policy, through the gateway's parser (ConfigError if not)."""
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    entry = {k: v for k, v in data["policies"][policy].items() if k not in TARGET_FIELDS}
    data["policies"][policy] = entry | yaml.safe_load(block)
    gateway_log = logging.getLogger("gateway")
    level = gateway_log.level
    gateway_log.setLevel(logging.ERROR)  # the loader's warnings about the configuration were said when it was read
    try:
        parse_config(data)
    finally:
        gateway_log.setLevel(level)


def plot(path: Path, result: Fit, tiers: Tiers, cost: np.ndarray, quality: np.ndarray, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.plot(
        *log_grid(result.mixing.cost, result.mixing.quality), "--", color="gray", label="random mixing of the tiers"
    )
    rule = log_grid(result.rule.cost, result.rule.quality)
    ax.plot(*rule, "-", color="tab:blue", alpha=0.5, label="the rule alone (all prompts)")
    xs, ys = [p.cost for p in result.points], [p.quality for p in result.points]
    ax.plot(*log_grid(xs, ys), "-", color="tab:green", label="operating points (fitted on all prompts)")
    ax.plot(xs, ys, "o", color="tab:green")
    held = log_grid(result.held_out.cost, result.held_out.quality)
    ax.plot(*held, "-", color="tab:red", label="points, held out (other half's fit)")
    means = quality.mean(axis=0)
    for name, c, q in zip(tiers.names, cost, means, strict=True):
        ax.scatter([c], [q], zorder=5, s=40, color="black")
        ax.annotate(name, (c, q), textcoords="offset points", xytext=(5, -12))
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per request, relative to the top tier (log)")
    ax.set_ylabel("mean grade")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- the command


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(f"[points] {msg}", file=sys.stderr, flush=True)


def check_outputs(out: Path | None, plot_to: Path | None) -> None:
    """Refuse ``--out`` / ``--plot`` paths that cannot be written, before the work (``DataError`` naming the flag)."""
    for flag, path in (("--out", out), ("--plot", plot_to)):
        if path is None:
            continue
        folder = path.parent
        if path.is_dir():
            raise DataError(f"{flag} {path}: is a directory; give a file name")
        if not folder.is_dir():
            raise DataError(f"{flag} {path}: there is no directory {folder}; create it or give another path")
        if not os.access(folder, os.W_OK):
            raise DataError(f"{flag} {path}: the directory {folder} is not writable; give another path")
    if plot_to is not None and importlib.util.find_spec("matplotlib") is None:
        raise DataError("--plot needs matplotlib, which comes with the lab extra (make setup-lab); leave --plot out")


def _policy(config: GatewayConfig, name: str) -> str:
    """The policy's router (an LLM router rates prompts with a model: no offline points)."""
    if name not in config.policies:
        raise ConfigError(f"policies.{name}: no such policy (policies: {', '.join(config.policies) or 'none'})")
    router = config.policies[name].router
    if router in config.llm_routers:
        raise ConfigError(f"policies.{name}: router {router!r} is an LLM router; fit points for a scorer router")
    return router


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ferryman calibrate points``."""
    started = time.perf_counter()
    try:
        check_outputs(args.out, args.plot)
        config = load_config(args.config)
        router = _policy(config, args.policy)
        tiers = config.tiers
        cost = np.array(relative_costs(tiers, config.models))
        if np.any(np.diff(cost) <= 0):
            raise ConfigError(
                "tiers: operating points need each tier's first model to cost more than the tier below's "
                "(price in + out)"
            )
        kind = config.routing.tier_rule
        cost_share = args.cost_share if args.cost_share is not None else config.policies[args.policy].cost_share
        graded = read_graded(args.graded, tiers)
        _log(args, graded.summary(args.graded))
        texts = [p.text for p in graded.prompts]
        quality = np.array([p.grades for p in graded.prompts])
        with contextlib.ExitStack() as stack:
            if args.scorer:
                target = args.scorer
            else:
                artifact = args.router_dir or args.routers_dir / router
                _log(args, f"starting a scorer in this process over {artifact}")
                target = stack.enter_context(local_scorer({router: artifact}, args.encoder_dir, threads=args.threads))
            _log(args, f"scoring {len(texts)} prompts x {len(tiers) - 1} tier pair(s) with router {router!r}")
            scores, version = score(target, router, tiers, texts, batch_size=args.batch_size, progress=not args.quiet)
        _log(args, f"fitting ({kind} rule) and measuring on halves ({args.bootstrap} bootstrap resamples)")
        result = fit(scores, quality, cost, kind, texts, args.bootstrap)
        header = [
            f"policies.{args.policy}: `ferryman calibrate points` on {args.graded} ({len(texts)} prompts), router "
            f"{router} {version}, tier_rule {kind}, tiers {', '.join(tiers.names)}",
            "held out: smallest margin over random mixing "
            + (
                f"{_signed(result.margin)} {_interval(result.margin_interval)} grade points (at cost "
                f"{result.margin_at:.4f})"
                if not math.isnan(result.margin)
                else "— (no point between the cheapest and the top tier)"
            ),
        ]
        if cost_share is None:
            lo, hi = result.points[0].cost, result.points[-1].cost
            header.append(f"add cost_share: a target between {lo:.4g} and {hi:.4g} of the top tier's cost")
        block = points_yaml(result.points, tiers, cost_share, header)
    except (ConfigError, DataError, ArtifactError, ScorerUnreachableError, FileNotFoundError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"ferryman calibrate points: {message}", file=sys.stderr)
        return 2
    print(table(result, tiers, cost, quality))
    print()
    print(f"# paste under policies.{args.policy} in {args.config} (in place of {_REPLACES}):")
    print(block, end="")
    if cost_share is not None:
        try:  # the block as pasted, through the gateway's own parser
            check_pasted(args.config, args.policy, block)
        except ConfigError as exc:
            print(f"ferryman calibrate points: the block does not load with this configuration: {exc}", file=sys.stderr)
            return 2
    try:
        if args.out:
            args.out.write_text(block, encoding="utf-8")
            print(f"wrote {args.out}")
        if args.plot:
            title = f"policy {args.policy}: router {router}, {kind} rule, {len(texts)} graded prompts"
            print(f"wrote {plot(args.plot, result, tiers, cost, quality, title)}")
    except OSError as exc:  # what check_outputs cannot foresee (a full disk, a read-only mount); the block is printed
        print(f"ferryman calibrate points: cannot write {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    _log(args, f"done in {time.perf_counter() - started:.1f} s")
    return 0
