"""Open breakers shared between gateway replicas through Redis, in the background.

Each replica decides from its own traffic (as Envoy's outlier detection does per proxy); what
is shared is the decision: when a breaker opens on one replica, every replica skips the model
until the open period ends. A background task, never a request:

- publishes each breaker this replica opened: ``SET <namespace>:breaker:<name> <until> PX <ms>``,
  the value being the Unix time the open period ends, the key expiring with it;
- every ``redis_sync_s`` reads every breaker's key (one ``MGET``) and adopts an open period
  that ends later than the local one.

A key that expires is how the open period ends everywhere at once (each replica then trials on
its own); nothing is ever deleted, so a replica closing its breaker cannot erase an open period
that another replica has just published. While Redis is unreachable the breakers work locally
(logged once per outage, retried after ``redis_retry_s``). The client is ``redis.asyncio`` with
``redis_socket_timeout_s``: a hung Redis delays only this task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.breakers import OPEN, Breaker, BreakerRegistry
from gateway.config import BreakerConfig
from gateway.errors import ConfigError

log = logging.getLogger(__name__)


def connect(url: str, cfg: BreakerConfig) -> aioredis.Redis:
    """A lazily connecting client with short timeouts (no I/O happens here)."""
    try:
        return aioredis.Redis.from_url(
            url, socket_timeout=cfg.redis_socket_timeout_s, socket_connect_timeout=cfg.redis_socket_timeout_s
        )
    except ValueError as exc:  # the message would echo the URL, which may hold a password
        raise ConfigError(f"{cfg.redis_url_env} is not a valid redis:// or rediss:// URL") from exc


class BreakerSync:
    """The background exchange of open breakers (start in the serving loop, ``close()`` at the end)."""

    def __init__(self, registry: BreakerRegistry, url: str, cfg: BreakerConfig) -> None:
        self._registry = registry
        self._cfg = cfg
        self.client = connect(url, cfg)
        self._keys = {b.name: f"{cfg.redis_namespace}:breaker:{b.name}" for b in registry.breakers}
        self._opened: dict[str, Breaker] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Redis errors so far, and whether the last exchange worked.
        self.failures = 0
        self.healthy = False
        #: Completed exchanges (tests wait on this).
        self.rounds = 0

    def key(self, breaker: str) -> str:
        return self._keys[breaker]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="breaker-sync")

    def opened(self, breaker: Breaker, state: str, origin: str) -> None:
        """State listener: queue a breaker this replica opened for publishing."""
        if state == OPEN and origin == "local":
            self._opened[breaker.name] = breaker
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._exchange()
            except (RedisError, OSError) as exc:
                self.failures += 1
                if self.healthy or self.failures == 1:
                    retry = self._cfg.redis_retry_s
                    log.warning("Redis unreachable (%s); breakers are local for %.1fs", type(exc).__name__, retry)
                self.healthy = False
                await asyncio.sleep(self._cfg.redis_retry_s)
                continue
            if not self.healthy:
                log.info("Redis reachable: open breakers are shared")
            self.healthy = True
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cfg.redis_sync_s):
                    await self._wake.wait()
            self._wake.clear()

    async def _exchange(self) -> None:
        if self._opened:
            async with self.client.pipeline(transaction=False) as pipe:
                for name, breaker in list(self._opened.items()):
                    remaining_ms = int(breaker.open_remaining_s * 1000)
                    if remaining_ms > 0:
                        pipe.set(self._keys[name], repr(time.time() + remaining_ms / 1000), px=remaining_ms)
                await pipe.execute()
            self._opened.clear()
        names = [b.name for b in self._registry.breakers]
        values = await self.client.mget([self._keys[n] for n in names])
        wall = time.time()
        for breaker, value in zip(self._registry.breakers, values, strict=True):
            if value is None:
                continue
            try:
                remaining = float(value) - wall
            except ValueError:
                continue
            if remaining > 0:
                breaker.adopt_open(remaining)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()
