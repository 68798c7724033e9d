"""Parse a ``ferryman`` argument list with the real subcommand parser, so unknown flags fail."""

from __future__ import annotations

import argparse
import importlib

from ferryman.cli import COMMANDS


def parse_ferryman_args(args: list[str]) -> tuple[str, argparse.Namespace]:
    """(subcommand, parsed options) for ``ferryman <args>``."""
    command, rest = args[0], args[1:]
    assert command in COMMANDS, f"unknown ferryman subcommand {command!r}"
    module = importlib.import_module(COMMANDS[command][0])
    parser = argparse.ArgumentParser(prog=f"ferryman {command}", exit_on_error=False)
    module.add_arguments(parser)
    return command, parser.parse_args(rest)
