"""Circuit breakers per model endpoint (pybreaker), with state shared through Redis when asked.

pybreaker is synchronous and its ``call`` wraps plain functions, so the asyncio gateway
does not hand it coroutines. Instead :class:`Breaker` asks before each awaited provider
call (``allow``) and reports afterwards (``success`` / ``failure``), using the
breaker's public transitions (``open``/``half_open``/``close``) and the storage API.

Storage: with a Redis URL, each breaker uses pybreaker's ``CircuitRedisStorage`` (so a
breaker opened by one replica is seen open by every replica), wrapped in
:class:`FailoverStorage`: every write also goes to a local ``CircuitMemoryStorage``,
and while Redis is unreachable reads come from the local copy, so the gateway keeps
serving (and keeps protecting itself) on its own; Redis is tried again after
``redis_retry_s``. Redis calls use a short socket timeout (tens of ms) because they run
on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker
import redis
from redis.exceptions import RedisError

from gateway.config import BreakerConfig
from gateway.errors import ConfigError

log = logging.getLogger(__name__)


class RedisHealth:
    """Shared up/down flag for one Redis connection; down for ``retry_s`` after any error."""

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self._down_until = 0.0
        self.failures = 0

    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def mark_down(self) -> None:
        if self.usable():
            log.warning("Redis unreachable; using local breaker state for %.1fs", self.retry_s)
        self.failures += 1
        self._down_until = time.monotonic() + self.retry_s


class _WatchedRedis(redis.Redis):
    """A Redis client that reports every command error to a :class:`RedisHealth`."""

    health: RedisHealth

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)
        except RedisError:
            self.health.mark_down()
            raise


def connect_redis(url: str, cfg: BreakerConfig) -> _WatchedRedis:
    """A lazily connecting client with short timeouts (no I/O happens here)."""
    try:
        pool = redis.ConnectionPool.from_url(
            url, socket_timeout=cfg.redis_socket_timeout_s, socket_connect_timeout=cfg.redis_socket_timeout_s
        )
    except ValueError as exc:  # the message would echo the URL, which may hold a password
        raise ConfigError(f"{cfg.redis_url_env} is not a valid redis:// or rediss:// URL") from exc
    client = _WatchedRedis(connection_pool=pool)
    client.health = RedisHealth(cfg.redis_retry_s)
    return client


class FailoverStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's Redis storage while Redis answers; a local in-memory copy while it does not."""

    def __init__(self, name: str, client: _WatchedRedis, namespace: str) -> None:
        super().__init__("redis-failover")
        self._client = client
        self._health = client.health
        self._key = f"{namespace}:{name}"
        self._local = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._remote: pybreaker.CircuitRedisStorage | None = None

    def _redis(self) -> pybreaker.CircuitRedisStorage | None:
        if not self._health.usable():
            return None
        if self._remote is None:
            try:  # the constructor initialises keys in Redis (SETNX), so it can fail
                self._remote = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, self._client, namespace=self._key)
            except RedisError:
                return None
        return self._remote

    def _read(self, get: Callable[[pybreaker.CircuitBreakerStorage], Any]) -> Any:
        remote = self._redis()
        if remote is not None:
            value = get(remote)
            if self._health.usable():  # pybreaker swallows Redis errors; trust only clean reads
                return value
        return get(self._local)

    def _write(self, put: Callable[[pybreaker.CircuitBreakerStorage], None]) -> None:
        put(self._local)
        remote = self._redis()
        if remote is not None:
            put(remote)

    @property
    def state(self) -> str:
        return str(self._read(lambda s: s.state))

    @state.setter
    def state(self, state: str) -> None:
        def put(s: pybreaker.CircuitBreakerStorage) -> None:
            s.state = state

        self._write(put)

    def increment_counter(self) -> None:
        self._write(lambda s: s.increment_counter())

    def reset_counter(self) -> None:
        self._write(lambda s: s.reset_counter())

    def increment_success_counter(self) -> None:
        self._write(lambda s: s.increment_success_counter())

    def reset_success_counter(self) -> None:
        self._write(lambda s: s.reset_success_counter())

    @property
    def counter(self) -> int:
        return int(self._read(lambda s: s.counter))

    @property
    def success_counter(self) -> int:
        return int(self._read(lambda s: s.success_counter))

    @property
    def opened_at(self) -> datetime | None:
        value = self._read(lambda s: s.opened_at)
        return value if isinstance(value, datetime) else None

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        def put(s: pybreaker.CircuitBreakerStorage) -> None:
            s.opened_at = now

        self._write(put)


class _StateListener(pybreaker.CircuitBreakerListener):
    def __init__(self, on_state: Callable[[str, str], None]) -> None:
        self._on_state = on_state

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self._on_state(cb.name or "", new_state.name)


class Breaker:
    """An asyncio-friendly facade: ask ``allow()`` before a call, report the result after."""

    def __init__(
        self,
        name: str,
        cfg: BreakerConfig,
        storage: pybreaker.CircuitBreakerStorage,
        on_state: Callable[[str, str], None],
    ) -> None:
        self.name = name
        self._storage = storage
        # While half-open, one trial call at a time per process: the others skip this endpoint as
        # if it were open. The lease bounds a trial whose outcome is never reported (a cancelled
        # request, a deadline, a 4xx); success() and failure() end it at once.
        self._trial_until = 0.0
        self._trial_lease_s = cfg.reset_timeout_s
        self._cb = pybreaker.CircuitBreaker(
            fail_max=cfg.fail_max,
            reset_timeout=cfg.reset_timeout_s,
            success_threshold=cfg.success_threshold,
            state_storage=storage,
            name=name,
            listeners=[_StateListener(on_state)],
        )
        on_state(name, self.state)

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half-open', as the (possibly shared) storage says now."""
        return self._cb.state.name  # syncs the cached state (and notifies) if a replica changed it

    def allow(self) -> bool:
        """False while open and the reset timeout has not elapsed; then half-open, one trial at a time."""
        state = self.state
        if state == pybreaker.STATE_CLOSED:
            return True
        now = time.monotonic()
        if state == pybreaker.STATE_OPEN:
            opened_at = self._storage.opened_at
            if opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=self._cb.reset_timeout):
                return False
            self._cb.half_open()
        elif now < self._trial_until:
            return False  # half-open, and another request's trial call is in flight
        self._trial_until = now + self._trial_lease_s
        return True

    def success(self) -> None:
        self._trial_until = 0.0
        self._storage.reset_counter()
        if self.state == pybreaker.STATE_HALF_OPEN:
            self._storage.increment_success_counter()
            if self._storage.success_counter >= self._cb.success_threshold:
                self._cb.close()

    def failure(self) -> None:
        self._trial_until = 0.0
        self._storage.increment_counter()
        state = self.state
        if state == pybreaker.STATE_HALF_OPEN or (
            state == pybreaker.STATE_CLOSED and self._storage.counter >= self._cb.fail_max
        ):
            self._cb.open()


class BreakerRegistry:
    """One :class:`Breaker` per model endpoint, all sharing one Redis client when configured."""

    def __init__(
        self,
        names: list[str],
        cfg: BreakerConfig,
        redis_url: str | None,
        on_state: Callable[[str, str], None],
    ) -> None:
        self.redis = connect_redis(redis_url, cfg) if redis_url else None
        self._breakers: dict[str, Breaker] = {}
        for name in names:
            storage: pybreaker.CircuitBreakerStorage
            if self.redis is not None:
                storage = FailoverStorage(name, self.redis, cfg.redis_namespace)
            else:
                storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
            self._breakers[name] = Breaker(name, cfg, storage, on_state)

    def __getitem__(self, name: str) -> Breaker:
        return self._breakers[name]

    def states(self) -> dict[str, str]:
        return {name: b.state for name, b in self._breakers.items()}

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()
