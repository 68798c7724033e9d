"""``ferryman eval --suite tiers|transfer``: N-tier routing and new model pairs, on arena-bench-v1.

arena-bench-v1 grades 16 models' answers to the same 299 prompts (GPT-4 as judge, 1-10), so
routing among any of them can be measured. Every prompt is scored through the scorer's
BatchScore RPC (an in-process scorer on loopback), by an artifact that never saw it: a shipped
router that was not trained on arena-bench-v1 as it is, otherwise the fold artifact of
``build/crossfit/arena`` (``ferryman train crossfit --schemes arena``) that left the prompt's fold out.

``--suite tiers`` (:mod:`lab.eval.tier_metrics`): tiers cheapest first (default a 7B-class, a
GPT-3.5-class and a GPT-4-class model), each request's cost its tier's list price (input plus
output price per 1M tokens: the same token count each way), quality its grade. The router's
quality-vs-cost curve under the gateway's rule (the cheapest tier whose predicted loss to the top
tier is below the threshold), against every single model, the best random mixing of them at the
same cost, random assignment with the router's own tier shares, and the oracle; each rule also
with calibrated operating points (the gateway's ``operating_points``: the hull of the rule's curve
and the single tiers, mixed at random for a cost target), fitted on one half of the prompts (a
fixed hash) and used on the other. Every margin over random mixing comes with a 90 % paired
bootstrap interval over prompts; the report half is also tabled alone (lab log, 2026-12-04).

``--suite transfer``: for other pairs of arena-bench-v1 models, RouteLLM's transfer question: a
router used through ``router_model`` mapping (its default pair, GPT-4-1106 vs Mixtral, stands for
the new pair) against the same router kind trained in-pair (that pair's arena battles only) and
in-domain (every model's arena battles plus the recipe's data), all cross-fitted. The figure is
the share of the in-pair router's gain over random (APGR - 0.5) that the transferred router keeps,
with a 90 % bootstrap interval over prompts, beside RouteLLM's reported 79-82 %.

Writes ``<out>/tiers.{md,json,png}`` or ``<out>/transfer.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lab.data.arena_grades import (
    ARENA,
    THREE_TIERS,
    TRANSFER_PAIRS,
    ArenaGrades,
    ArenaPrompt,
    load_arena_grades,
    pair_slug,
)
from lab.data.benchmarks import default_data_dir
from lab.data.folds import FoldAssignment
from lab.eval.metrics import apgr, auc, endpoints, oracle_curve, routing_curve
from lab.eval.plans import Plan, read_manifest, trained_on
from lab.eval.plans import crossfitted as crossfitted_plan
from lab.eval.scoring import ScorerClient, local_scorer
from lab.eval.tier_metrics import (
    CostCurve,
    HullPoint,
    PromptCurve,
    bootstrap_margins,
    crossfit_points_curve,
    half_of,
    hull_points,
    log_grid,
    margin_over,
    mixing_hull,
    policy_prompt_curve,
    random_at_shares,
)
from lab.eval.tier_metrics import oracle_curve as tier_oracle

SUITES = ("routellm", "tiers", "transfer")
#: The gateway's tier rules (``routing.tier_rule``), both evaluated; cost_aware is the gateway's default.
RULES = ("cost_aware", "cheapest")
#: Routers evaluated by default: the kinds that score any pair of their models (BERT knows one pair).
ARENA_ROUTERS = ("mf", "sw")
#: List prices per 1M tokens (input, output) in US dollars of the arena-bench-v1 models the defaults
#: use, as published around the data's date (late 2023); the 7B model at a typical hosted price.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4-0314": (30.0, 60.0),
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "gpt-3.5-turbo": (1.5, 2.0),
    "mistralai/Mistral-7B-Instruct-v0.1": (0.2, 0.2),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.6, 0.6),
}
#: RouteLLM's transfer result as the issue states it: share of the achievable savings kept when a
#: router trained on GPT-4 vs a weaker model is moved to Claude Opus vs Haiku.
ROUTELLM_TRANSFER = "79-82 %"
COST_POINTS = (0.02, 0.05, 0.1, 0.2, 0.5)  # shares of the top tier's cost reported in the table
BOOTSTRAP = 2000


def add_arena_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``--suite tiers`` and ``--suite transfer`` (arena-bench-v1)."""
    g = parser.add_argument_group("arena-bench-v1 suites (--suite tiers | transfer)")
    g.add_argument(
        "--suite",
        choices=SUITES,
        default="routellm",
        help="routellm: the RouteLLM benchmarks (default); tiers: N-tier routing on arena-bench-v1; "
        "transfer: routers moved to other model pairs through router_model mapping",
    )
    g.add_argument(
        "--tiers",
        default=",".join(THREE_TIERS),
        help="tiers: arena-bench-v1 models, cheapest first, comma-separated",
    )
    g.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="MODEL=IN/OUT",
        help="tiers: a model's price per 1M tokens, input/output, in USD (defaults: late-2023 list prices)",
    )
    g.add_argument(
        "--pairs",
        default=",".join(f"{s}:{w}" for s, w in TRANSFER_PAIRS),
        help="transfer: STRONG:WEAK pairs, comma-separated",
    )
    g.add_argument(
        "--arena-crossfit-dir",
        type=Path,
        default=Path("build/crossfit/arena"),
        help="fold artifacts and folds.json of `ferryman train crossfit --schemes arena`",
    )


# ---------------------------------------------------------------- which artifact scores which prompt


def shipped(label: str, path: Path, prompts: Sequence[ArenaPrompt], models: Sequence[str]) -> Plan | None:
    """The shipped artifact, when it knows ``models`` (or none are needed) and never saw arena-bench-v1."""
    m = read_manifest(path)
    if m is None or ARENA in trained_on(m) or not set(models) <= set(m.models):
        return None
    return Plan(
        label,
        [m.name] * len(prompts),
        {m.name: path},
        f"`{path}` ({m.name} v{m.version}) as shipped: trained on {', '.join(trained_on(m)) or '?'}, never on {ARENA}",
    )


def crossfitted(label: str, folder: Path, folds: FoldAssignment, prompts: Sequence[ArenaPrompt], what: str) -> Plan:
    """Each prompt scored by ``folder/fold-<i>`` of its own fold ``i``."""
    return crossfitted_plan(
        label,
        folder,
        folds,
        [p.key for p in prompts],
        missing="run `make eval-tiers`, or `ferryman train crossfit --schemes arena`",
        source=lambda data: (
            f"`{folder}/fold-0..{folds.k - 1}`: {what}, trained on {data}, each without its own fold's prompts"
        ),
    )


# ---------------------------------------------------------------- scoring


@contextlib.contextmanager
def scoring(args: argparse.Namespace, plans: Sequence[Plan]) -> Iterator[str]:
    """An in-process scorer over every artifact the plans need."""
    artifacts: dict[str, Path] = {}
    for plan in plans:
        artifacts.update(plan.artifacts)
    with local_scorer(artifacts, args.encoder_dir, threads=args.threads) as target:
        yield target


def score(
    target: str, args: argparse.Namespace, plan: Plan, prompts: Sequence[ArenaPrompt], strong: str, weak: str
) -> np.ndarray:
    """Win rates of ``strong`` over ``weak`` ("" = each artifact's default pair) for every prompt."""
    cache = None if args.no_cache else args.score_cache
    with ScorerClient(target, strong=strong, weak=weak, batch_size=args.batch_size, cache_dir=cache) as client:
        items = [(name, p.key, p.prompt) for name, p in zip(plan.names, prompts, strict=True)]
        pair = f"{strong or 'default'} vs {weak or 'default'}"
        return client.score(items, label=f"{plan.label}: {pair}", progress=not args.quiet)


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(f"[eval] {msg}", file=sys.stderr, flush=True)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_prices(values: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``MODEL=IN/OUT`` flags over the defaults."""
    prices = dict(PRICES)
    for value in values:
        model, sep, pair = value.rpartition("=")
        p_in, slash, p_out = pair.partition("/")
        try:
            parsed = (float(p_in), float(p_out))
        except ValueError:
            parsed = (-1.0, -1.0)
        if not sep or not slash or not model or min(parsed) < 0:
            raise ValueError(f"--price {value}: expected MODEL=IN/OUT with prices >= 0")
        prices[model] = parsed
    return prices


def _folds(args: argparse.Namespace) -> FoldAssignment | None:
    path = args.arena_crossfit_dir / "folds.json"
    return FoldAssignment.load(path) if path.is_file() else None


# ---------------------------------------------------------------- --suite tiers


def run_tiers(args: argparse.Namespace, grades: ArenaGrades) -> dict[str, Any]:
    """Curves, baselines and the table of N-tier routing."""
    tiers = _split(args.tiers)
    if len(tiers) < 2 or len(set(tiers)) != len(tiers):
        raise ValueError(f"--tiers needs at least two different models, got {args.tiers!r}")
    prices = parse_prices(args.price)
    missing = [m for m in tiers if m not in prices]
    if missing:
        raise ValueError(f"no price for {', '.join(missing)}: give --price MODEL=IN/OUT")
    raw = np.array([sum(prices[m]) for m in tiers])
    if np.any(np.diff(raw) <= 0):
        raise ValueError("--tiers must be ordered by price, cheapest first")
    cost = raw / raw[-1]
    prompts = grades.graded_by(tiers)
    quality = np.array([[p.grades[m] for m in tiers] for p in prompts])
    folds = _folds(args)
    plans = []
    for router in args.routers:
        plan = shipped(router, args.routers_dir / router, prompts, tiers)
        if plan is None:
            if folds is None:
                plan = Plan(router, note=f"missing: {args.arena_crossfit_dir}/folds.json (run `make eval-tiers`)")
            else:
                what = f"the {router} recipe plus every model's {ARENA} battles"
                plan = crossfitted(router, args.arena_crossfit_dir / router, folds, prompts, what)
        plans.append(plan)
    ready = [p for p in plans if not p.note]
    top = tiers[-1]
    curves: dict[str, CostCurve] = {}
    scores: dict[str, np.ndarray] = {}
    with scoring(args, ready) as target:
        for plan in ready:
            columns = [score(target, args, plan, prompts, top, m) for m in tiers[:-1]]
            scores[plan.label] = np.stack(columns, axis=1)
    hull = mixing_hull(quality, cost)
    oracle = tier_oracle(quality, cost)
    single = {m: (float(cost[i]), float(quality[:, i].mean())) for i, m in enumerate(tiers)}
    half = half_of([p.key for p in prompts])
    rows, halves = [], []
    for plan in plans:
        for kind in RULES:
            for points in (False, True):
                label = f"{plan.label}, {kind} rule" + (" + operating points" if points else "")
                row: dict[str, Any] = {
                    "router": label, "rule": kind, "operating_points": points, "source": plan.source, "note": plan.note
                }  # fmt: skip
                if not plan.note:
                    s = scores[plan.label]
                    if points:
                        pc, fitted = crossfit_points_curve(s, quality, cost, kind, half)
                        row["fitted_points"] = {str(g): _points(pts, tiers) for g, pts in fitted.items()}
                        row["points_on_all_prompts"] = _points(hull_points(s, quality, cost, kind), tiers)
                    else:
                        pc = policy_prompt_curve(s, quality, cost, kind)
                        halves.append(_report_half(label, s, quality, cost, kind, half, tiers))
                    curves[label] = pc.curve()
                    row |= _tier_row(pc, quality, hull, oracle, cost, tiers)
                    row["scores"] = s.tolist()
                rows.append(row)
    return {
        "tiers": tiers,
        "prices_per_mtok": {m: list(prices[m]) for m in tiers},
        "relative_cost": {m: float(c) for m, c in zip(tiers, cost, strict=True)},
        "prompts": len(prompts),
        "prompt_keys": [p.key for p in prompts],
        "single": {m: {"cost": c, "quality": q} for m, (c, q) in single.items()},
        "mixing_hull": {"cost": hull.cost.tolist(), "quality": hull.quality.tolist()},
        "oracle": {"cost": oracle.cost.tolist(), "quality": oracle.quality.tolist()},
        "rows": rows,
        "halves": halves,
        "curves": {k: {"cost": v.cost.tolist(), "quality": v.quality.tolist()} for k, v in curves.items()},
    }


def _points(points: Sequence[HullPoint], tiers: list[str]) -> list[dict[str, Any]]:
    """Operating points as the gateway's ``operating_points`` entries (plus their calibration quality)."""
    return [
        {"cost": p.cost, "quality": p.quality}
        | ({"tier": tiers[p.tier]} if p.tier is not None else {"threshold": p.threshold})
        for p in points
    ]


def _report_half(
    label: str, s: np.ndarray, quality: np.ndarray, cost: np.ndarray, kind: str, half: np.ndarray, tiers: list[str]
) -> dict[str, Any]:
    """The rule and its operating points fitted on the selection half (0), both on the report half (1)."""
    rep = half == 1
    hull = mixing_hull(quality[rep], cost)
    oracle = tier_oracle(quality[rep], cost)
    # the report half's columns of the halves' cross-fit: routed by the points fitted on the selection half
    both, _ = crossfit_points_curve(s, quality, cost, kind, half)
    used = PromptCurve(both.cost[:, rep], both.quality[:, rep], both.shares, both.thresholds)
    out: dict[str, Any] = {"router": label, "prompts": int(rep.sum())}
    for key, curve in (("rule", policy_prompt_curve(s[rep], quality[rep], cost, kind)), ("operating_points", used)):
        row = _tier_row(curve, quality[rep], hull, oracle, cost, tiers)
        out[key] = {k: row[k] for k in ("quality_at_middle_cost", "middle_model_quality", "min_margin_over_mixing",
                                        "min_margin_at_cost", "min_margin_interval")}  # fmt: skip
    return out


def _tier_row(
    prompt_curve: PromptCurve,
    quality: np.ndarray,
    hull: CostCurve,
    oracle: CostCurve,
    cost: np.ndarray,
    tiers: list[str],
) -> dict[str, Any]:
    curve = prompt_curve.curve()
    mid = float(cost[len(tiers) // 2]) if len(tiers) > 2 else float(cost[0])
    mid_model = tiers[len(tiers) // 2] if len(tiers) > 2 else tiers[0]
    at_mid = curve.at(mid)
    margin, where = margin_over(curve, hull, float(cost[0]), float(cost[-1]))
    shares_q = random_at_shares(curve, quality)
    shares_margin = float((curve.quality - shares_q)[1:-1].min()) if len(curve.cost) > 2 else float("nan")
    at_costs = (*COST_POINTS, mid)
    where_ok = not np.isnan(where)
    intervals = bootstrap_margins(prompt_curve, quality, cost, [*at_costs, where if where_ok else mid])
    return {
        "middle_model": mid_model,
        "quality_at_middle_cost": at_mid,
        "middle_model_quality": float(quality[:, tiers.index(mid_model)].mean()),
        "min_margin_over_mixing": margin,
        "min_margin_at_cost": where,
        "min_margin_interval": intervals[:, -1].tolist() if where_ok else [float("nan")] * 2,
        "min_margin_over_random_shares": shares_margin,
        "at": {
            f"{c:g}": {
                "router": curve.at(c),
                "mixing": hull.at(c),
                "oracle": oracle.at(c),
                "margin_interval": intervals[:, i].tolist(),
            }
            for i, c in enumerate(at_costs)
        },
        "shares_at_middle_cost": _shares_at(curve, mid, tiers),
    }


def _shares_at(curve: CostCurve, cost: float, tiers: list[str]) -> dict[str, float]:
    return {t: float(np.interp(cost, curve.cost, curve.shares[:, i])) for i, t in enumerate(tiers)}


# ---------------------------------------------------------------- --suite transfer


def gain_over_random(scores: np.ndarray, s: np.ndarray, w: np.ndarray) -> float:
    """Area between the router's quality-vs-strong-share curve and random's straight line, in grade points.

    APGR - 0.5 is this divided by the strong-over-weak gap; the ratio of two gains on the same pair
    is the same either way, and this one stays defined when the gap is zero (a bootstrap resample).
    """
    weak_q, strong_q = endpoints(s, w)
    return auc(routing_curve(scores, s, w)) - (weak_q + strong_q) / 2


def kept_share(t_scores: np.ndarray, r_scores: np.ndarray, s: np.ndarray, w: np.ndarray) -> float:
    """Share of the reference router's gain over random that the transferred one keeps (NaN: no reference gain)."""
    ref = gain_over_random(r_scores, s, w)
    return gain_over_random(t_scores, s, w) / ref if ref > 0 else float("nan")


def bootstrap_kept(
    t_scores: np.ndarray, r_scores: np.ndarray, s: np.ndarray, w: np.ndarray, n: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float, float]:
    """(5th percentile, 95th percentile, share of resamples where the reference gains nothing)."""
    rng = np.random.default_rng(seed)
    values, undefined = [], 0
    for _ in range(n):
        idx = rng.integers(0, len(s), len(s))
        v = kept_share(t_scores[idx], r_scores[idx], s[idx], w[idx])
        if np.isnan(v):
            undefined += 1
        else:
            values.append(v)
    if not values:
        return float("nan"), float("nan"), 1.0
    lo, hi = np.percentile(values, [5, 95])
    return float(lo), float(hi), undefined / n


def bootstrap_apgr(scores: np.ndarray, s: np.ndarray, w: np.ndarray, n: int = BOOTSTRAP, seed: int = 0) -> list[float]:
    """90 % interval of APGR over prompt resamples (each resample's gain over random, divided by the full gap)."""
    weak_q, strong_q = endpoints(s, w)
    gap = strong_q - weak_q
    rng = np.random.default_rng(seed)
    values = [
        0.5 + gain_over_random(scores[idx], s[idx], w[idx]) / gap
        for idx in (rng.integers(0, len(s), len(s)) for _ in range(n))
    ]
    return [float(v) for v in np.percentile(values, [5, 95])]


def run_transfer(args: argparse.Namespace, grades: ArenaGrades) -> dict[str, Any]:
    """APGRs of transferred, in-pair and in-domain routers per pair, and the kept shares."""
    from lab.data.arena_grades import parse_pair

    pairs = [parse_pair(p) for p in _split(args.pairs)]
    folds = _folds(args)
    results = []
    for strong, weak in pairs:
        prompts = grades.graded_by([strong, weak])
        s = np.array([p.grades[strong] for p in prompts])
        w = np.array([p.grades[weak] for p in prompts])
        weak_q, strong_q = endpoints(s, w)
        if strong_q <= weak_q:
            raise ValueError(
                f"--pairs {strong}:{weak}: {strong} is not the stronger of the two on {ARENA} "
                f"(mean grade {strong_q:.2f} vs {weak_q:.2f}); name the stronger model first"
            )
        pair: dict[str, Any] = {
            "strong": strong,
            "weak": weak,
            "prompts": len(prompts),
            "strong_quality": strong_q,
            "weak_quality": weak_q,
            "ties": int(np.sum(s == w)),
            "oracle_apgr": apgr(oracle_curve(s, w), weak_q, strong_q),
            "prompt_keys": [p.key for p in prompts],
            "strong_grades": s.tolist(),
            "weak_grades": w.tolist(),
            "routers": [],
        }
        for router in args.routers:
            transferred = shipped(f"{router} transferred", args.routers_dir / router, prompts, [])
            if transferred is None and folds is not None:
                what = f"the shipped {router} recipe (it trains on {ARENA})"
                transferred = crossfitted(
                    f"{router} transferred", args.arena_crossfit_dir / router, folds, prompts, what
                )
            plans: dict[str, Plan] = {}
            if transferred is not None:
                plans["transferred"] = transferred
            if folds is not None:
                slug = pair_slug(strong, weak)
                plans["in_pair"] = crossfitted(
                    f"{router} in-pair",
                    args.arena_crossfit_dir / f"pair-{slug}" / router,
                    folds,
                    prompts,
                    f"{router} trained in-pair ({strong} vs {weak} battles only)",
                )
                plans["in_domain"] = crossfitted(
                    f"{router} in-domain",
                    args.arena_crossfit_dir / router,
                    folds,
                    prompts,
                    f"the {router} recipe plus every model's {ARENA} battles",
                )
            entry: dict[str, Any] = {"router": router, "rows": {}}
            ready = {k: v for k, v in plans.items() if not v.note}
            got: dict[str, np.ndarray] = {}
            with scoring(args, list(ready.values())) as target:
                for key, plan in ready.items():
                    # transferred: the artifact's default pair stands for (strong, weak) (router_model mapping)
                    sm, wm = ("", "") if key == "transferred" else (strong, weak)
                    got[key] = score(target, args, plan, prompts, sm, wm)
            for key, plan in plans.items():
                row: dict[str, Any] = {"source": plan.source, "note": plan.note}
                if key in got:
                    row["apgr"] = apgr(routing_curve(got[key], s, w), weak_q, strong_q)
                    row["apgr_ci90"] = bootstrap_apgr(got[key], s, w)
                    row["scores"] = got[key].tolist()
                entry["rows"][key] = row
            for ref in ("in_pair", "in_domain"):
                if "transferred" in got and ref in got:
                    lo, hi, undefined = bootstrap_kept(got["transferred"], got[ref], s, w)
                    entry[f"kept_vs_{ref}"] = {
                        "value": kept_share(got["transferred"], got[ref], s, w),
                        "ci90": [lo, hi],
                        "undefined_share": undefined,
                    }
            pair["routers"].append(entry)
        results.append(pair)
    return {"pairs": results, "routellm": ROUTELLM_TRANSFER}


# ---------------------------------------------------------------- reports


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "—"
    return f"{x:.{digits}f}"


def _interval(pair: Sequence[float]) -> str:
    lo, hi = pair
    return "[—]" if np.isnan(lo) else f"[{lo:+.3f}, {hi:+.3f}]"


def tiers_markdown(res: dict[str, Any], meta: dict[str, str]) -> str:
    tiers = res["tiers"]
    lines = [
        f"# N-tier routing on {ARENA}",
        "",
        f"Tiers, cheapest first: {', '.join(f'`{t}`' for t in tiers)}; {res['prompts']} prompts graded for all of "
        "them (GPT-4 grades, 1-10). Cost per request: the tier's input + output list price per 1M tokens, relative "
        "to the top tier's. The gateway's two rules (`routing.tier_rule`, docs/gateway.md) swept over the policy "
        "threshold: `cheapest` (the cheapest tier whose predicted loss to the top tier is below the threshold) and "
        "`cost_aware` (each tier's threshold grows with its saving; the tier furthest below its threshold). "
        "Random mixing: the best random mix of the single models at the same mean cost (their upper hull); random "
        "shares: the router's own tier shares assigned at random. Margins are in grade points, the smallest over "
        "every cost strictly between the cheapest and the top model; [90 % paired bootstrap interval over prompts, "
        "2,000 resamples, at that cost]. `+ operating points`: the policy's `operating_points` "
        "(docs/gateway.md): the upper concave hull of the rule's curve and the single tiers on calibration "
        "prompts, a cost target met by mixing the two points around it at random; the prompts are split in two "
        "halves by a fixed hash and each half is routed by the points fitted on the other (never on itself).",
        "",
        "| model | price in/out per 1M tokens | relative cost | mean grade |",
        "| --- | ---: | ---: | ---: |",
    ]
    for m in tiers:
        p_in, p_out = res["prices_per_mtok"][m]
        lines.append(
            f"| `{m}` | ${p_in:g} / ${p_out:g} | {res['single'][m]['cost']:.4f} | {res['single'][m]['quality']:.3f} |"
        )
    mid = res["rows"][0].get("middle_model") if res["rows"] else None
    points = [f"{c:g}" for c in COST_POINTS]
    header = [
        "router",
        f"at the cost of `{mid}`",
        "min margin over random mixing [90 %] (at cost)",
        "over random shares",
    ]
    header += [f"at {float(c):.0%} of top cost" for c in points]
    lines += ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in res["rows"]:
        if row.get("note"):
            lines.append(f"| {row['router']} | {row['note']} |" + " |" * (len(header) - 2))
            continue
        cells = [
            row["router"],
            f"{row['quality_at_middle_cost']:.3f} (alone {row['middle_model_quality']:.3f})",
            f"{row['min_margin_over_mixing']:+.3f} {_interval(row['min_margin_interval'])} "
            f"(at {row['min_margin_at_cost']:.4f})",
            f"{row['min_margin_over_random_shares']:+.3f}",
        ]
        cells += [f"{row['at'][c]['router']:.3f}" for c in points]
        lines.append("| " + " | ".join(cells) + " |")
    first = next((r for r in res["rows"] if not r.get("note")), None)
    if first is not None:
        mix = ["random mixing (best mix of single models)", "", "", ""] + [
            f"{first['at'][c]['mixing']:.3f}" for c in points
        ]
        orc = ["oracle", "", "", ""] + [f"{first['at'][c]['oracle']:.3f}" for c in points]
        lines.append("| " + " | ".join(mix) + " |")
        lines.append("| " + " | ".join(orc) + " |")
    if res.get("halves"):
        lines += [
            "",
            "On the report half only (the prompts the choice of operating points was not made on, lab log "
            "2026-12-04): the rule as it is, and its operating points fitted on the selection half.",
            "",
            "| router | prompts | rule: at the middle cost | rule: min margin [90 %] (at cost) "
            "| + points: at the middle cost | + points: min margin [90 %] (at cost) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for h in res["halves"]:
            cells = [h["router"], str(h["prompts"])]
            for key in ("rule", "operating_points"):
                r = h[key]
                cells += [
                    f"{r['quality_at_middle_cost']:.3f} (alone {r['middle_model_quality']:.3f})",
                    f"{r['min_margin_over_mixing']:+.3f} {_interval(r['min_margin_interval'])} "
                    f"(at {r['min_margin_at_cost']:.4f})",
                ]
            lines.append("| " + " | ".join(cells) + " |")
    fitted = [r for r in res["rows"] if r.get("points_on_all_prompts")]
    if fitted:
        lines += [
            "",
            f"Operating points fitted on all {res['prompts']} prompts, as a policy's `operating_points` "
            "(docs/gateway.md; thresholds of the cross-fitted artifacts, cost relative to the top tier's; a tier point "
            "names the model, a configuration names the tier standing for it):",
            "",
        ]
        for r in fitted:
            entries = ", ".join(
                f"{{cost: {p['cost']:.4g}, "
                + (f"tier: {p['tier']}}}" if "tier" in p else f"threshold: {p['threshold']:.6g}}}")
                for p in r["points_on_all_prompts"]
            )
            lines.append(f"- {r['router']}: `[{entries}]`")
    lines += ["", "Sources:", ""]
    lines += [f"- {r['router']}: {r['source'] or r['note']}" for r in res["rows"]]
    lines += ["", "Tier shares at the middle model's cost:", ""]
    for r in res["rows"]:
        if not r.get("note"):
            shares = ", ".join(f"{t} {v:.0%}" for t, v in r["shares_at_middle_cost"].items())
            lines.append(f"- {r['router']}: {shares}")
    lines += ["", "Run:", "", *[f"- {k}: {v}" for k, v in meta.items()], ""]
    return "\n".join(lines)


def transfer_markdown(res: dict[str, Any], meta: dict[str, str]) -> str:
    lines = [
        f"# Routers moved to new model pairs ({ARENA})",
        "",
        "APGR of routing each pair with: the router **transferred** through `router_model` mapping (its default "
        "pair, GPT-4-1106 vs Mixtral, stands for the new pair), the same kind trained **in-pair** (the pair's "
        f"{ARENA} battles only), and **in-domain** (every model's {ARENA} battles plus the recipe's data); all "
        "cross-fitted (no prompt scored by an artifact that saw it). Random is 0.5. **Kept** = (APGR transferred "
        "- 0.5) / (APGR reference - 0.5), with 90 % bootstrap intervals over prompts (also on each APGR: a "
        "kept share means little when the reference's interval reaches 0.5); RouteLLM reports "
        f"{res['routellm']} for its transfer.",
        "",
        "| pair (strong vs weak) | prompts (ties) | grades strong / weak | router | transferred | in-pair "
        "| in-domain | oracle | kept vs in-pair [90 % CI] | kept vs in-domain [90 % CI] |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for pair in res["pairs"]:
        for entry in pair["routers"]:
            rows = entry["rows"]

            def cell(key: str, rows: dict[str, Any] = rows) -> str:
                r = rows.get(key)
                if not r or "apgr" not in r:
                    return (r or {}).get("note", "—")[:40]
                lo, hi = r["apgr_ci90"]
                return f"{r['apgr']:.3f} [{lo:.2f}, {hi:.2f}]"

            def kept(ref: str, entry: dict[str, Any] = entry) -> str:
                k = entry.get(f"kept_vs_{ref}")
                if not k or np.isnan(k["value"]):
                    return "— (no gain to keep)" if k else "—"
                lo, hi = k["ci90"]
                return f"{k['value']:.0%} [{_fmt(lo * 100, 0)}, {_fmt(hi * 100, 0)}]"

            lines.append(
                f"| `{pair['strong']}` vs `{pair['weak']}` | {pair['prompts']} ({pair['ties']}) | "
                f"{pair['strong_quality']:.2f} / {pair['weak_quality']:.2f} | {entry['router']} | "
                f"{cell('transferred')} | {cell('in_pair')} | {cell('in_domain')} | {_fmt(pair['oracle_apgr'])} | "
                f"{kept('in_pair')} | {kept('in_domain')} |"
            )
    lines += ["", "Sources:", ""]
    seen: set[str] = set()
    for pair in res["pairs"]:
        for entry in pair["routers"]:
            for key, row in entry["rows"].items():
                text = f"- {entry['router']} {key.replace('_', '-')}: {row['source'] or row['note']}"
                if text not in seen:
                    seen.add(text)
                    lines.append(text)
    lines += ["", "Run:", "", *[f"- {k}: {v}" for k, v in meta.items()], ""]
    return "\n".join(lines)


def plot_tiers(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    colours: dict[str, Any] = {}
    for name, curve in res["curves"].items():
        base = name.removesuffix(" + operating points")
        line = ax.plot(
            *log_grid(curve["cost"], curve["quality"]), "--" if base != name else "-",
            color=colours.get(base), label=f"{name} (cross-fitted)",
        )  # fmt: skip
        colours[base] = line[0].get_color()
        if base == name:  # the rule's own operating points
            ax.plot(curve["cost"], curve["quality"], ".", markersize=3, color=colours[base])
    hull = res["mixing_hull"]
    ax.plot(*log_grid(hull["cost"], hull["quality"]), "--", color="gray", label="random mixing (best mix)")
    oracle = res["oracle"]
    ax.plot(*log_grid(oracle["cost"], oracle["quality"]), ":", color="black", label="oracle")
    for m, point in res["single"].items():
        ax.scatter([point["cost"]], [point["quality"]], zorder=5, s=40)
        ax.annotate(
            m.rsplit("/", 1)[-1], (point["cost"], point["quality"]), textcoords="offset points", xytext=(5, -12)
        )
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per request, relative to the top tier (log)")
    ax.set_ylabel("mean GPT-4 grade (1-10)")
    ax.set_title(f"{len(res['tiers'])}-tier routing on {ARENA} ({res['prompts']} prompts)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_transfer(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = res["pairs"]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.2), squeeze=False)
    styles = {"transferred": "-", "in_pair": "--", "in_domain": "-."}
    for ax, pair in zip(axes[0], pairs, strict=True):
        s, w = np.array(pair["strong_grades"]), np.array(pair["weak_grades"])
        for entry in pair["routers"]:
            for key, row in entry["rows"].items():
                if "scores" in row:
                    c = routing_curve(np.array(row["scores"]), s, w)
                    ax.plot(c.share, c.quality, styles[key], label=f"{entry['router']} {key.replace('_', '-')}")
        ax.plot([0, 1], [pair["weak_quality"], pair["strong_quality"]], ":", color="gray", label="random")
        o = oracle_curve(s, w)
        ax.plot(o.share, o.quality, ":", color="black", label="oracle")
        ax.set_title(f"{pair['strong'].rsplit('/', 1)[-1]} vs {pair['weak'].rsplit('/', 1)[-1]}", fontsize=9)
        ax.set_xlabel("share sent to the strong model")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean GPT-4 grade")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_suite(args: argparse.Namespace, meta: dict[str, str]) -> int:
    """Entry point of ``ferryman eval --suite tiers|transfer``."""
    started = time.perf_counter()
    try:
        data_dir = args.data_dir or default_data_dir()
        grades = load_arena_grades(data_dir)
        res = run_tiers(args, grades) if args.suite == "tiers" else run_transfer(args, grades)
    except ValueError as exc:
        print(f"ferryman eval: {exc}", file=sys.stderr)
        return 2
    meta = meta | {"data": str(data_dir), "wall time": f"{time.perf_counter() - started:.0f} s"}
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.suite
    md = tiers_markdown(res, meta) if name == "tiers" else transfer_markdown(res, meta)
    (args.out / f"{name}.md").write_text(md, encoding="utf-8")
    if "curves" in res:  # for the plot; rounded (the per-prompt scores stay exact: the tables are recomputed from them)
        res["curves"] = {
            k: {axis: [round(x, 5) for x in values] for axis, values in v.items()} for k, v in res["curves"].items()
        }
    text = json.dumps({"meta": meta, **res}, separators=(",", ":"))
    (args.out / f"{name}.json").write_text(text + "\n", encoding="utf-8")
    png = plot_tiers(res, args.out / f"{name}.png") if name == "tiers" else plot_transfer(res, args.out / f"{name}.png")
    print(md)
    print(f"wrote {args.out / f'{name}.md'}, {args.out / f'{name}.json'}, {png}")
    return 0
