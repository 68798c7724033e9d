"""``ferryman learn rollback``: serve the version that served before the current one was promoted.

One command, no retraining: it moves the router's ``CURRENT`` pointer (``--to VERSION`` for a
specific one, ``base`` for the shipped artifact) and records the move in ``history.jsonl``. A
scorer watching the directory switches within its reload interval.
"""

from __future__ import annotations

import argparse

from lab.learn import cli
from scorer import versions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    cli.router_dir_arg(parser)
    parser.add_argument("--to", default="", help="a specific version instead of the previous one (base: shipped)")


def run(args: argparse.Namespace) -> int:
    return cli.guarded("rollback", lambda: _rollback(args))


def _rollback(args: argparse.Namespace) -> int:
    target = args.to or versions.previous_version(args.router_dir)
    old = versions.set_current(args.router_dir, target, action="rollback")
    print(f"rolled back: {args.router_dir.name} now serves {target} (was {old})")
    return 0
