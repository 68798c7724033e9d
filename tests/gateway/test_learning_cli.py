"""`ferryman learn export|report|judge` given a store or an output that cannot be what the user meant."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from gateway.learning.records import Record
from gateway.learning.store import open_store


def learn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman", "learn", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_reading_a_sqlite_store_that_is_not_there_is_an_error_and_creates_nothing(tmp_path: Path):
    """Was: a mistyped --store path created an empty store (and its directory) and reported 0 records."""
    missing = tmp_path / "typo" / "learning.db"
    for args in (["report"], ["export", "--out", str(tmp_path / "out.csv")]):
        done = learn(*args, "--store", f"sqlite://{missing}")
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert f"no learning store at {missing}" in done.stderr and "Traceback" not in done.stderr
    assert not missing.parent.exists() and not (tmp_path / "out.csv").exists()


def test_export_refuses_an_output_format_it_does_not_write(tmp_path: Path):
    """Was: --out x.parquet wrote CSV under that name (which `learn retrain` would then read as Parquet)."""
    store = tmp_path / "learning.db"
    store.touch()
    for name in ("x.parquet", "x.txt", "x"):
        done = learn("export", "--store", f"sqlite://{store}", "--out", str(tmp_path / name))
        assert done.returncode == 2 and "must end in .csv" in done.stderr, (name, done.stderr)
        assert not (tmp_path / name).exists()


def test_since_days_must_be_a_positive_number(tmp_path: Path):
    """Was: --since-days -1 exported 'wrote 0 labelled comparisons of 0 records' (exit 0), and 0 everything."""
    store = tmp_path / "learning.db"
    store.touch()
    for value in ("-1", "0", "nan"):
        done = learn("export", "--store", f"sqlite://{store}", "--out", str(tmp_path / "x.csv"), "--since-days", value)
        assert done.returncode == 2, (value, done.stdout)
        assert f"argument --since-days: {value} is not a number of days > 0" in done.stderr
    assert not (tmp_path / "x.csv").exists()


def test_reading_a_redis_namespace_or_database_without_records_is_an_error_naming_those_with_records(
    redis_server, tmp_path: Path
):
    """Was: a --namespace or /db other than the gateway's read as an empty store: 'wrote 0 labelled comparisons of 0
    records' (exit 0), as if nothing had been learned."""
    import asyncio

    from gateway.learning.records import Record
    from gateway.learning.store import RedisStore

    async def put() -> None:
        store = RedisStore(redis_server.url, "prod", retention_s=3600, timeout_s=2.0)
        await store.put(Record(id="chatcmpl-1", created_at=1.0, tenant="anonymous", policy="p", messages_json="[]"))
        await store.close()

    asyncio.run(put())
    out = tmp_path / "out.csv"
    where = redis_server.url.removeprefix("redis://")
    for args in (["report"], ["export", "--out", str(out)]):
        done = learn(*args, "--store", redis_server.url)  # the default namespace, ferryman
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert (
            f"no learning records in redis {where} under namespace 'ferryman' (--namespace: the gateway's "
            "learning.store.namespace; the URL's /N: its database); namespaces with records there: prod"
        ) in done.stderr
        assert "Traceback" not in done.stderr
    assert not out.exists()
    other_db = redis_server.url.rsplit("/", 1)[0] + "/1"
    done = learn("report", "--store", other_db, "--namespace", "prod")
    assert done.returncode == 2 and "under namespace 'prod'" in done.stderr
    assert done.stderr.rstrip().endswith("no namespace has records there"), done.stderr
    done = learn("export", "--store", redis_server.url, "--namespace", "prod", "--out", str(out))
    assert done.returncode == 0 and "wrote 0 labelled comparisons of 1 records" in done.stdout, done.stderr


def test_report_says_when_no_policy_has_labels_and_what_a_dash_means(tmp_path: Path):
    """Was: a table header with no row under it when nothing was labelled yet, and "-" cells without a word."""
    db = tmp_path / "learning.db"

    async def fill(verdicts: list[str]) -> None:
        store = open_store(f"sqlite://{db}")
        await store.open()
        try:
            for i, verdict in enumerate(verdicts):
                await store.put(
                    Record(
                        id=f"chatcmpl-{i}",
                        created_at=1_700_000_000.0 + i,
                        tenant="t",
                        policy="ferryman-balanced",
                        messages_json='[{"role": "user", "content": "q"}]',
                        served_model="weak-m",
                        served_tier="weak",
                        served_answer="a",
                        verdict=verdict,
                    )
                )
        finally:
            await store.close()

    asyncio.run(fill(["invalid", "error"]))
    done = learn("report", "--store", f"sqlite://{db}")
    assert done.returncode == 0, done.stderr
    assert "policies: none with a labelled comparison yet" in done.stdout and "strong_share" not in done.stdout
    asyncio.run(fill(["strong", "tie", "weak"]))  # the same ids: now labelled, too few for PGR
    done = learn("report", "--store", f"sqlite://{db}")
    assert "ferryman-balanced" in done.stdout and "-: not reported (PGR and router_apgr need 10" in done.stdout
