"""SIGTERM and SIGINT for the servers, also when one runs as a container's PID 1.

The kernel applies no default action to a signal sent to PID 1 that has no handler for it: a
server that is PID 1 in a container without an init ignores SIGTERM until it installs a handler,
and ``docker stop`` or a pod's termination then waits out its grace period and kills it. So the
servers handle SIGTERM from their first line: :func:`exit_on_term` (first thing in
``ferryman.cli.main``, before any subcommand is imported) ends start-up at once with status 143, as
the default action would, and :func:`stop_event` (first thing in the servers' event loop) turns
SIGTERM and SIGINT into an event that starts the drain, including while the scorer is still
loading its routers. Only the interpreter's own start (before ``main``) is left uncovered.
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

#: The exit status the default action of SIGTERM gives (128 + 15).
TERM_STATUS = 128 + signal.SIGTERM


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_on_term() -> None:
    """Until :func:`stop_event` takes over, SIGTERM exits at once with status 143 (also as PID 1)."""
    signal.signal(signal.SIGTERM, _exit)


def stop_event() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT (call inside the running loop). A SIGINT this process was
    started ignoring stays ignored (as Python itself leaves it): ``ferryman up`` starts the scorer so, and stops
    it after the gateway's drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        loop.add_signal_handler(sig, stop.set)
    return stop
