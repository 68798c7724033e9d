"""The ``ferryman`` command: one entry point dispatching to every subcommand.

Subcommand modules are imported lazily so that ``ferryman scorer`` never
imports training code (torch) and ``ferryman --help`` is instant. Each module
exposes ``add_arguments(parser)`` and ``run(args) -> int``; a module may also name
subcommands beside its own form (``SUBCOMMANDS``, ``ferryman.subcommands.Table``:
``ferryman calibrate points`` beside ``ferryman calibrate ARTIFACT ...``), chosen
when the first argument is one of them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from ferryman import signals

# name -> (module, one-line help). Modules are imported only when chosen.
COMMANDS: dict[str, tuple[str, str]] = {
    "scorer": ("scorer.main", "serve the scorer gRPC service (routers as ONNX models)"),
    "score": ("scorer.score_cli", "score prompts locally, without a server, and print JSON"),
    "gateway": ("gateway.main", "serve the gateway (gRPC + OpenAI-compatible HTTP)"),
    "health": ("ferryman.health", "ask a server's grpc.health.v1 status; exit 0 when SERVING (images' HEALTHCHECK)"),
    "up": ("ferryman.up", "run scorer and gateway together (what `make run` uses; --demo: no keys needed)"),
    "demo-provider": ("gateway.demo", "serve the built-in demo LLM provider (canned answers; `ferryman up --demo`)"),
    "build": ("scorer.graphs.cli", "build serving files: the ONNX encoder and trained router graphs (no torch)"),
    "train": ("lab.train.cli", "train a router (mf, bert, sw) into an artifact directory"),
    "calibrate": (
        "lab.eval.calibrate",
        "store strong-call-share thresholds in an artifact; `calibrate points`: fit a policy's operating points",
    ),
    "eval": ("lab.eval.cli", "evaluate routers on the RouteLLM benchmarks (APGR, CPT, plots)"),
    "data": ("lab.data.cli", "convert public benchmark labels to the Chatbot Arena 55k schema"),
    "learn": ("ferryman.learn", "learn from the user's traffic: export, report, retrain, promote, rollback, curve"),
    "bench": ("bench.cli", "benchmarks that print throughput/latency ratios"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, except where there is none to show (None, "", False: the
    option is off or computed) or its help already says it: never "(default: None)" beside a help
    that names the real default. Descriptions are module docstrings: their reST double backticks are
    dropped (``--samples`` prints as --samples)."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(text.replace("``", ""))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = (action.help or "").replace("``", "")
        default = action.default
        if default is None or default is False or default == "" or re.search(r"\(default|default:|; default", text):
            return text
        return (super()._get_help_string(action) or "").replace("``", "")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= low``, else the usual one-line usage error naming the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The optional extra of this package (``lab``, ``dev``) that provides the module ``exc`` names, or None.

    Read from the installed package's metadata (``pyproject.toml``'s optional dependencies), so no list of
    names is kept here; a distribution's module is its normalised name (torch, matplotlib, transformers).
    """
    top = (exc.name or "").split(".")[0].lower()
    try:
        requirements = importlib.metadata.requires("ferryman") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        found = re.match(r"\s*([A-Za-z0-9_.-]+).*;.*extra\s*==\s*['\"]([\w-]+)['\"]", requirement)
        if top and found and re.sub(r"[-.]+", "_", found.group(1)).lower() == top:
            return found.group(2)
    return None


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _overview() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "commands:\n" + "\n".join(lines) + "\n\nRun `ferryman COMMAND --help` for the options of one command."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ferryman`` console script."""
    # SIGTERM ends any command at once with status 143, also as a container's PID 1 (which has no
    # default action for it); the servers then hand it to their event loop to drain (ferryman.signals).
    signals.exit_on_term()
    args = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(
        prog="ferryman",
        description="Ferryman routes each LLM request to the cheapest model that will answer it well.",
        epilog=_overview(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"ferryman {_version()}")
    top.add_argument("command", nargs="?", choices=sorted(COMMANDS), metavar="COMMAND")
    if not args or args[0] not in COMMANDS:
        ns = top.parse_args(args[:1])
        if ns.command is None:
            top.print_help()
            return 2
    name = args[0]
    module_name, text = COMMANDS[name]
    module = cast(_Command, importlib.import_module(module_name))
    rest = args[1:]
    beside: dict[str, tuple[str, str]] = getattr(module, "SUBCOMMANDS", {})
    if rest and rest[0] in beside:
        module_name, text = beside[rest[0]]
        name, rest = f"{name} {rest[0]}", rest[1:]
        module = cast(_Command, importlib.import_module(module_name))
    parser = argparse.ArgumentParser(prog=f"ferryman {name}", description=text, formatter_class=HelpFormatter)
    module.add_arguments(parser)
    try:
        return int(module.run(parser.parse_args(rest)) or 0)
    except BrokenPipeError:  # `ferryman learn report | head`: the reader has gone; stop without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141  # as a shell reports a process ended by SIGPIPE
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        print(
            f"ferryman {name}: this needs the Python package {exc.name!r}, part of the {extra!r} extra that the "
            f"serving set-up (`make run`, `make setup`) leaves out; install it with `make setup-lab` "
            f"(or: pip install -e '.[{extra}]')",
            file=sys.stderr,
        )
        return 2


def _version() -> str:
    from ferryman import __version__

    return __version__


if __name__ == "__main__":
    raise SystemExit(main())
