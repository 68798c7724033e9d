"""Hot reload: serve a router's new version without a restart and without failing a call.

Every ``interval_s`` seconds (and at once on SIGHUP, ``ferryman scorer``) the reloader re-reads
each loaded router directory's ``CURRENT`` pointer (``scorer.versions``) and the digest of the
version it names. When that *artifact version* differs from the one serving, it loads the new
version in a worker thread — validating every file as at start-up, and warming it with one
score — while the old one keeps serving, then installs it on the event loop between requests
(``ScorerCore.install``). Calls already queued finish on the version they were validated
against; calls prepared after the install get the new one. Health stays SERVING throughout.

A version that fails to load is logged (ERROR, once per bad version), counted, and not retried
until the pointer or the files change; the old version keeps serving. Why a watched pointer
rather than an admin RPC: every replica sharing the routers volume follows the one pointer
``ferryman learn promote``/``rollback`` moves, with no list of replicas to call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scorer import versions
from scorer.artifacts import EncoderSpec
from scorer.core import ScorerCore
from scorer.encoder import Encoder
from scorer.errors import ArtifactError
from scorer.routers import Router

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadEvent:
    """One reload attempt: ``outcome`` is ``reloaded`` or ``failed``."""

    router: str
    outcome: str
    old: str
    new: str
    error: str = ""


class Reloader:
    """Watches the routers' version pointers of one ``ScorerCore`` and installs changed versions."""

    def __init__(
        self,
        core: ScorerCore,
        *,
        interval_s: float,
        on_event: Callable[[ReloadEvent], None] | None = None,
        warm_up: bool = True,
    ) -> None:
        if interval_s < 0:
            raise ValueError(f"reload interval must be >= 0 (0: only on request), is {interval_s}")
        self.core = core
        self.interval_s = interval_s
        self._on_event = on_event or (lambda _: None)
        self._warm_up = warm_up
        self._lock = asyncio.Lock()
        self._bad: dict[str, str] = {}  # router -> what failed last (not retried until it changes)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Poll every ``interval_s`` seconds on the running loop (not at all when it is 0)."""
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="scorer-reload")

    async def stop(self) -> None:
        """Stop polling (a reload in progress is abandoned; the old version keeps serving)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # never let the watcher die: the next poll tries again
                log.exception("router version check failed")

    async def check(self) -> list[ReloadEvent]:
        """Install every router whose pointed-to version changed; returns what happened."""
        async with self._lock:
            events = []
            for name, source in list(self.core.sources.items()):
                event = await self._check_one(name, source.router_dir)
                if event is not None:
                    events.append(event)
                    self._on_event(event)
            return events

    async def _check_one(self, name: str, router_dir: Path) -> ReloadEvent | None:
        old = self.core.artifact_versions.get(name, "")
        try:
            resolved = await asyncio.to_thread(versions.resolve, router_dir)
            new = await asyncio.to_thread(lambda: resolved.artifact_version)
        except (ArtifactError, OSError) as exc:
            return self._failed(name, old, f"pointer:{exc}", str(exc))
        if new == old:
            self._bad.pop(name, None)
            return None
        if self._bad.get(name) == new:
            return None
        try:
            router, encoders = await asyncio.to_thread(self.core.load_version, name, resolved)
            if self._warm_up:
                await asyncio.to_thread(_warm, router, encoders)
        except (ArtifactError, OSError, ValueError) as exc:
            return self._failed(name, old, new, str(exc), new)
        self.core.install(name, router, resolved, encoders)
        self._bad.pop(name, None)
        log.info("router %s: now serving %s (was %s)", name, new, old)
        return ReloadEvent(name, "reloaded", old, new)

    def _failed(self, name: str, old: str, key: str, error: str, new: str = "") -> ReloadEvent | None:
        if self._bad.get(name) == key:
            return None
        self._bad[name] = key
        log.error("router %s: keeping %s; cannot load the new version: %s", name, old, error)
        return ReloadEvent(name, "failed", old, new, error)


def _warm(router: Router, encoders: dict[EncoderSpec, Encoder]) -> None:
    """Score one short prompt with the new router, so its first caller does not pay a cold start."""
    text = ["warm up the new router version"]
    spec = router.encoder_spec
    emb = encoders[spec].encode(text) if router.needs_embeddings and spec is not None else None
    m = router.manifest
    pair = np.array([router.model_index(m.default_strong)]), np.array([router.model_index(m.default_weak)])
    router.score(text, emb, *pair)
