"""Row readers for the tabular formats users bring: CSV, JSONL and Parquet.

Each reader yields ``(line, record)`` where ``line`` is the 1-based line of the
row in the file (for Parquet: the data row number + 1, as if a header line came
first) and ``record`` is a dict, or a string naming why the row could not be
decoded. Reading never stops at a bad row; the loaders count them.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lab.data.report import DataError

Record = dict[str, Any]
SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


def _open_text(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return path.open("r", encoding="utf-8", newline="")


def read_csv(path: Path, required: Sequence[str] = ()) -> Iterator[tuple[int, Record | str]]:
    """CSV rows as dicts; a header without a ``required`` column is an error at line 1."""
    # Arena prompts and responses can be far longer than csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}:1: cannot read CSV header ({exc})") from exc
        if not header:
            raise DataError(f"{path}:1: empty file (no CSV header)")
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}; header has {', '.join(header)}")
        line = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield line, f"unreadable CSV row ({type(exc).__name__})"
                line = reader.line_num + 1
                continue
            if None in row or any(v is None for v in row.values()):
                yield line, "wrong number of CSV fields"
            else:
                yield line, row
            line = reader.line_num + 1


def read_jsonl(path: Path) -> Iterator[tuple[int, Record | str]]:
    """JSON Lines rows; blank lines are skipped, non-object lines are bad rows."""
    with _open_text(path) as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                yield line, "invalid JSON"
                continue
            yield line, obj if isinstance(obj, dict) else "not a JSON object"


def read_parquet(path: Path) -> Iterator[tuple[int, Record | str]]:
    """Parquet rows (needs the optional ``pyarrow`` package)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        hint = "install pyarrow (`pip install pyarrow`) or convert the file to CSV/JSONL"
        raise DataError(f"{path}: reading Parquet needs the optional pyarrow package; {hint}") from exc
    table = pq.read_table(path)
    for i, row in enumerate(table.to_pylist()):
        yield i + 2, row


def read_records(path: Path, required: Sequence[str] = ()) -> Iterator[tuple[int, Record | str]]:
    """Rows of a ``.csv``, ``.jsonl``/``.json`` (one object per line) or ``.parquet`` file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, required)
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    if suffix == ".parquet":
        return read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(SUFFIXES)}")
