"""``ferryman learn export``: the store's labelled comparisons in the Chatbot Arena 55k schema.

One row per record with a label: ``id, model_a, model_b, prompt, response_a, response_b,
winner_model_a, winner_model_b, winner_tie`` (``prompt`` and the responses are JSON lists, one
entry per user turn, as in the public 55k file; a response list holds the conversation's earlier
assistant turns, then that model's answer), then extra columns ``lab/data`` ignores (see
docs/learning.md, "The exported file"). ``model_a`` is always the strong tier's model and
``model_b`` the weak tier's. Labels come from the judge; ``--labels judge+feedback`` adds rows
labelled by an explicit rating of a weak answer alone (bad → the strong model wins, good → tie).
The file type follows ``--out``'s suffix: ``.csv`` (default) or ``.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ferryman.arena import ARENA_COLUMNS
from gateway.errors import ConfigError
from gateway.learning.records import Rating, Record, Verdict
from gateway.learning.store import Store, StoreError, open_store

EXTRA_COLUMNS = (
    "label_source",
    "served",
    "rating",
    "verdict",
    "judge_strong_first",
    "judge_weak_first",
    "judge_model",
    "router_model_a",
    "router_model_b",
    "cost_a_usd",
    "cost_b_usd",
    "policy",
    "router",
    "router_version",
    "score",
    "threshold",
    "decision_source",
    "tenant",
    "created_at",
)
COLUMNS = ARENA_COLUMNS + EXTRA_COLUMNS
_WINNER = {Verdict.STRONG: "model_a", Verdict.WEAK: "model_b", Verdict.TIE: "tie"}
STORE_ENV = "FERRYMAN_LEARN_STORE"


def label(record: Record, with_feedback: bool) -> tuple[str, str] | None:
    """(winner: model_a / model_b / tie, label source) or None when the record has no label."""
    if record.verdict in _WINNER:
        return _WINNER[Verdict(record.verdict)], "judge"
    if with_feedback and record.served_tier == "weak" and record.rating:
        return ("model_a" if record.rating == Rating.BAD else "tie"), "feedback"
    return None


def _responses(record: Record) -> tuple[list[str], list[str]]:
    try:
        messages = json.loads(record.messages_json)
    except ValueError:
        messages = []
    earlier = [str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    strong, weak = record.answers()
    return [*earlier, strong], [*earlier, weak]


def arena_row(record: Record, winner: str, source: str, names: str) -> dict[str, Any]:
    """One exported row (``names``: ``config`` model names or the tiers' ``router`` identities)."""
    strong_first = record.served_tier == "strong"
    models = (record.served_model, record.shadow_model) if strong_first else (record.shadow_model, record.served_model)
    router_models = (
        (record.served_router_model, record.shadow_router_model)
        if strong_first
        else (record.shadow_router_model, record.served_router_model)
    )
    if names == "router":
        models = (router_models[0] or models[0], router_models[1] or models[1])
    response_a, response_b = _responses(record)
    cost_a, cost_b = record.costs()
    row: dict[str, Any] = {
        "id": record.id,
        "model_a": models[0],
        "model_b": models[1],
        "prompt": json.dumps(record.user_turns(), ensure_ascii=False),
        "response_a": json.dumps(response_a, ensure_ascii=False),
        "response_b": json.dumps(response_b, ensure_ascii=False),
        "winner_model_a": int(winner == "model_a"),
        "winner_model_b": int(winner == "model_b"),
        "winner_tie": int(winner == "tie"),
        "label_source": source,
        "served": "model_a" if strong_first else "model_b",
        "rating": record.rating,
        "verdict": record.verdict,
        "judge_strong_first": record.judge_strong_first,
        "judge_weak_first": record.judge_weak_first,
        "judge_model": record.judge_model,
        "router_model_a": router_models[0],
        "router_model_b": router_models[1],
        "cost_a_usd": cost_a,
        "cost_b_usd": cost_b,
        "policy": record.policy,
        "router": record.router,
        "router_version": record.router_version,
        "score": "" if record.score is None else record.score,
        "threshold": record.threshold,
        "decision_source": record.decision_source,
        "tenant": record.tenant,
        "created_at": record.created_at,
    }
    return row


async def export_rows(
    records: AsyncIterator[Record], *, with_feedback: bool = False, names: str = "config"
) -> AsyncIterator[dict[str, Any]]:
    async for record in records:
        found = label(record, with_feedback)
        if found is not None and record.served_model and record.shadow_model:
            yield arena_row(record, *found, names)


#: Output formats of ``learn export`` by file suffix.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def check_output(path: Path) -> str:
    """The format a path's suffix names (``FORMATS``); ConfigError for any other suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {path}: the file name must end in .csv (Arena 55k layout) or .jsonl")
    return fmt


class RowWriter:
    """CSV (the 55k file's format) or JSON lines, by the path's suffix; written whole, then renamed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = path.with_name(path.name + ".tmp")
        self._jsonl = check_output(path) == "jsonl"
        self._file = self._tmp.open("w", encoding="utf-8", newline="")
        self._csv = None if self._jsonl else csv.DictWriter(self._file, fieldnames=list(COLUMNS))
        if self._csv is not None:
            self._csv.writeheader()
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def close(self, ok: bool) -> None:
        self._file.close()
        if ok:
            self._tmp.replace(self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def store_argument(parser: argparse.ArgumentParser) -> None:
    """``--store`` (or FERRYMAN_LEARN_STORE) and ``--namespace``, shared by the learn commands."""
    parser.add_argument(
        "--store",
        default=os.environ.get(STORE_ENV),
        help=f"the learning store: sqlite://PATH, a file path, or redis://host:port/db (env {STORE_ENV}, which keeps"
        " a Redis password out of the process list)",
    )
    parser.add_argument("--namespace", default="ferryman", help="Redis key prefix (learning.store.namespace)")
    parser.add_argument("--since-days", type=days, help="only records of the last N days (default: all)")


def days(text: str) -> float:
    """An ``argparse`` type: a number of days > 0 (was: -1 read as 'from tomorrow', so nothing, silently)."""
    value = float(text)  # a ValueError: argparse's "invalid days value"
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a number of days > 0")
    return value


def open_from_args(args: argparse.Namespace) -> Store:
    if not args.store:
        raise ConfigError(f"no store given: pass --store URL or set {STORE_ENV}")
    return open_store(args.store, namespace=args.namespace, must_exist=True)


def since(args: argparse.Namespace) -> float:
    return time.time() - args.since_days * 86_400 if args.since_days else 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    store_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="output file: .csv (Arena 55k layout) or .jsonl")
    parser.add_argument(
        "--labels",
        choices=["judge", "judge+feedback"],
        default="judge",
        help="judge: rows the judge labelled; judge+feedback: also weak answers labelled by an explicit rating alone",
    )
    parser.add_argument(
        "--model-names",
        choices=["config", "router"],
        default="config",
        help="model_a/model_b as the gateway's model names, or as the tiers' router_model identities where set",
    )


async def _export(args: argparse.Namespace) -> tuple[int, int]:
    store = open_from_args(args)
    writer: RowWriter | None = None
    scanned = 0
    try:
        await store.open()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        writer = RowWriter(args.out)

        async def counted() -> AsyncIterator[Record]:
            nonlocal scanned
            async for record in store.scan(since(args)):
                scanned += 1
                if scanned % 10_000 == 0:
                    print(f"  {scanned} records read, {writer.rows if writer else 0} rows written", file=sys.stderr)
                yield record

        async for row in export_rows(counted(), with_feedback=args.labels != "judge", names=args.model_names):
            writer.write(row)
        writer.close(ok=True)
        return scanned, writer.rows
    except BaseException:
        if writer is not None:
            writer.close(ok=False)
        raise
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    try:
        check_output(args.out)
        scanned, rows = asyncio.run(_export(args))
    except (ConfigError, StoreError, OSError) as exc:
        print(f"ferryman learn export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {rows} labelled comparisons of {scanned} records to {args.out}")
    return 0
