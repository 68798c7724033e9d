"""``ferryman learn retrain``: the router's base updated by judged traffic -> a new version.

Reads an exported store file (Arena 55k schema; ``ferryman learn export``), keeps the battles of
``--strong`` vs ``--weak``, holds a slice of the prompts back for ``ferryman learn promote``, and
updates the router's base version (trained on the public data) with the rest: an mf router gets a
correction fitted on top of it (--l2, --prior-l2), an sw router gets the judged samples appended as
battles of its strong vs weak model (its encoder, projection and settings unchanged). A bert router
(whose score is a 3-class head compiled into its ONNX graph) is trained again, as ``ferryman train
bert`` trains it: by the recipe it was trained with (rebuilt from its manifest's provenance; when
that does not record it, e.g. a --battles file, give --recipe FILE), on the recipe's data (under
--data-dir) plus the training part as battles of its strong vs weak model, weighted like the
recipe's arena battles, its graphs built as ``ferryman build routers`` builds them. The candidate
is calibrated on the traffic's own prompts and written as ``versions/vNNNN`` of the router
directory; it does not serve until promoted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lab.learn import cli
from lab.learn.retrain import (
    candidate_provenance,
    check_prior,
    describe,
    fit_update,
    split_holdout,
    traffic_label,
    write_candidate,
)
from lab.learn.scoring import load_scoring_router
from lab.learn.traffic import load_traffic
from lab.train.recipe import load_recipe
from scorer import versions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    cli.traffic_args(parser, defaults=False)
    cli.router_dir_arg(parser)
    parser.add_argument("--prior", default=versions.BASE, help="version the update is learnt on top of")
    cli.learn_args(parser)
    parser.add_argument(
        "--recipe",
        help="bert prior: the recipe (name or .toml file) to train the candidate with (default: the one the prior's "
        "manifest records; required when it records none, e.g. a router trained on a --battles file)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="bert prior: public data root the recipe's data is under (default $FERRYMAN_DATA)"
    )
    cli.embedder_args(parser)


def run(args: argparse.Namespace) -> int:
    return cli.guarded("retrain", lambda: _retrain(args))


def _retrain(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    config = cli.config(args)
    recipe = load_recipe(args.recipe) if args.recipe else None  # a bad recipe before any work
    embedder = cli.embedder(args)
    traffic = load_traffic(args.traffic, args.strong, args.weak)
    print(traffic.summary(), flush=True)
    prior_path = versions.version_path(args.router_dir, args.prior)
    prior = load_scoring_router(prior_path, embedder, strong=args.router_strong, weak=args.router_weak)
    check_prior(prior)
    prior_version = versions.Resolved(args.router_dir, args.prior, prior_path).artifact_version
    train, held = split_holdout(traffic.samples, config)
    print(f"training part {len(train)} samples, held-back slice {len(held)} (for `ferryman learn promote`)")
    if not held:
        print(
            "note: nothing is held back (--holdout 0 or too little traffic), so `ferryman learn promote` cannot gate "
            "this candidate: it will refuse it"
        )
    update = fit_update(prior, train, embedder, config, recipe=recipe, data_dir=args.data_dir)
    print(describe(update))
    label = traffic_label(args.traffic)
    with versions.new_version(args.router_dir) as (version, tmp):
        prov = candidate_provenance(
            prior,
            prior_version,
            update,
            config,
            train=len(train),
            held=len(held),
            traffic=label,
            wall_s=time.perf_counter() - t0,
        )
        write_candidate(
            prior,
            update,
            tmp,
            version=version,
            calibration_prompts=traffic.prompts,
            calibration_label=f"judged traffic {label}",
            embedder=embedder,
            prov=prov,
        )
    print(f"candidate {version} written to {args.router_dir / versions.VERSIONS_DIR / version} (not serving yet)")
    print(
        f"next: ferryman learn promote --router-dir {args.router_dir} --candidate {version} "
        f"--traffic {args.traffic} --strong {args.strong!r} --weak {args.weak!r}"
    )
    return 0
