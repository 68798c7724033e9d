"""``ferryman eval``: routers on the RouteLLM benchmarks, beside random, oracle and the paper.

Every prompt is scored through the scorer's BatchScore RPC (an in-process scorer
on loopback over symlinks to the artifacts, or ``--scorer ADDRESS``).
Contaminated prompts are removed. For MMLU and GSM8K, whose labels training
may use, ``--crossfit-dir DIR`` (repeatable: ``build/crossfit/prompt``,
``build/crossfit/subject``) scores each prompt with the artifact of its own
fold, ``DIR/<router>/fold-<i>``, which never saw it. Without it, the routers in
``--routers-dir`` are used, and refused on a benchmark their manifest's
``provenance.trained_on`` lists. MT-Bench is never trained on and is scored with
the routers in ``--routers-dir``.

Output under ``--out``: ``<set>.png`` per evaluation set, ``<name>.md`` (the
table, with the paper's numbers) and ``<name>.json`` (metrics and curves).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ferryman import paths
from lab.data.benchmarks import (
    BENCHMARKS,
    STRONG,
    WEAK,
    LabeledPrompt,
    default_data_dir,
    load_benchmark,
    load_golden,
)
from lab.data.folds import SCHEMES, FoldAssignment, assign_folds
from lab.data.report import DataError, LoadReport
from lab.eval.arena import ARENA_ROUTERS, add_arena_arguments, run_suite
from lab.eval.metrics import (
    apgr,
    average_curves,
    decile_curve,
    endpoints,
    oracle_curve,
    ranks_within,
    routing_curve,
    summarize,
)
from lab.eval.plans import Plan, crossfitted, read_manifest, trained_on
from lab.eval.report import Row, SetResult, markdown_table, write_reports
from lab.eval.scoring import ScorerClient, local_scorer
from scorer.artifacts import MANIFEST_NAME, Manifest, write_manifest
from scorer.errors import ArtifactError
from scorer.routers import ROUTER_KINDS

_TITLES = {"mmlu": "MMLU", "gsm8k": "GSM8K", "mt-bench": "MT-Bench"}
_SCHEME_TITLES = {"prompt": "prompt folds", "subject": "held-out subjects"}
_GSM8K_SCHEME_TITLES = {"prompt": "prompt folds", "subject": "subject-scheme folds (random chunks)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ferryman eval``."""
    parser.description = (
        "Evaluate routers on the RouteLLM benchmarks (MMLU, GSM8K, MT-Bench, contaminated prompts removed): "
        "quality vs strong-call-% curves, APGR and CPT(20/50/80%) beside the random router (mean of seeds), "
        "the oracle and the RouteLLM paper's published numbers. Every prompt is scored through the scorer's "
        "BatchScore RPC. MMLU/GSM8K use the cross-fitted artifacts of --crossfit-dir (each prompt scored by the "
        "fold artifact that never saw it); MT-Bench, never trained on, uses --routers-dir. "
        "Writes <set>.png, <name>.md and <name>.json under --out."
    )
    parser.add_argument(
        "--benchmark",
        action="append",
        choices=[*BENCHMARKS, "all", "loso", "commonsense"],
        help="benchmark to evaluate (repeatable; default: all = mmlu, gsm8k, mt-bench); loso: every public source "
        "scored by the routers trained without it (--loso-dir), written to <out>/loso.{md,json,png}; commonsense: "
        "the easy/hard pairs of tests/quality/commonsense_pairs.py scored by --routers-dir, written to "
        "<out>/commonsense.{md,json}",
    )
    parser.add_argument(
        "--routers",
        nargs="+",
        help="routers to evaluate (default: every router kind with an artifact in --routers-dir)",
    )
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="trained routers (MT-Bench)")
    parser.add_argument(
        "--crossfit-dir",
        type=Path,
        action="append",
        default=[],
        help="cross-fitted artifacts DIR/<router>/fold-<i> with DIR/folds.json (repeatable; MMLU and GSM8K)",
    )
    parser.add_argument(
        "--loso-dir",
        type=Path,
        default=Path("build/loso"),
        help="leave-one-source-out artifacts DIR/<source>/<router> (`ferryman train loso`; --benchmark loso)",
    )
    parser.add_argument("--data-dir", type=Path, help="public data (default: $FERRYMAN_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where plots, table and JSON go")
    parser.add_argument("--name", default="eval", help="file stem of the Markdown and JSON reports")
    parser.add_argument("--scorer", metavar="ADDRESS", help="use a running scorer instead of an in-process one")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder")
    parser.add_argument("--random-seeds", type=int, default=10, help="seeds the random router is averaged over")
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="also score simple baselines (logistic regression on embeddings, subject mean) with the same folds",
    )
    parser.add_argument("--folds", type=int, default=5, help="k for the baselines' folds when no --crossfit-dir")
    parser.add_argument("--fold-scheme", choices=SCHEMES, default="prompt", help="baselines' scheme without folds")
    parser.add_argument(
        "--limit",
        action="append",
        metavar="[BENCHMARK=]N",
        help="evaluate a seeded sample of at most N prompts per set, or only of one benchmark (repeatable)",
    )
    parser.add_argument("--cache-dir", type=Path, default=paths.cache_dir(), help="embedding cache (shared)")
    parser.add_argument("--score-cache", type=Path, default=Path("build/eval-cache"), help="cache of router scores")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the caches")
    parser.add_argument("--threads", type=int, default=2, help="ONNX threads of the in-process scorer")
    parser.add_argument("--batch-size", type=int, default=128, help="items per BatchScore request")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_arena_arguments(parser)


@contextlib.contextmanager
def _client(args: argparse.Namespace, artifacts: dict[str, Path], cache: Path | None) -> Iterator[ScorerClient | None]:
    """A ScorerClient on ``--scorer``, or on an in-process scorer over ``artifacts`` (None: nothing to score)."""
    if args.scorer is None and not artifacts:
        yield None
        return
    with contextlib.ExitStack() as stack:
        target = args.scorer or stack.enter_context(local_scorer(artifacts, args.encoder_dir, threads=args.threads))
        yield stack.enter_context(
            ScorerClient(target, strong=STRONG, weak=WEAK, batch_size=args.batch_size, cache_dir=cache)
        )


@dataclass
class EvalSet:
    """One benchmark under one fold scheme (or none)."""

    key: str
    benchmark: str
    title: str
    items: list[LabeledPrompt]
    crossfit: Path | None = None
    folds: FoldAssignment | None = None


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(f"[eval] {msg}", file=sys.stderr, flush=True)


def _sample(items: list[LabeledPrompt], limit: int | None, seed: int = 0) -> list[LabeledPrompt]:
    """A seeded sample of at most ``limit`` items, in input order; a larger limit gives a superset."""
    if limit is None or len(items) <= limit:
        return items
    idx = np.sort(np.random.default_rng(seed).permutation(len(items))[:limit])
    return [items[i] for i in idx.tolist()]


def parse_limits(values: Sequence[str] | None) -> dict[str, int]:
    """``["500"]`` -> every benchmark 500; ``["mmlu=3000"]`` -> MMLU only. Key ``"*"`` is the default."""
    out: dict[str, int] = {}
    for value in values or ():
        bench, _, number = value.rpartition("=")
        bench = bench or "*"
        if bench not in (*BENCHMARKS, "*"):
            raise ValueError(f"--limit {value}: unknown benchmark {bench!r}")
        try:
            n = int(number)
        except ValueError:
            raise ValueError(f"--limit {value}: expected N or BENCHMARK=N") from None
        if n < 2:
            raise ValueError(f"--limit {value}: need at least 2 prompts")
        out[bench] = n
    return out


def _limit(args: argparse.Namespace, bench: str) -> int | None:
    limits: dict[str, int] = args.limits
    return limits.get(bench, limits.get("*"))


def _load(args: argparse.Namespace, data_dir: Path, name: str) -> list[LabeledPrompt]:
    reports: list[LoadReport] = []
    items = load_benchmark(name, data_dir, reports=reports)
    bad = [r for r in reports if r.bad]
    for r in bad:
        _log(args, r.summary())
    _log(args, f"{name}: {len(items)} prompts after removing contaminated ones ({len(reports)} files)")
    return items


def build_sets(args: argparse.Namespace, data_dir: Path, benchmarks: Sequence[str]) -> list[EvalSet]:
    """Evaluation sets: MT-Bench once; MMLU/GSM8K once per crossfit dir (or once without)."""
    sets: list[EvalSet] = []
    for bench in benchmarks:
        items = _load(args, data_dir, bench)
        if bench == "mt-bench" or not args.crossfit_dir:
            sets.append(EvalSet(bench, bench, _TITLES[bench], _sample(items, _limit(args, bench))))
            continue
        for cf in args.crossfit_dir:
            folds = FoldAssignment.load(cf / "folds.json")
            missing = [it.key for it in items if it.key not in folds.assignments]
            if missing:
                raise DataError(
                    f"{cf / 'folds.json'}: {len(missing)} {bench} prompts have no fold (e.g. {missing[0]}); "
                    "the folds are stale — rebuild the cross-fitted artifacts"
                )
            schemes = _GSM8K_SCHEME_TITLES if bench == "gsm8k" else _SCHEME_TITLES
            title = f"{_TITLES[bench]}, {schemes.get(folds.scheme, folds.scheme)}"
            sample = _sample(items, _limit(args, bench))
            sets.append(EvalSet(f"{bench}-{folds.scheme}", bench, title, sample, cf, folds))
    keys = [s.key for s in sets]
    if len(set(keys)) != len(keys):
        raise ValueError(f"two --crossfit-dir with the same scheme: {', '.join(keys)}")
    return sets


def plan_router(router: str, eval_set: EvalSet, routers_dir: Path) -> Plan:
    """Which artifact scores each prompt of ``eval_set`` for ``router``."""
    if eval_set.crossfit is not None and eval_set.folds is not None:
        folds, crossfit = eval_set.folds, eval_set.crossfit
        return crossfitted(
            router,
            crossfit / router,
            folds,
            [it.key for it in eval_set.items],
            missing="cross-fitted artifacts not built",
            source=lambda data: (
                f"`{crossfit}/{router}/fold-0..{folds.k - 1}`: each trained on {data} "
                f"without its own fold ({folds.scheme} folds, k={folds.k})"
            ),
        )
    plan = Plan(router)
    path = routers_dir / router
    manifest = read_manifest(path)
    if manifest is None:
        plan.note = f"missing: {path}"
        return plan
    trained = trained_on(manifest)
    if eval_set.benchmark in trained:
        plan.note = (
            f"refused: `{path}` was trained on {eval_set.benchmark} (provenance trained_on="
            f"{manifest.provenance.get('trained_on')}); evaluate it with --crossfit-dir"
        )
        return plan
    plan.artifacts[manifest.name] = path
    plan.names = [manifest.name] * len(eval_set.items)
    plan.source = f"`{path}` ({manifest.name} v{manifest.version}), trained on {', '.join(trained) or 'unknown data'}"
    return plan


def random_artifacts(dest: Path, seeds: int) -> dict[str, Path]:
    """Random-router artifacts ``random-s<i>`` (seed i), so the random router is averaged over seeds."""
    out = {}
    for seed in range(seeds):
        name = f"random-s{seed}"
        manifest = Manifest(
            name=name,
            kind="random",
            version="1",
            models=(STRONG, WEAK),
            default_strong=STRONG,
            default_weak=WEAK,
            provenance={"trained_on": "nothing (uniform scores from a hash of prompt and seed)"},
            params={"seed": seed},
        )
        write_manifest(dest / name, manifest)
        out[name] = dest / name
    return out


def _score_set(
    args: argparse.Namespace, client: ScorerClient | None, eval_set: EvalSet, plans: list[Plan], random_names: list[str]
) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Scores per router plan and per random seed, from one batched pass over the set."""
    if client is None:
        return {}, []
    jobs: list[tuple[str, str, str]] = []
    for it_idx, item in enumerate(eval_set.items):
        for plan in plans:
            jobs.append((plan.names[it_idx], item.key, item.prompt))
    n_items = len(eval_set.items)
    routed = client.score(jobs, label=f"{eval_set.key}: {', '.join(p.label for p in plans)}", progress=not args.quiet)
    by_router = {p.label: routed[i :: len(plans)] for i, p in enumerate(plans)} if plans else {}
    rjobs = [(name, item.key, item.prompt) for name in random_names for item in eval_set.items]
    rscores = client.score(rjobs, label=f"{eval_set.key}: random x{len(random_names)}", progress=not args.quiet)
    randoms = [rscores[i * n_items : (i + 1) * n_items] for i in range(len(random_names))]
    return by_router, randoms


def _row(
    name: str,
    kind: str,
    source: str,
    scores: np.ndarray,
    s: np.ndarray,
    w: np.ndarray,
    folds: Sequence[object] | np.ndarray | None = None,
) -> Row:
    """Metrics of one scored row; ``folds`` (which fold artifact scored each prompt) adds the calibrated APGR."""
    curve = routing_curve(scores, s, w)
    weak_q, strong_q = endpoints(s, w)
    row = Row(name, kind, source, summarize(curve, weak_q, strong_q), curve)
    row.apgr_10bin = apgr(decile_curve(scores, s, w), weak_q, strong_q)
    if folds is not None and len(set(np.asarray(folds).tolist())) > 1:
        row.apgr_fold_calibrated = apgr(routing_curve(ranks_within(scores, folds), s, w), weak_q, strong_q)
    return row


def evaluate_set(
    args: argparse.Namespace,
    client: ScorerClient | None,
    eval_set: EvalSet,
    plans: list[Plan],
    random_names: list[str],
    baselines: dict[str, np.ndarray],
    baseline_sources: dict[str, str],
) -> SetResult:
    """All rows of one set: routers, random (mean curve over seeds), baselines, oracle."""
    s = np.array([it.strong for it in eval_set.items])
    w = np.array([it.weak for it in eval_set.items])
    weak_q, strong_q = endpoints(s, w)
    result = SetResult(eval_set.key, eval_set.benchmark, eval_set.title, len(s), weak_q, strong_q)
    ready = [p for p in plans if not p.note]
    scores, randoms = _score_set(args, client, eval_set, ready, random_names)
    for plan in plans:
        if plan.note:
            result.rows.append(Row(plan.label, "router", plan.source, note=plan.note))
        else:
            result.rows.append(_row(plan.label, "router", plan.source, scores[plan.label], s, w, plan.names))
    if randoms:
        curve = average_curves([routing_curve(r, s, w) for r in randoms])
        source = f"random router through the scorer, curve averaged over {len(randoms)} seeds"
        result.rows.append(Row("random", "random", source, summarize(curve, weak_q, strong_q), curve))
    for name, values in baselines.items():
        folds = [eval_set.folds.fold_of(it.key) for it in eval_set.items] if eval_set.folds else None
        result.rows.append(_row(f"baseline: {name}", "baseline", baseline_sources[name], values, s, w, folds))
    oracle = oracle_curve(s, w)
    source = "oracle: knows both models' quality on every prompt"
    result.rows.append(Row("oracle", "oracle", source, summarize(oracle, weak_q, strong_q), oracle))
    return result


def _baseline_scores(
    args: argparse.Namespace, data_dir: Path, sets: list[EvalSet]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, str]]]:
    """Baseline scores (and sources) per set key and baseline name, with the same folds as the routers.

    Sets that share folds (MMLU and GSM8K of one crossfit dir) share one fit per fold.
    """
    from lab.data.embed_cache import embed_cached
    from lab.eval.baselines import BASELINES, DESCRIPTIONS, crossfit_baseline
    from scorer.encoder import Encoder

    golden = load_golden(data_dir)
    encoder = Encoder(args.encoder_dir, precision="int8", threads=args.threads)
    cache = None if args.no_cache else args.cache_dir

    def embed(items: Sequence[LabeledPrompt]) -> np.ndarray:
        return embed_cached([it.prompt for it in items], encoder, cache, progress=not args.quiet)

    def fit(
        train: list[LabeledPrompt], train_folds: np.ndarray, test: list[LabeledPrompt], test_folds: np.ndarray
    ) -> dict[str, np.ndarray]:
        _log(args, f"fitting baselines {', '.join(BASELINES)} on {len(train)} golden prompts, {len(test)} to score")
        train_emb, test_emb = embed(train), embed(test)
        return {
            name: crossfit_baseline(name, train, train_folds, train_emb, test, test_folds, test_emb)
            for name in BASELINES
        }

    out: dict[str, dict[str, np.ndarray]] = {}
    sources: dict[str, dict[str, str]] = {}
    groups: dict[Path | None, list[EvalSet]] = {}
    for es in sets:
        if es.benchmark != "mt-bench":
            groups.setdefault(es.crossfit, []).append(es)
    for crossfit, group in groups.items():
        folds = group[0].folds
        if folds is not None:
            train = _sample([it for it in golden if it.key in folds.assignments], _train_cap(args, folds.k))
            train_folds = np.array([folds.assignments[it.key] for it in train])
            desc = f"same folds as the routers (`{crossfit}/folds.json`)"
        else:
            train = _sample(golden, _train_cap(args, args.folds))
            train_folds = assign_folds(train, args.folds, scheme=args.fold_scheme, embeddings=embed(train))
            desc = f"own {args.fold_scheme} folds (k={args.folds}, near-duplicates kept together)"
        fold_of = {it.key: int(f) for it, f in zip(train, train_folds, strict=True)}
        test = list({it.key: it for es in group for it in es.items}.values())
        # A prompt left out of a --limit training sample is simply not trained on (-1: fit on all).
        test_folds = np.array([fold_of.get(it.key, folds.fold_of(it.key) if folds else -1) for it in test])
        scored = fit(train, train_folds, test, test_folds)
        index = {it.key: i for i, it in enumerate(test)}
        for es in group:
            rows = [index[it.key] for it in es.items]
            out[es.key] = {name: values[rows] for name, values in scored.items()}
            sources[es.key] = {name: f"{DESCRIPTIONS[name]}; {desc}" for name in BASELINES}
    for es in sets:
        if es.benchmark == "mt-bench":  # never in training: fit on all golden data
            train = _sample(golden, _train_cap(args, args.folds))
            out[es.key] = fit(train, np.zeros(len(train), dtype=np.int64), es.items, np.full(len(es.items), -1))
            sources[es.key] = {name: f"{DESCRIPTIONS[name]}; fit on all of them" for name in BASELINES}
    return out, sources


def _train_cap(args: argparse.Namespace, k: int) -> int | None:
    """With ``--limit N`` (all benchmarks), baselines train on at most N*k golden prompts."""
    cap = args.limits.get("*")
    return None if cap is None else cap * k


def _meta(args: argparse.Namespace, data_dir: Path, started: float, scorer: str) -> dict[str, str]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "command": _command(args),
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "git commit": commit or "unknown",
        "data": str(data_dir),
        "scorer": scorer,
        "strong / weak": f"{STRONG} / {WEAK}",
        "machine": f"{os.cpu_count()} CPU cores",
        "wall time": f"{time.perf_counter() - started:.0f} s",
    }


def default_routers(routers_dir: Path) -> list[str]:
    """Every router kind the scorer serves (registry order) that has an artifact ``routers_dir/<kind>``."""
    found = [k for k in ROUTER_KINDS if (routers_dir / k / MANIFEST_NAME).is_file()]
    if not found:
        raise ValueError(f"{routers_dir}: no router artifacts (<kind>/manifest.json); pass --routers")
    return found


def _command(args: argparse.Namespace) -> str:
    """The evaluation's settings as an equivalent command line (for the report)."""
    parts = ["ferryman eval"]
    parts += [f"--benchmark {b}" for b in args.benchmark or ["all"]]
    parts.append("--routers " + " ".join(args.routers))
    parts += [f"--crossfit-dir {d}" for d in args.crossfit_dir]
    parts.append(f"--routers-dir {args.routers_dir}")
    if args.baselines:
        parts.append("--baselines")
    parts += [f"--limit {v}" for v in args.limit or ()]
    parts.append(f"--random-seeds {args.random_seeds}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ferryman eval``."""
    started = time.perf_counter()
    try:
        if args.random_seeds < 0 or args.batch_size < 1:
            raise ValueError("--random-seeds must be >= 0 and --batch-size >= 1")
        if args.suite != "routellm":  # arena-bench-v1: N tiers or transfer (lab.eval.arena)
            args.routers = args.routers or list(ARENA_ROUTERS)
            return run_suite(args, _suite_meta(args))
        args.limits = parse_limits(args.limit)
        args.routers = args.routers or default_routers(args.routers_dir)
        data_dir = args.data_dir or default_data_dir()
        chosen = args.benchmark or ["all"]
        loso = "loso" in chosen
        commonsense = "commonsense" in chosen
        benchmarks = list(BENCHMARKS) if "all" in chosen else [b for b in chosen if b in BENCHMARKS]
        benchmarks = list(dict.fromkeys(benchmarks))
        sets = build_sets(args, data_dir, benchmarks)
    except (DataError, ValueError) as exc:
        print(f"ferryman eval: {exc}", file=sys.stderr)
        return 2
    load_at_start = os.getloadavg()[0]
    written: list[Path] = []
    try:
        if sets:
            results = _evaluate(args, data_dir, sets)
            meta = _meta(args, data_dir, started, args.scorer or "in-process (BatchScore over loopback gRPC)")
            meta["load average (1 min) at start / end"] = f"{load_at_start:.1f} / {os.getloadavg()[0]:.1f}"
            written += write_reports(results, args.out, meta, name=args.name)
            print(markdown_table(results))
        if loso:
            written += _evaluate_loso(args, data_dir, started, load_at_start)
        if commonsense:
            written += _evaluate_commonsense(args, data_dir, started)
    except (ArtifactError, DataError, ValueError, FileNotFoundError) as exc:
        print(f"ferryman eval: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _evaluate_loso(args: argparse.Namespace, data_dir: Path, started: float, load_at_start: float) -> list[Path]:
    """``--benchmark loso``: every source scored by the routers trained without it (lab.eval.loso)."""
    from lab.data.sources import SOURCES
    from lab.eval import loso

    routers = [r for r in dict.fromkeys(args.routers) if r != "random"]
    seeds = args.random_seeds if "random" in args.routers else 0
    score_cache = None if args.no_cache else args.score_cache
    encoder = loso.default_encoder(args.encoder_dir, args.threads) if args.baselines else None
    with tempfile.TemporaryDirectory(prefix="ferryman-random-") as tmp:
        results = loso.evaluate_loso(
            routers=routers,
            loso_root=args.loso_dir,
            data_dir=data_dir,
            sources=list(SOURCES),
            client_for=lambda artifacts: _client(args, artifacts, score_cache),
            random_artifacts=random_artifacts(Path(tmp), seeds),
            encoder=encoder,
            cache_dir=None if args.no_cache else args.cache_dir,
            log=lambda msg: _log(args, msg),
            progress=not args.quiet,
        )
    meta = _meta(args, data_dir, started, args.scorer or "in-process (BatchScore over loopback gRPC)")
    meta["command"] += f" --loso-dir {args.loso_dir}"
    meta["load average (1 min) at start / end"] = f"{load_at_start:.1f} / {os.getloadavg()[0]:.1f}"
    print(loso.markdown(results))
    return loso.write(results, args.out, meta)


def _evaluate_commonsense(args: argparse.Namespace, data_dir: Path, started: float) -> list[Path]:
    """``--benchmark commonsense``: the shipped routers (``--routers-dir``) on the common-sense pairs."""
    from lab.eval import commonsense

    pairs = commonsense.load_pairs()
    routers = [r for r in dict.fromkeys(args.routers) if r != "random"]
    artifacts = {r: args.routers_dir / r for r in routers}
    with _client(args, artifacts, None) as client:
        assert client is not None

        def score(router: str, prompts: list[str]) -> np.ndarray:
            jobs = [(router, f"commonsense-{i}", p) for i, p in enumerate(prompts)]
            return client.score(jobs, label=f"commonsense {router}", progress=not args.quiet)

        results = commonsense.evaluate(routers, pairs, score)
    meta = _meta(args, data_dir, started, args.scorer or "in-process (BatchScore over loopback gRPC)")
    meta["pairs"] = f"{len(pairs)} ({commonsense.PAIRS_FILE}; the easy prompt is the longer one in half)"
    print(commonsense.markdown(results))
    return commonsense.write(results, args.out, meta)


def _suite_meta(args: argparse.Namespace) -> dict[str, str]:
    meta = _meta(args, Path("."), time.perf_counter(), args.scorer or "in-process (BatchScore over loopback gRPC)")
    meta["command"] = f"ferryman eval --suite {args.suite} --routers {' '.join(args.routers)}"
    for key in ("data", "strong / weak", "wall time"):
        meta.pop(key, None)
    return meta


def _evaluate(args: argparse.Namespace, data_dir: Path, sets: list[EvalSet]) -> list[SetResult]:
    """Score every set (one scorer per artifact universe) and compute all rows."""
    routers = [r for r in dict.fromkeys(args.routers) if r != "random"]
    seeds = args.random_seeds if "random" in args.routers else 0
    baselines, baseline_sources = _baseline_scores(args, data_dir, sets) if args.baselines else ({}, {})
    results: list[SetResult] = []
    score_cache = None if args.no_cache else args.score_cache
    # One scorer per artifact universe: fold artifacts of different schemes share names.
    groups: dict[Path | None, list[EvalSet]] = {}
    for es in sets:
        groups.setdefault(es.crossfit, []).append(es)
    with tempfile.TemporaryDirectory(prefix="ferryman-random-") as tmp:
        rand = random_artifacts(Path(tmp), seeds) if args.scorer is None else {}
        for crossfit, group in groups.items():
            plans = {es.key: [plan_router(r, es, args.routers_dir) for r in routers] for es in group}
            artifacts = dict(rand)
            for plist in plans.values():
                for plan in plist:
                    artifacts.update(plan.artifacts)
            where = f"{args.scorer}" if args.scorer else f"in-process scorer over {len(artifacts)} artifacts"
            _log(args, f"{', '.join(es.key for es in group)}: {where}{f' ({crossfit})' if crossfit else ''}")
            with _client(args, artifacts, score_cache) as client:
                remote_random = client is not None and seeds > 0 and "random" in client.routers
                random_names = list(rand) if rand else (["random"] if remote_random else [])
                for es in group:
                    res = evaluate_set(
                        args,
                        client,
                        es,
                        plans[es.key],
                        random_names,
                        baselines.get(es.key, {}),
                        baseline_sources.get(es.key, {}),
                    )
                    results.append(res)
    order = {es.key: i for i, es in enumerate(sets)}
    return sorted(results, key=lambda r: order[r.key])
