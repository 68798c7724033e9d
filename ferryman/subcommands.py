"""Commands made of subcommands (``ferryman bench NAME``, ``ferryman learn NAME``): one table each.

A table maps a name to ``(module, one-line help)``; the module, imported only when chosen, exposes
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Protocol, cast

from ferryman.cli import HelpFormatter

Table = dict[str, tuple[str, str]]


class _Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def add_arguments(parser: argparse.ArgumentParser, table: Table, noun: str) -> None:
    """A positional ``noun`` chosen from ``table`` (listed in the help), then its own options."""
    width = max(len(n) for n in table)
    lines = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in table.items())
    parser.epilog = f"{noun}s:\n{lines}\n\nRun `{parser.prog} {noun.upper()} --help` for the options of one."
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("name", choices=sorted(table), metavar=noun.upper(), help=f"the {noun} to run")
    # REMAINDER positionals count as required: without this, a bare command says "options" is required too
    parser.add_argument("options", nargs=argparse.REMAINDER, help=f"options of the {noun}").required = False


def run(args: argparse.Namespace, table: Table, prog: str) -> int:
    """Import the chosen module, parse its options, run it."""
    module_name, text = table[args.name]
    module = cast(_Subcommand, importlib.import_module(module_name))
    parser = argparse.ArgumentParser(prog=f"{prog} {args.name}", description=text, formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)
