"""``ferryman learn promote``: serve a candidate only if it beats the serving version beyond the noise.

Both versions score the held-back slice of the judged traffic (the prompts ``retrain`` never
trained on, by the salted hash recorded in the candidate); the promotion rule of
``lab.learn.gate`` decides: a paired bootstrap 95 % interval of the routing-curve gain on the slice must
lie wholly above 0, with at least 30 non-tie verdicts there. In the learning-curve simulation it
promoted 26 of 480 candidates on the tuning rows (40 splits), none of them not better on fresh
traffic: it needs ~1,000 judged samples and a gain beyond the slice's noise (docs/learning.md,
"Held-back slice and the promotion rule"). Exit 0:
promoted (the router's ``CURRENT`` now names the candidate, the move is in ``history.jsonl`` with
its evidence); 3: the gate kept the serving version; 2: bad input.
"""

from __future__ import annotations

import argparse

import numpy as np

from lab.learn import cli
from lab.learn.gate import paired_bootstrap_gate
from lab.learn.retrain import LearnConfig, split_holdout
from lab.learn.scoring import load_scoring_router
from lab.learn.traffic import load_traffic
from scorer import versions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    cli.traffic_args(parser, defaults=False)
    cli.router_dir_arg(parser)
    parser.add_argument("--candidate", required=True, help="version to promote (e.g. v0002)")
    parser.add_argument("--dry-run", action="store_true", help="run the gate, do not move the pointer")
    cli.gate_args(parser)
    cli.embedder_args(parser)


def run(args: argparse.Namespace) -> int:
    return cli.guarded("promote", lambda: _promote(args))


def _promote(args: argparse.Namespace) -> int:
    rule = cli.gate_rule(args)  # a bad --level / --resamples before any work
    router_dir = args.router_dir
    candidate_path = versions.existing_version_path(router_dir, args.candidate)
    serving = versions.resolve(router_dir)
    if serving.version == args.candidate:
        raise ValueError(f"{args.candidate} is already serving")
    embedder = cli.embedder(args)
    candidate = load_scoring_router(candidate_path, embedder, strong=args.router_strong, weak=args.router_weak)
    prov = candidate.artifact.manifest.provenance
    if "learn_cfg_salt" not in prov:
        raise ValueError(f"{candidate_path}: not a candidate written by `ferryman learn retrain` (no held-back slice)")
    config = LearnConfig(holdout=float(prov["learn_cfg_holdout"]), salt=prov["learn_cfg_salt"])
    if config.holdout == 0:  # was: "only 0 non-tie verdicts in the held-back slice (need 30); judge more traffic"
        raise ValueError(
            f"{args.candidate} was retrained with --holdout 0: no prompts were held back, so the gate has nothing to "
            "test it on (more traffic would not help); retrain with --holdout > 0 (default 0.2)"
        )
    served = load_scoring_router(serving.path, embedder, strong=candidate.strong, weak=candidate.weak)
    traffic = load_traffic(args.traffic, args.strong, args.weak)
    _, held = split_holdout(traffic.samples, config)
    prompts = [s.prompt for s in held]
    print(f"held-back slice: {len(held)} of {len(traffic.samples)} judged samples", flush=True)
    result = paired_bootstrap_gate(
        candidate.score(prompts, embedder),
        served.score(prompts, embedder),
        np.array([s.verdict for s in held]),
        rule,
    )
    if result.apgr_undefined:
        apgrs = f"APGR undefined on the held-back slice ({result.apgr_undefined})"
    else:
        apgrs = (
            f"serving {serving.artifact_version}: APGR {result.apgr_serving:.4f}; "
            f"candidate {args.candidate}: APGR {result.apgr_candidate:.4f}"
        )
    print(f"{apgrs}; {result.reason}")
    if not result.promote:
        print(f"not promoted: {serving.version} keeps serving")
        return cli.GATE_REFUSED
    if args.dry_run:
        print("gate passed (dry run: the pointer was not moved)")
        return 0
    evidence = {**result.as_dict(), "traffic": args.traffic.name}
    old = versions.set_current(router_dir, args.candidate, action="promote", evidence=evidence)
    print(
        f"promoted: {router_dir.name} now serves {args.candidate} (was {old}); "
        f"roll back with `ferryman learn rollback --router-dir {router_dir}`"
    )
    return 0
