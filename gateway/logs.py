"""The gateway's log lines, one format for the serving process and its learning worker."""

from __future__ import annotations

import logging


def configure_logging(level: str | int, process: str = "") -> None:
    """The gateway's log format at ``level``; httpx's one INFO line per provider call only at DEBUG.

    The gateway logs what an operator acts on (degraded routing, breakers, outages); a line for every
    provider request would be one per client request, on the serving loop. ``process`` names another
    process of the gateway (the learning worker) in each of its lines.
    """
    who = f"{process} " if process else ""
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
