"""The learning store: an embedded SQLite file (one gateway) or Redis (several replicas share it).

Both keep the same :class:`~gateway.learning.records.Record` fields and answer the same
:class:`Store` protocol; :func:`open_store` picks one from a URL (``sqlite://PATH`` or a bare
path; ``redis://`` / ``rediss://``). Neither blocks the event loop: SQLite runs in one worker
thread of its own (its connection never leaves that thread), Redis through ``redis.asyncio``.
Callers bound every call with a timeout (``gateway.learning.service``); this module only maps
failures to :class:`StoreError`.

Why Redis for the shared option (not PostgreSQL): it is already the gateway's shared-state
dependency (breakers), its asyncio client is already installed, retention is native (a TTL per
record) and the size cap is one sorted set; the data is append-mostly key/value with one scan
for export. Operators who keep comparisons for long should turn on Redis persistence (AOF); the
size cap bounds its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.errors import ConfigError
from gateway.learning.config import store_target
from gateway.learning.records import FIELDS, LABEL_VERDICTS, RATING_FIELDS, Record, is_labelled

T = TypeVar("T")
_PAGE = 500
#: Spend counters outlive their UTC day by this long (replicas read today's only).
_SPEND_TTL_S = 3 * 86_400


class StoreError(Exception):
    """The store could not do what was asked (unreachable, timed out, disk full, ...)."""


class Store(Protocol):
    """What the gateway and ``ferryman learn`` need of a store."""

    #: "sqlite" or "redis" (for logs and metrics; never the URL, which may hold a password).
    kind: str

    @property
    def where(self) -> str:
        """Where the data lives, for the operator's log: the SQLite file, or Redis host:port/db (no password)."""
        ...

    async def open(self) -> None:
        """Connect / create the schema (raises StoreError)."""
        ...

    async def put(self, record: Record) -> None:
        """Insert or update a record; its rating fields are left as they are."""
        ...

    async def get(self, record_id: str) -> Record | None: ...

    async def set_rating(self, record_id: str, tenant: str, rating: str, at: float) -> bool:
        """Rate a record of ``tenant``; False when there is no such record (or it is another tenant's)."""
        ...

    async def add_spend(self, day: str, usd: float) -> float:
        """Add to a UTC day's learning spend (all replicas); the day's new total."""
        ...

    async def spend(self, day: str) -> float: ...

    async def prune(self, older_than: float, max_records: int) -> int:
        """Delete records created before ``older_than`` (epoch s), then the oldest beyond ``max_records``:
        unlabelled ones first (:func:`~gateway.learning.records.is_labelled`), labelled ones only when
        those alone pass the cap."""
        ...

    async def count(self) -> int: ...

    def scan(self, since: float = 0.0) -> AsyncIterator[Record]:
        """Every record created at or after ``since``, oldest first."""
        ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------------------- SQLite

_COLUMNS = {
    name: "REAL"
    if name in ("created_at", "score", "threshold", "served_cost_usd", "shadow_cost_usd", "judge_cost_usd", "rated_at")
    else "TEXT"
    for name in FIELDS
}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records ("
    + ", ".join(f"{n} {t}{' PRIMARY KEY' if n == 'id' else ''}" for n, t in _COLUMNS.items())
    + ")",
    "CREATE INDEX IF NOT EXISTS records_created ON records (created_at)",
    "CREATE TABLE IF NOT EXISTS spend (day TEXT PRIMARY KEY, usd REAL NOT NULL)",
)
#: 1 for a labelled record (a judge's label or a rating), 0 otherwise: the size cap deletes 0s first.
_LABELLED_SQL = (
    "(COALESCE(verdict, '') IN (" + ", ".join(f"'{v}'" for v in LABEL_VERDICTS) + ") OR COALESCE(rating, '') != '')"
)
_PUT_COLUMNS = [n for n in FIELDS if n not in RATING_FIELDS]
_UPSERT = (
    f"INSERT INTO records ({', '.join(_PUT_COLUMNS)}) VALUES ({', '.join(':' + n for n in _PUT_COLUMNS)}) "
    f"ON CONFLICT(id) DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in _PUT_COLUMNS if n != 'id')}"
)


class SQLiteStore:
    """One SQLite file (WAL journal), every statement on one dedicated worker thread."""

    kind = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = 2.0) -> None:
        self.path = path
        self.where = str(path.absolute())
        self._busy_ms = int(busy_timeout_s * 1000)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learning-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                if self._conn is None:
                    self._conn = self._connect()
                try:
                    return fn(self._conn)
                except sqlite3.Error as exc:
                    raise StoreError(f"sqlite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}") from exc
        return conn

    async def open(self) -> None:
        await self._run(lambda conn: None)

    async def put(self, record: Record) -> None:
        await self._run(lambda c: c.execute(_UPSERT, record.to_row()))

    async def get(self, record_id: str) -> Record | None:
        def get(c: sqlite3.Connection) -> Record | None:
            row = c.execute("SELECT * FROM records WHERE id = ?", (record_id,)).fetchone()
            return None if row is None else Record.from_mapping(dict(row))

        return await self._run(get)

    async def set_rating(self, record_id: str, tenant: str, rating: str, at: float) -> bool:
        def rate(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE records SET rating = ?, rated_at = ? WHERE id = ? AND tenant = ?",
                (rating, at, record_id, tenant),
            )
            return cur.rowcount == 1

        return await self._run(rate)

    async def add_spend(self, day: str, usd: float) -> float:
        def add(c: sqlite3.Connection) -> float:
            row = c.execute(
                "INSERT INTO spend (day, usd) VALUES (?, ?) ON CONFLICT(day) DO UPDATE SET usd = usd + excluded.usd "
                "RETURNING usd",
                (day, usd),
            ).fetchone()
            return float(row[0])

        return await self._run(add)

    async def spend(self, day: str) -> float:
        def read(c: sqlite3.Connection) -> float:
            row = c.execute("SELECT usd FROM spend WHERE day = ?", (day,)).fetchone()
            return float(row[0]) if row else 0.0

        return await self._run(read)

    async def prune(self, older_than: float, max_records: int) -> int:
        def prune(c: sqlite3.Connection) -> int:
            deleted = c.execute("DELETE FROM records WHERE created_at < ?", (older_than,)).rowcount
            (n,) = c.execute("SELECT COUNT(*) FROM records").fetchone()
            if n > max_records:
                deleted += c.execute(
                    f"DELETE FROM records WHERE id IN (SELECT id FROM records ORDER BY {_LABELLED_SQL}, created_at, id "
                    "LIMIT ?)",
                    (n - max_records,),
                ).rowcount
            return int(deleted)

        return await self._run(prune)

    async def count(self) -> int:
        return await self._run(lambda c: int(c.execute("SELECT COUNT(*) FROM records").fetchone()[0]))

    async def scan(self, since: float = 0.0) -> AsyncIterator[Record]:
        after: tuple[float, str] = (since, "")
        first = True
        while True:
            key = after

            def page(c: sqlite3.Connection, key: tuple[float, str] = key, first: bool = first) -> list[Record]:
                op = ">=" if first else ">"
                rows = c.execute(
                    f"SELECT * FROM records WHERE (created_at, id) {op} (?, ?) ORDER BY created_at, id LIMIT ?",
                    (*key, _PAGE),
                ).fetchall()
                return [Record.from_mapping(dict(r)) for r in rows]

            records = await self._run(page)
            for record in records:
                yield record
            if len(records) < _PAGE:
                return
            after, first = (records[-1].created_at, records[-1].id), False

    async def close(self) -> None:
        def close(c: sqlite3.Connection) -> None:
            c.close()
            self._conn = None

        if self._conn is not None:
            with contextlib.suppress(StoreError):
                await self._run(close)
        self._executor.shutdown(wait=False)


# ----------------------------------------------------------------------------------------- Redis

# Rate only an existing record of the same tenant (a plain HSET would create a stray partial hash).
_RATE = """
if redis.call('HGET', KEYS[1], 'tenant') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'rating', ARGV[2], 'rated_at', ARGV[3])
  return 1
end
return 0
"""


class RedisStore:
    """A hash per record (with a TTL = retention), a sorted set of ids by time, a spend counter per day."""

    kind = "redis"

    def __init__(
        self, url: str, namespace: str, retention_s: float, timeout_s: float, must_exist: bool = False
    ) -> None:
        self._must_exist = must_exist
        self._namespace = namespace
        try:
            self._redis: aioredis.Redis = aioredis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        except ValueError as exc:  # the message would echo the URL, which may hold a password
            raise ConfigError("learning.store.url is not a valid redis:// or rediss:// URL") from exc
        conn = self._redis.connection_pool.connection_kwargs
        self.where = str(conn.get("path") or f"{conn.get('host')}:{conn.get('port')}/{conn.get('db', 0)}")
        self._ns = f"{namespace}:learn"
        self._ttl = max(1, int(retention_s))
        self._rate = self._redis.register_script(_RATE)

    def _key(self, record_id: str) -> str:
        return f"{self._ns}:rec:{record_id}"

    @property
    def _index(self) -> str:
        return f"{self._ns}:index"

    async def _call(self, make: Callable[[], Any]) -> Any:
        try:
            return await make()
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc

    async def open(self) -> None:
        await self._call(self._redis.ping)
        if self._must_exist and not await self._call(lambda: self._redis.exists(self._index)):
            # was: a mistyped --namespace or /db read as an empty store ("wrote 0 ... of 0 records", exit 0)
            found = await self._call(self._namespaces)
            there = f"namespaces with records there: {', '.join(found)}" if found else "no namespace has records there"
            raise ConfigError(
                f"no learning records in redis {self.where} under namespace {self._namespace!r} (--namespace: the "
                f"gateway's learning.store.namespace; the URL's /N: its database); {there}"
            )

    async def _namespaces(self) -> list[str]:
        """The namespaces of this database that hold learning records (at most 10 named)."""
        suffix = ":learn:index"
        found: set[str] = set()
        async for key in self._redis.scan_iter(match=f"*{suffix}", count=1000):
            found.add(key.decode(errors="replace").removesuffix(suffix))
            if len(found) >= 10:
                break
        return sorted(found)

    async def put(self, record: Record) -> None:
        async def put() -> None:
            key = self._key(record.id)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=record.to_fields())  # type: ignore[arg-type]
                pipe.expire(key, self._ttl)
                pipe.zadd(self._index, {record.id: record.created_at})
                await pipe.execute()

        await self._call(put)

    async def get(self, record_id: str) -> Record | None:
        data = await self._call(lambda: self._redis.hgetall(self._key(record_id)))
        return Record.from_mapping({k.decode(): v for k, v in data.items()}) if data else None

    async def set_rating(self, record_id: str, tenant: str, rating: str, at: float) -> bool:
        done = await self._call(lambda: self._rate(keys=[self._key(record_id)], args=[tenant, rating, repr(at)]))
        return bool(done)

    async def add_spend(self, day: str, usd: float) -> float:
        async def add() -> float:
            key = f"{self._ns}:spend:{day}"
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrbyfloat(key, usd)
                pipe.expire(key, _SPEND_TTL_S)
                total, _ = await pipe.execute()
            return float(total)

        return float(await self._call(add))

    async def spend(self, day: str) -> float:
        value = await self._call(lambda: self._redis.get(f"{self._ns}:spend:{day}"))
        return float(value) if value else 0.0

    async def _delete(self, ids: list[Any]) -> int:
        if not ids:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(*(self._key(i.decode()) for i in ids))
            pipe.zrem(self._index, *ids)
            await pipe.execute()
        return len(ids)

    async def prune(self, older_than: float, max_records: int) -> int:
        async def prune() -> int:
            deleted = 0
            while True:
                old = await self._redis.zrangebyscore(self._index, "-inf", f"({older_than!r}", start=0, num=_PAGE)
                deleted += await self._delete(old)
                if len(old) < _PAGE:
                    break
            excess = await self._redis.zcard(self._index) - max_records
            if excess > 0:
                removed = await self._delete_unlabelled(excess)
                excess -= removed
                deleted += removed
            while excess > 0:
                batch = await self._redis.zrange(self._index, 0, min(excess, _PAGE) - 1)
                excess -= await self._delete(batch)
                deleted += len(batch)
                if not batch:
                    break
            return deleted

        return int(await self._call(prune))

    async def _delete_unlabelled(self, wanted: int) -> int:
        """Delete up to ``wanted`` of the oldest unlabelled records (one page of ids and their labels at a time)."""
        deleted, offset = 0, 0
        while deleted < wanted:
            ids: list[Any] = await self._redis.zrange(self._index, offset, offset + _PAGE - 1)
            if not ids:
                break
            async with self._redis.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hmget(self._key(i.decode()), "verdict", "rating")
                labels = await pipe.execute()
            drop = [i for i, (verdict, rating) in zip(ids, labels, strict=True) if not is_labelled(verdict, rating)]
            drop = drop[: wanted - deleted]
            deleted += await self._delete(drop)
            offset += len(ids) - len(drop)
        return deleted

    async def count(self) -> int:
        return int(await self._call(lambda: self._redis.zcard(self._index)))

    async def scan(self, since: float = 0.0) -> AsyncIterator[Record]:
        offset = 0
        while True:
            page = partial(self._redis.zrangebyscore, self._index, repr(since), "+inf", offset, _PAGE)
            ids: list[bytes] = await self._call(page)

            async def fetch(ids: list[bytes] = ids) -> list[Any]:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for i in ids:
                        pipe.hgetall(self._key(i.decode()))
                    return list(await pipe.execute())

            for data in await self._call(fetch) if ids else []:
                if data:  # expired records leave their id in the index until the next prune
                    yield Record.from_mapping({k.decode(): v for k, v in data.items()})
            if len(ids) < _PAGE:
                return
            offset += len(ids)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()


# -------------------------------------------------------------------------------------- factory


def open_store(
    url: str,
    *,
    namespace: str = "ferryman",
    retention_s: float = 30 * 86_400,
    timeout_s: float = 2.0,
    must_exist: bool = False,
) -> Store:
    """A store for ``url`` (nothing is connected yet: call ``await store.open()``).

    ``must_exist``: a SQLite file that is not there, or a Redis namespace without records, is an error
    (commands that read a store; the Redis one at ``open``), where the gateway creates it.
    """
    try:
        kind, path = store_target(url)
    except ConfigError as exc:
        raise ConfigError(f"learning store URL: {exc}") from None
    if kind == "redis":
        return RedisStore(url, namespace, retention_s, timeout_s, must_exist=must_exist)
    if must_exist and not Path(path).is_file():
        raise ConfigError(
            f"no learning store at {path}: the gateway creates it there when learning.store.url names it "
            "(check the path, and that the gateway has run with learning on)"
        )
    return SQLiteStore(Path(path), busy_timeout_s=timeout_s)
