"""`ferryman learn export|report|judge` given a store or an output that cannot be what the user meant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
