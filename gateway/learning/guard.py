"""The store as the gateway uses it: bounded, counted, never in a client's way.

Every call has ``store.timeout_s``; a failure or a timeout marks the store *down* for
``store.retry_s`` (no new samples or records meanwhile: they are counted as ``store_down``) and
logs one warning per outage, and the first success after it logs the recovery. Writes run in
background tasks, at most ``store.max_pending_writes`` at once (more are dropped and counted);
feedback for an answer whose write is still pending waits for that write first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.learning.config import StoreConfig
from gateway.learning.metrics import LearningMetrics
from gateway.learning.records import Record
from gateway.learning.store import Store, StoreError

T = TypeVar("T")
log = logging.getLogger(__name__)


class GuardedStore:
    """A :class:`Store` behind timeouts, a down window, metrics and bounded background writes."""

    def __init__(self, store: Store, config: StoreConfig, metrics: LearningMetrics) -> None:
        self.store = store
        self._config = config
        self._metrics = metrics
        self._down_until = 0.0
        self._down = False
        self.pending: dict[str, asyncio.Task[None]] = {}

    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    async def call(self, op: str, make: Callable[[], Awaitable[T]]) -> T:
        """``await make()`` within the timeout; raises StoreError (already counted and logged)."""
        try:
            async with asyncio.timeout(self._config.timeout_s):
                result = await make()
        except (StoreError, TimeoutError) as exc:
            outcome = "timeout" if isinstance(exc, TimeoutError) else "error"
            self._metrics.store_ops.labels(op, outcome).inc()
            self._down_until = time.monotonic() + self._config.retry_s
            if not self._down:
                self._down = True
                reason = "timed out" if outcome == "timeout" else str(exc)
                log.warning(
                    "learning store (%s) unavailable: %s; no shadowing or recording until it answers (retry: %gs)",
                    self.store.kind,
                    reason,
                    self._config.retry_s,
                )
            raise StoreError(f"store {op} {outcome}") from exc
        self._metrics.store_ops.labels(op, "ok").inc()
        if self._down:
            self._down = False
            log.warning("learning store (%s) answers again; shadowing and recording resume", self.store.kind)
        return result

    def write(self, record_id: str, build: Callable[[], Record | None]) -> None:
        """Build a record and put it, in a background task (``build`` returning None writes nothing).

        Writes of one id are applied in the order they were asked for (a record's first write
        never lands after its update).
        """
        if len(self.pending) >= self._config.max_pending_writes:
            self._metrics.store_ops.labels("put", "dropped").inc()
            return
        task = asyncio.create_task(self._put(build, self.pending.get(record_id)))
        self.pending[record_id] = task

        def forget(t: asyncio.Task[None]) -> None:
            if self.pending.get(record_id) is t:
                del self.pending[record_id]

        task.add_done_callback(forget)

    async def _put(self, build: Callable[[], Record | None], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        try:
            record = build()
        except Exception as exc:  # a failing redaction hook: the record is not stored, never unredacted
            self._metrics.store_ops.labels("put", "unbuildable").inc()
            log.warning("a learning record was not stored: %s", exc)
            return
        if record is None:
            return
        with contextlib.suppress(StoreError):
            await self.call("put", lambda: self.store.put(record))

    async def settled(self, record_id: str) -> None:
        """Wait (bounded) for a pending write of ``record_id``, if any."""
        task = self.pending.get(record_id)
        if task is not None:
            await asyncio.wait({task}, timeout=self._config.timeout_s)

    async def flush(self, timeout_s: float) -> None:
        if self.pending:
            await asyncio.wait(set(self.pending.values()), timeout=timeout_s)
