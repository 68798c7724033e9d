"""A dependency's down window: after a failure it is left alone for ``retry_s``.

Shared by the guards in front of optional state stores (gateway/shared_redis.py for Redis-shared
replica state, gateway/learning/guard.py for the learning store): callers ask :meth:`usable`
before a call, report :meth:`failed` or :meth:`succeeded` after it, and log the transitions these
return (one line when an outage starts, one when it ends), so a dead dependency costs one
timeout per ``retry_s`` and one log line per outage, not one per request.
"""

from __future__ import annotations

import time


class Outage:
    """Whether a dependency is in a down period, and when an outage starts or ends."""

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self._down_until = 0.0
        self._down = False

    def usable(self) -> bool:
        """Not in a down period."""
        return time.monotonic() >= self._down_until

    def remaining(self) -> float:
        """Seconds the down period still lasts (0 when usable)."""
        return max(0.0, self._down_until - time.monotonic())

    def extend(self, seconds: float) -> None:
        """Be down for at least ``seconds`` more (another user of the dependency found it down)."""
        self._down_until = max(self._down_until, time.monotonic() + seconds)

    def failed(self) -> bool:
        """A call failed: down for ``retry_s`` from now. True when this starts an outage (log it)."""
        self._down_until = time.monotonic() + self.retry_s
        started = not self._down
        self._down = True
        return started

    def succeeded(self) -> bool:
        """A call succeeded. True when this ends an outage (log it)."""
        ended = self._down
        self._down = False
        return ended
