"""The store as learning uses it: bounded, counted, never in a client's way.

Every call has ``store.timeout_s``; a failure or a timeout marks the store *down* for
``store.retry_s`` (no new samples or records meanwhile: they are counted as ``store_down``) and
logs one warning per outage, and the first success after it logs the recovery. Writes run in
background tasks, at most ``store.max_pending_writes`` at once (more are dropped and counted), and
the writes of one record are applied in the order they were asked for. Outcomes are reported to
``count(op, outcome)``: metrics in the gateway, a tally sent to the gateway from the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.learning.config import StoreConfig
from gateway.learning.records import Record
from gateway.learning.store import Store, StoreError
from gateway.outage import Outage

T = TypeVar("T")
log = logging.getLogger(__name__)


class GuardedStore:
    """A :class:`Store` behind timeouts, a down window, outcome counts and bounded background writes."""

    def __init__(
        self,
        store: Store,
        config: StoreConfig,
        count: Callable[[str, str], None],
        on_put: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._config = config
        self._count = count
        self._on_put = on_put  # after each record stored (the worker's size cap counts them)
        self._outage = Outage(config.retry_s)
        self.pending: dict[str, asyncio.Task[None]] = {}

    @property
    def timeout_s(self) -> float:
        return self._config.timeout_s

    def usable(self) -> bool:
        return self._outage.usable()

    def down_for(self) -> float:
        """Seconds the store is still considered down (0 when usable)."""
        return self._outage.remaining()

    def adopt_down(self, seconds: float) -> None:
        """Another user of the same store (the worker) found it down for ``seconds`` more."""
        self._outage.extend(seconds)

    async def call(self, op: str, make: Callable[[], Awaitable[T]]) -> T:
        """``await make()`` within the timeout; raises StoreError (already counted and logged)."""
        try:
            async with asyncio.timeout(self._config.timeout_s):
                result = await make()
        except (StoreError, TimeoutError) as exc:
            outcome = "timeout" if isinstance(exc, TimeoutError) else "error"
            self._count(op, outcome)
            if self._outage.failed():
                reason = "timed out" if outcome == "timeout" else str(exc)
                log.warning(
                    "learning store (%s) unavailable: %s; no shadowing or recording until it answers (retry: %gs)",
                    self.store.kind,
                    reason,
                    self._config.retry_s,
                )
            raise StoreError(f"store {op} {outcome}") from exc
        self._count(op, "ok")
        if self._outage.succeeded():
            log.warning("learning store (%s) answers again; shadowing and recording resume", self.store.kind)
        return result

    def write(
        self, record_id: str, build: Callable[[], Record | None], done: Callable[[], None] | None = None
    ) -> asyncio.Task[None] | None:
        """Build a record and put it, in a background task (``build`` returning None writes nothing);
        ``done()`` is called once the write is over, whatever its outcome. The task, or None if dropped."""
        if len(self.pending) >= self._config.max_pending_writes:
            self._count("put", "dropped")
            if done is not None:
                done()
            return None
        task = asyncio.create_task(self._put(build, self.pending.get(record_id)))
        self.pending[record_id] = task

        def forget(t: asyncio.Task[None]) -> None:
            if self.pending.get(record_id) is t:
                del self.pending[record_id]
            if done is not None:
                done()

        task.add_done_callback(forget)
        return task

    async def _put(self, build: Callable[[], Record | None], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        try:
            record = build()
        except Exception as exc:  # a failing redaction hook: the record is not stored, never unredacted
            self._count("put", "unbuildable")
            log.warning("a learning record was not stored: %s", exc)
            return
        if record is None:
            return
        try:
            await self.call("put", lambda: self.store.put(record))
        except StoreError:
            return
        if self._on_put is not None:
            self._on_put()

    async def flush(self, timeout_s: float) -> None:
        if self.pending:
            await asyncio.wait(set(self.pending.values()), timeout=timeout_s)
