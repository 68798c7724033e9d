"""Redis for state that gateway replicas share (online calibration windows, sticky conversations).

Every command runs under a short timeout; after any failure the link is *down* for ``retry_s``
(one WARNING when it goes down, one INFO when it answers again) and callers use their local
state instead. Nothing here raises to a request: :meth:`SharedRedis.run` returns ``None`` when
Redis is not configured, down, or failing, and the caller carries on locally.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.errors import ConfigError
from gateway.outage import Outage

log = logging.getLogger(__name__)

T = TypeVar("T")


class SharedRedis:
    """A guarded asyncio Redis client; ``url=None`` means per-replica state only."""

    def __init__(self, url: str | None, *, what: str, timeout_s: float, retry_s: float) -> None:
        self.what = what
        self._timeout_s = timeout_s
        self._outage = Outage(retry_s)
        self.failures = 0
        self.client: aioredis.Redis | None = None
        if url:
            try:
                self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            except ValueError as exc:  # the message would echo the URL, which may hold a password
                raise ConfigError(f"{what}: the Redis URL is not a valid redis:// or rediss:// URL") from exc

    @property
    def configured(self) -> bool:
        return self.client is not None

    def usable(self) -> bool:
        """Configured and not in a down period."""
        return self.client is not None and self._outage.usable()

    async def run(self, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T | None:
        """``op(client)``'s result, or None (not configured, down, or it failed: now down for ``retry_s``)."""
        if self.client is None or not self.usable():
            return None
        try:
            async with asyncio.timeout(self._timeout_s * 4):
                result = await op(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            if self._outage.failed():
                log.warning(
                    "%s: Redis unreachable (%s); each replica uses its own state, retrying in %.0f s",
                    self.what,
                    type(exc).__name__,
                    self._outage.retry_s,
                )
            return None
        if self._outage.succeeded():
            log.info("%s: Redis answers again; state is shared across replicas", self.what)
        return result

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
