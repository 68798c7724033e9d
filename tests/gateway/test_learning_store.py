"""The learning store, both backends for real: a SQLite file and a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.learning import store as store_module
from gateway.learning.records import Record
from gateway.learning.store import RedisStore, SQLiteStore, Store, StoreError, open_store


def rec(i: int, *, created: float | None = None, tenant: str = "t-a", **fields: Any) -> Record:
    base = dict(
        id=f"chatcmpl-{i:04d}",
        created_at=1_700_000_000.0 + i if created is None else created,
        tenant=tenant,
        policy="p",
        messages_json='[{"role": "user", "content": "q ' + str(i) + ' é"}]',
        served_model="strong-openai",
        served_tier="strong",
        served_answer=f"answer {i}",
        served_cost_usd=0.001,
        score=0.25,
    )
    return Record(**(base | fields))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path) -> Callable[[], Store]:
    """A factory of stores on one backend (several instances share the file / the server)."""
    if request.param == "sqlite":
        return lambda: open_store(f"sqlite://{tmp_path / 'sub' / 'learning.db'}")
    server = request.getfixturevalue("redis_server")
    return lambda: open_store(server.url, namespace="t", retention_s=3600, timeout_s=1.0)


async def _scan(store: Store, since: float = 0.0) -> list[Record]:
    return [r async for r in store.scan(since)]


def test_put_get_upsert_keeps_the_rating(make_store):
    async def go() -> None:
        store = make_store()
        await store.open()
        try:
            first = rec(1)
            await store.put(first)
            got = await store.get(first.id)
            assert got == first  # every field round-trips, unicode and None included
            assert await store.get("chatcmpl-missing") is None
            assert await store.set_rating(first.id, "t-a", "bad", 1_700_000_100.5)
            assert not await store.set_rating(first.id, "t-other", "good", 1.0)  # another tenant's
            assert not await store.set_rating("chatcmpl-missing", "t-a", "good", 1.0)
            # the shadow's later write (an upsert) must not undo the rating
            await store.put(rec(1, shadow_model="weak-openai", shadow_answer="w", verdict="strong", score=None))
            got = await store.get(first.id)
            assert got is not None
            assert (got.rating, got.rated_at) == ("bad", 1_700_000_100.5)
            assert (got.shadow_answer, got.verdict, got.score) == ("w", "strong", None)
            assert await store.count() == 1
        finally:
            await store.close()

    run(go())


def test_spend_is_shared_between_instances(make_store):
    async def go() -> None:
        a, b = make_store(), make_store()
        await a.open()
        await b.open()
        try:
            assert await a.spend("2024-01-01") == 0.0
            assert await a.add_spend("2024-01-01", 0.25) == pytest.approx(0.25)
            assert await b.add_spend("2024-01-01", 0.5) == pytest.approx(0.75)
            assert await a.spend("2024-01-01") == pytest.approx(0.75)
            assert await b.spend("2024-01-02") == 0.0
        finally:
            await a.close()
            await b.close()

    run(go())


def test_scan_order_paging_since_and_prune(make_store):
    async def go() -> None:
        store = make_store()
        await store.open()
        try:
            # more than one page (500), written out of order
            for i in reversed(range(1203)):
                await store.put(rec(i))
            records = await _scan(store)
            assert [r.id for r in records] == [f"chatcmpl-{i:04d}" for i in range(1203)]
            assert len(await _scan(store, since=1_700_000_000.0 + 1000)) == 203
            # retention: everything created before +100 goes; size cap: then the oldest beyond 1000
            deleted = await store.prune(older_than=1_700_000_000.0 + 100, max_records=1000)
            assert deleted == 100 + 103
            left = await _scan(store)
            assert len(left) == 1000 and left[0].id == "chatcmpl-0203"
            assert await store.count() == 1000
        finally:
            await store.close()

    run(go())


def test_the_size_cap_deletes_unlabelled_records_first(make_store, monkeypatch):
    """Judge labels cost money and ratings come once: over ``max_records`` the oldest records without a
    label go first (an invalid or failed verdict is no label), labelled ones only when they alone pass it."""
    monkeypatch.setattr(store_module, "_PAGE", 3)  # several pages of ids in Redis

    async def go() -> None:
        store = make_store()
        await store.open()
        try:
            verdicts = {0: "strong", 1: "invalid", 2: "tie", 5: "error", 6: "weak"}
            for i in range(10):
                await store.put(rec(i, verdict=verdicts.get(i, "")))
            assert await store.set_rating(rec(4).id, "t-a", "good", 1_700_000_100.0)
            assert await store.prune(older_than=0.0, max_records=5) == 5
            assert [r.id[-1] for r in await _scan(store)] == ["0", "2", "4", "6", "9"]
            assert await store.prune(older_than=0.0, max_records=2) == 3  # 9, then the oldest labelled
            assert [r.id[-1] for r in await _scan(store)] == ["4", "6"]
        finally:
            await store.close()

    run(go())


def test_redis_records_expire_with_the_retention(redis_server):
    async def go() -> None:
        store = RedisStore(redis_server.url, "t", retention_s=1, timeout_s=1.0)
        await store.open()
        try:
            await store.put(rec(1, created=time.time()))
            assert await store.get("chatcmpl-0001") is not None
            await asyncio.sleep(2.1)
            assert await store.get("chatcmpl-0001") is None
            assert await _scan(store) == []  # the id left in the index is skipped ...
            assert await store.prune(time.time() - 3600, 10) == 0 and await store.count() == 1
            assert await store.prune(time.time() + 1, 10) == 1 and await store.count() == 0  # ... and pruned
        finally:
            await store.close()

    run(go())


def test_unavailable_stores_raise_store_error(tmp_path, redis_server):
    async def go() -> None:
        blocker = tmp_path / "file"
        blocker.write_text("")
        sqlite = SQLiteStore(blocker / "learning.db")
        with pytest.raises(StoreError):
            await sqlite.open()
        with pytest.raises(StoreError):
            await sqlite.put(rec(1))
        await sqlite.close()
        redis_server.stop()
        redis = open_store(redis_server.url, timeout_s=0.2)
        for call in (redis.open(), redis.put(rec(1)), redis.get("x"), redis.add_spend("d", 1.0)):
            with pytest.raises(StoreError):
                await call
        with pytest.raises(StoreError):
            await _scan(redis)
        await redis.close()

    run(go())


def test_store_urls():
    assert isinstance(open_store("learning.db"), SQLiteStore)
    store = open_store("sqlite:///var/tmp/x.db")
    assert isinstance(store, SQLiteStore) and store.path == Path("/var/tmp/x.db")
    assert isinstance(open_store("redis://127.0.0.1:1/0"), RedisStore)
    for bad in ("postgres://db/x", "sqlite://"):
        with pytest.raises(ConfigError):
            open_store(bad)
    with pytest.raises(ConfigError) as err:
        open_store("redis://:secret@host:notaport/0")
    assert "secret" not in str(err.value)


def test_a_store_says_where_its_data_is_without_a_password(tmp_path, monkeypatch):
    """For the gateway's 'learning from traffic is ON' line, which said only 'a sqlite store' (which file?)."""
    monkeypatch.chdir(tmp_path)
    assert open_store("sqlite://learning.db").where == str(tmp_path / "learning.db")
    assert open_store("redis://:secret@cache.internal:6380/3").where == "cache.internal:6380/3"
    assert open_store("unix:///run/redis.sock?db=1").where == "/run/redis.sock"
