"""Log lines of every Ferryman process (scorer, gateway, the gateway's learning worker): one format, on stderr,
each line with its time, level and logger."""

from __future__ import annotations

import logging


def configure_logging(level: str | int, process: str = "") -> None:
    """Ferryman's log format at ``level``; httpx's one INFO line per provider call only at DEBUG.

    The services log what an operator acts on (degraded routing, breakers, outages, start and stop); a
    line for every provider request would be one per client request, on the serving loop. ``process``
    names a helper process (the gateway's learning worker) in each of its lines.
    """
    who = f"{process} " if process else ""
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
