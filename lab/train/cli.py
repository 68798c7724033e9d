"""``ferryman train KIND|crossfit``: train routers into artifact directories, from recipes.

A recipe (``lab/recipes/<name>.toml``, see :mod:`lab.train.recipe`) holds the kind, seed, data,
encoder window and settings; ``ferryman train mf`` trains the shipped ``mf`` recipe,
``--recipe FILE`` another, ``--set [NAME.]KEY=VALUE`` changes one value and ``--battles`` /
``--golden`` replace the recipe's data. With golden labels, ``--exclude-folds folds.json --fold i``
leaves fold ``i`` out (cross-fitting); ``crossfit`` makes the folds and trains every fold's
artifact of every recipe in one go. MT-Bench is never trained on. Each run is deterministic for a
seed and prints its wall time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ferryman import paths
from ferryman.cli import HelpFormatter
from lab.data.arena_grades import TRANSFER_PAIRS, parse_pair
from lab.data.benchmarks import STRONG, WEAK, default_data_dir
from lab.train.recipe import Recipe, describe, load_recipe, shipped_names, train_recipe
from scorer.routers import ROUTER_KINDS


def _run_args(p: argparse.ArgumentParser) -> None:
    """Options that do not change what is trained: where things are, threads, device."""
    p.add_argument("--data-dir", type=Path, help="public data root or routellm-benchmarks (default $FERRYMAN_DATA)")
    p.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder (make setup)")
    p.add_argument("--cache-dir", type=Path, default=paths.cache_dir(), help="embedding cache")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime")
    p.add_argument("--device", default="cpu", help="BERT: torch device (cpu, cuda)")
    p.add_argument("--no-build", action="store_true", help="BERT: write the delta only (ferryman build routers later)")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--battles", type=Path, help="pairwise battles, Chatbot Arena 55k schema (replaces the recipe's)")
    p.add_argument("--golden", help="benchmark labels to train on, e.g. mmlu,gsm8k (replaces the recipe's; '' = none)")
    p.add_argument(
        "--arena",
        help="arena sources to train on, e.g. arena-bench-v1,arena-human-1k (replaces the recipe's; '' = none)",
    )
    p.add_argument("--strong", default=STRONG, help="default strong model of the artifact")
    p.add_argument("--weak", default=WEAK, help="default weak model of the artifact")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="[NAME.]KEY=VALUE",
        help="override one recipe value (a setting, seed, length_beta, max_tokens, head_tokens, layers); "
        "NAME. limits it to one recipe",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ferryman train``."""
    parser.description = (
        "Train a router into an artifact directory the scorer loads (docs/artifacts.md), from a recipe "
        "(lab/recipes/<name>.toml: data, encoder window, settings; docs/training.md). Data: the recipe's, or "
        "--battles (Chatbot Arena 55k schema) and/or --golden mmlu,gsm8k (benchmark labels; never mt-bench). "
        "`crossfit` writes k fold artifacts per recipe that each leave one fold of the golden prompts out. "
        "Run `ferryman train KIND --help` for a kind's settings."
    )
    sub = parser.add_subparsers(
        dest="router", required=True, metavar="{" + ",".join([*ROUTER_KINDS, "crossfit", "loso"]) + "}"
    )
    for kind in ROUTER_KINDS:
        from lab.train.jobs import trainer_for

        trainer = trainer_for(kind)
        p = sub.add_parser(
            kind,
            help=f"train a {kind} router: {trainer.help}",
            description=f"Train a {kind} router ({trainer.help}). Recipe {describe(load_recipe(kind))}.",
            formatter_class=HelpFormatter,
        )
        p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
        p.add_argument("--name", help="router name in the manifest (default: the directory name)")
        p.add_argument(
            "--recipe", help=f"recipe name or .toml file (default: the shipped lab/recipes/{kind}.toml, if any)"
        )
        _data_args(p)
        p.add_argument("--exclude-folds", type=Path, help="folds.json (cross-fitting): leave --fold out")
        p.add_argument("--fold", type=int, help="fold to leave out of training")
        _run_args(p)
    p = sub.add_parser(
        "crossfit",
        help="make k folds and train every fold's artifact of each recipe",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--routers",
        help="recipes to cross-fit, comma-separated: shipped names or .toml files (default: each one that trains)",
    )
    _data_args(p)
    p.add_argument("--out", type=Path, default=Path("build/crossfit"), help="writes <scheme>/folds.json + artifacts")
    p.add_argument(
        "--schemes",
        default="prompt,subject",
        help="fold schemes: prompt, subject (MMLU/GSM8K folds), arena (arena-bench-v1 folds for `ferryman eval "
        "--suite tiers|transfer`: each recipe plus every model's arena battles, and in-pair routers for --pairs)",
    )
    p.add_argument(
        "--pairs",
        default=",".join(f"{s}:{w}" for s, w in TRANSFER_PAIRS),
        help="arena scheme: STRONG:WEAK pairs, comma-separated, to train in-pair routers for (the transfer reference)",
    )
    p.add_argument("--k", type=int, default=5, help="number of folds")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    p.add_argument("--folds-only", action="store_true", help="only (re)make the folds.json files")
    _run_args(p)
    p = sub.add_parser(
        "loso",
        help="train every recipe once per public source, without that source (leave-one-source-out)",
        description=(
            "For each source (mmlu, gsm8k, arena-bench-v1, arena-human-1k) train every recipe without that "
            "source's prompts and their near copies into OUT/<source>/<router>/, for `ferryman eval --benchmark loso`."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--routers",
        help="recipes to train, comma-separated: shipped names or .toml files (default: each one that trains)",
    )
    p.add_argument("--sources", help="sources to leave out, comma-separated (default: every public source)")
    _data_args(p)
    p.add_argument("--out", type=Path, default=Path("build/loso"), help="writes <source>/<router>/ artifacts")
    _run_args(p)


def _split(value: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if allowed is not None and n not in allowed]
    if bad or not names:
        raise ValueError(f"bad {what} {value!r}" + (f"; choose from {', '.join(allowed)}" if allowed else ""))
    return names


def _trained_shipped() -> list[str]:
    """Shipped recipes whose kind is trained on data (cross-fitting has something to leave out)."""
    from lab.train.jobs import trainer_for

    return [n for n in shipped_names() if trainer_for(load_recipe(n).kind).needs_data]


def _recipes(names: list[str], args: argparse.Namespace) -> list[Recipe]:
    """Recipes with ``--set`` applied and the data flags replacing their data."""
    from dataclasses import replace

    from lab.train.data import parse_arena, parse_golden

    recipes = [load_recipe(n, args.overrides) for n in names]
    prefixes = {o.partition("=")[0].rpartition(".")[0] for o in args.overrides} - {""}
    unknown = prefixes - {r.name for r in recipes} - set(ROUTER_KINDS) - set(shipped_names())
    if unknown:
        raise ValueError(f"--set names unknown router(s) {', '.join(sorted(unknown))}")
    out = []
    for r in recipes:
        if args.golden is not None:
            r = replace(r, golden=tuple(parse_golden(args.golden)))
        if args.arena is not None:
            r = replace(r, arena=tuple(parse_arena(args.arena)))
        if args.battles is not None:
            r = replace(r, battles=str(args.battles.resolve()))
        out.append(r)
    return out


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        if args.router in ("crossfit", "loso"):
            names = _split(args.routers, None, "routers") if args.routers else _trained_shipped()
            recipes = _recipes(names, args)
        else:
            recipes = _recipes([args.recipe or args.router], args)
        _train(args, recipes)
    except (ValueError, OSError) as exc:
        print(f"ferryman train: error: {exc}")
        return 2
    print(f"wall time: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


def _train(args: argparse.Namespace, recipes: list[Recipe]) -> None:
    from lab.data.report import DataError
    from lab.train.jobs import Target, TrainContext, trainer_for

    if any(trainer_for(r.kind).needs_data for r in recipes):  # training uses torch (MF, BERT)
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        import torch

        torch.set_num_threads(args.threads)
    ctx = TrainContext(
        encoder_dir=args.encoder_dir,
        cache_dir=args.cache_dir,
        threads=args.threads,
        device=args.device,
        build_onnx=not args.no_build,
    )
    try:
        if args.router == "crossfit":
            from lab.train.crossfit import CrossfitPlan, run_crossfit

            data_dir = args.data_dir or default_data_dir()
            schemes = _split(args.schemes, ("prompt", "subject", "arena"), "schemes")
            plan = CrossfitPlan(
                out=args.out,
                schemes=[s for s in schemes if s != "arena"],
                recipes=recipes,
                k=args.k,
                seed=args.seed,
                data_dir=data_dir,
                strong=args.strong,
                weak=args.weak,
                folds_only=args.folds_only,
            )
            if "arena" in schemes:
                from lab.train.arena_crossfit import ArenaCrossfitPlan, run_arena_crossfit

                pairs = [parse_pair(p) for p in _split(args.pairs, None, "pairs")] if args.pairs else []
                arena = ArenaCrossfitPlan(
                    args.out, recipes, args.k, args.seed, data_dir, pairs, args.strong, args.weak, args.folds_only
                )
                run_arena_crossfit(arena, ctx)
            if plan.schemes:
                run_crossfit(plan, ctx)
            return
        if args.router == "loso":
            from lab.data.sources import SOURCES
            from lab.train.loso import LosoPlan, run_loso

            sources = _split(args.sources, SOURCES, "sources") if args.sources else list(SOURCES)
            loso = LosoPlan(args.out, sources, recipes, args.data_dir or default_data_dir(), args.strong, args.weak)
            run_loso(loso, ctx)
            return
        (recipe,) = recipes
        if recipe.kind != args.router:
            raise ValueError(f"{recipe.source} trains a {recipe.kind} router, not {args.router}")
        trainer = trainer_for(recipe.kind)
        print(f"recipe {describe(recipe)}", flush=True)
        target = Target(args.out, args.name or args.out.name, args.strong, args.weak, recipe.seed)
        data = None
        if trainer.needs_data:
            from lab.data.folds import FoldAssignment
            from lab.train.recipe import recipe_data

            exclude = FoldAssignment.load(args.exclude_folds) if args.exclude_folds else None
            data = recipe_data(recipe, args.data_dir, exclude=exclude, fold=args.fold)
            print(f"training data: {data.provenance()}", flush=True)
        train_recipe(recipe, data, target, ctx)
    except DataError as exc:
        raise ValueError(str(exc)) from exc
