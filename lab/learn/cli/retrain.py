"""``ferryman learn retrain``: the router's base plus a correction learnt from judged traffic -> a new version.

Reads an exported store file (Arena 55k schema; ``ferryman learn export``), keeps the battles of
``--strong`` vs ``--weak``, holds a slice of the prompts back for ``ferryman learn promote``, and
fits the correction on the rest on top of the router's base version (trained on the public data).
The candidate is calibrated on the traffic's own prompts and written as ``versions/vNNNN`` of the
router directory; it does not serve until promoted.
"""

from __future__ import annotations

import argparse
import time

from lab.learn import cli
from lab.learn.retrain import (
    candidate_provenance,
    check_prior,
    fit_on_samples,
    split_holdout,
    traffic_label,
    write_candidate,
)
from lab.learn.scoring import load_scoring_router
from lab.learn.traffic import load_traffic
from scorer import versions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    cli.traffic_args(parser, defaults=False)
    cli.router_dir_arg(parser)
    parser.add_argument("--prior", default=versions.BASE, help="version the correction is learnt on top of")
    cli.learn_args(parser)
    cli.embedder_args(parser)


def run(args: argparse.Namespace) -> int:
    return cli.guarded("retrain", lambda: _retrain(args))


def _retrain(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    config = cli.config(args)
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
    correction = fit_on_samples(prior, train, embedder, config)
    weight_norm = float((correction.w**2).sum() ** 0.5)
    print(f"correction: prior weight {correction.prior_scale:.3f}, bias {correction.b:+.3f}, |w| {weight_norm:.3f}")
    label = traffic_label(args.traffic)
    with versions.new_version(args.router_dir) as (version, tmp):
        prov = candidate_provenance(
            prior,
            prior_version,
            correction,
            config,
            train=len(train),
            held=len(held),
            traffic=label,
            wall_s=time.perf_counter() - t0,
        )
        write_candidate(
            prior,
            correction,
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
