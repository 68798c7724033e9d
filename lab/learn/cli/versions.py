"""``ferryman learn versions``: a router directory's versions, the serving one (*) and the pointer's history."""

from __future__ import annotations

import argparse

from lab.learn import cli
from scorer import versions
from scorer.artifacts import load_artifact


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    cli.router_dir_arg(parser)
    parser.add_argument("--history", type=int, default=10, help="how many of the latest pointer moves to show")


def run(args: argparse.Namespace) -> int:
    return cli.guarded("versions", lambda: _versions(args))


def _versions(args: argparse.Namespace) -> int:
    current = versions.current_version(args.router_dir)
    for version in versions.list_versions(args.router_dir):
        prov = load_artifact(versions.version_path(args.router_dir, version), verify_hashes=False).manifest.provenance
        mark = "*" if version == current else " "
        samples = prov.get("learn_train_samples")
        extra = f", {samples} judged samples" if samples else ""
        print(f"{mark} {version:<6} {prov.get('date', '?'):<21} trained on {prov.get('trained_on', '?')}{extra}")
    for entry in versions.history(args.router_dir)[-args.history :] if args.history > 0 else []:
        print(f"  {entry.get('time')}: {entry.get('action')} {entry.get('from')} -> {entry.get('to')}")
    return 0
