"""``ferryman learn SUBCOMMAND``: learning from the user's traffic (see docs/learning.md).

Subcommand modules are imported only when chosen; each exposes ``add_arguments(parser)`` and
``run(args) -> int``. The gateway half (the store) and the lab half (retraining, promotion) each
add their own entries here.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Protocol, cast

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "export": ("gateway.learning.export", "write the store's judged comparisons in the Chatbot Arena 55k schema"),
    "report": ("gateway.learning.report", "what the store holds; live quality gap, PGR, savings, APGR per policy"),
    "tenant-id": ("gateway.learning.tenants", "print the tenant id of client keys read from stdin (for opt-outs)"),
}


class _Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lines = "\n".join(f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items())
    parser.epilog = f"subcommands:\n{lines}\n\nRun `ferryman learn SUBCOMMAND --help` for its options."
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("subcommand", choices=sorted(SUBCOMMANDS), metavar="SUBCOMMAND", help="what to do")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of the subcommand")


def run(args: argparse.Namespace) -> int:
    module_name, text = SUBCOMMANDS[args.subcommand]
    module = cast(_Subcommand, importlib.import_module(module_name))
    parser = argparse.ArgumentParser(
        prog=f"ferryman learn {args.subcommand}",
        description=text,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)
