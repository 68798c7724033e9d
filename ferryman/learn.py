"""``ferryman learn SUBCOMMAND``: learning from the user's traffic (see docs/learning.md).

The gateway half (the store: export, report, tenant ids) and the lab half (retraining, promotion,
the learning curve) each add their own entries to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse

from ferryman import subcommands

# name -> (module, one-line help); modules are imported only when chosen
SUBCOMMANDS: subcommands.Table = {
    "export": ("gateway.learning.export", "write the store's judged comparisons in the Chatbot Arena 55k schema"),
    "report": ("gateway.learning.report", "what the store holds; live quality gap, PGR, savings, APGR per policy"),
    "judge": ("gateway.learning.rejudge", "judge again the stored pairs the judge gave no label (failed or unclear)"),
    "tenant-id": ("gateway.learning.tenants", "print the tenant id of client keys read from stdin (for opt-outs)"),
    "retrain": ("lab.learn.cli.retrain", "the router's base updated from an export (mf, sw) -> a new version"),
    "promote": ("lab.learn.cli.promote", "serve a candidate version only if it beats the serving one beyond the noise"),
    "rollback": ("lab.learn.cli.rollback", "serve the version that served before (one command)"),
    "versions": ("lab.learn.cli.versions", "a router directory's versions, the serving one and the pointer's history"),
    "curve": ("lab.learn.cli.curve", "learning-curve simulation: APGR after 0..1,000 judged samples of a traffic file"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subcommands.add_arguments(parser, SUBCOMMANDS, "subcommand")


def run(args: argparse.Namespace) -> int:
    return subcommands.run(args, SUBCOMMANDS, "ferryman learn")
