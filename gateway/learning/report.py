"""``ferryman learn report``: what the store holds, and the live policies' quality on judged traffic.

The same figures as the ``ferryman_learning_live_*`` gauges (``gateway.learning.quality``), but
over every record in the store (all replicas, the whole retention time), per policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.learning.export import open_from_args, since, store_argument
from gateway.learning.quality import MIN_NET_STRONG_WINS, Judged, summarize
from gateway.learning.store import StoreError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    store_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")


async def build_report(args: argparse.Namespace) -> dict[str, Any]:
    store = open_from_args(args)
    records = 0
    shadowed: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    ratings: Counter[str] = Counter()
    judged: dict[str, list[Judged]] = defaultdict(list)
    try:
        await store.open()
        async for record in store.scan(since(args)):
            records += 1
            shadowed[record.shadow_status or "not_shadowed"] += 1
            if record.verdict:
                verdicts[record.verdict] += 1
            if record.rating:
                ratings[record.rating] += 1
            item = Judged.from_record(record)
            if item is not None:
                judged[record.policy].append(item)
    finally:
        await store.close()
    policies = {}
    for policy, items in sorted(judged.items()):
        report = summarize(items)
        if report is not None:
            policies[policy] = report.as_dict()
    return {
        "records": records,
        "shadow": dict(shadowed),
        "verdicts": dict(verdicts),
        "ratings": dict(ratings),
        "policies": policies,
    }


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    try:
        report = asyncio.run(build_report(args))
    except (ConfigError, StoreError, OSError) as exc:
        print(f"ferryman learn report: {exc}", file=sys.stderr)
        return 2
    print(f"records: {report['records']}")
    print(f"shadow calls: {json.dumps(report['shadow'])}")
    print(f"judge verdicts: {json.dumps(report['verdicts'])}")
    print(f"explicit ratings: {json.dumps(report['ratings'])}")
    keys = ["n", "strong_share", "quality_gap", "pgr", "savings", "router_apgr", "strong_win_rate", "tie_rate"]
    if not report["policies"]:
        print(
            "policies: none with a labelled comparison yet (a shadow comparison the judge called strong, weak or tie)"
        )
    else:
        print(f"{'policy':<24}" + "".join(f"{k:>16}" for k in keys))
        for policy, figures in report["policies"].items():
            print(f"{policy:<24}" + "".join(f"{_fmt(figures[k]):>16}" for k in keys))
        if any(figures[k] is None for figures in report["policies"].values() for k in keys):
            print(
                f"-: not reported (PGR and router_apgr need {MIN_NET_STRONG_WINS} more strong than weak wins; "
                "savings a priced strong answer)"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0
