"""``ferryman learn judge``: judge again the stored pairs that have no label.

A comparison whose judge call failed (``error``) or whose judge answered no clean verdict
(``invalid``) keeps both answers in the store. This command asks the gateway configuration's judge
(``learning.judge``; provider keys from the environment, as for the gateway) about each such pair,
both orders, exactly as the gateway does, and stores the new verdict. It judges what the store
holds: prompts and answers after redaction. ``--max-usd`` stops it once the judge has cost that
much; ``--limit`` after that many pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from dataclasses import replace

from gateway.config import add_config_argument, load_config
from gateway.errors import ConfigError
from gateway.learning.export import open_from_args, since, store_argument
from gateway.learning.judge import Judge
from gateway.learning.records import Record, Verdict
from gateway.learning.store import StoreError
from gateway.providers import ProviderPool
from gateway.types import Message

#: Verdicts worth asking again (a label, or a discarded disagreement, is kept as it is).
AGAIN = frozenset({"", Verdict.ERROR.value, Verdict.INVALID.value})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    store_argument(parser)
    parser.add_argument("--limit", type=int, help="judge at most this many pairs")
    parser.add_argument("--max-usd", type=float, default=1.0, help="stop once the judge has cost this much")


def _messages(record: Record) -> tuple[Message, ...]:
    try:
        data = json.loads(record.messages_json)
    except ValueError:
        return ()
    return tuple(Message(str(m.get("role", "")), str(m.get("content", ""))) for m in data if isinstance(m, dict))


async def rejudge(args: argparse.Namespace) -> Counter[str]:
    config = load_config(args.config)
    lc = config.learning
    if not lc.judge.model or lc.judge.model not in config.models:
        raise ConfigError("learning.judge.model: set it to a model under models to judge with")
    pool = ProviderPool(config.models, os.environ, config.limits.max_response_bytes)
    judge_model = config.models[lc.judge.model]
    judge = Judge(pool[judge_model.name], judge_model, lc.judge, lc.shadow.timeout_s)
    store = open_from_args(args)
    counts: Counter[str] = Counter()
    spent = 0.0
    try:
        await store.open()
        todo = [r async for r in store.scan(since(args)) if r.shadow_answer and r.verdict in AGAIN]
        for record in todo[: args.limit]:
            if spent >= args.max_usd:
                counts["skipped_budget"] += 1
                continue
            strong, weak = record.answers()
            judgement = await judge.compare(_messages(record), strong, weak)
            spent += judgement.cost_usd
            counts[judgement.verdict.value] += 1
            await store.put(
                replace(
                    record,
                    judge_model=judge.model,
                    judge_strong_first=judgement.strong_first,
                    judge_weak_first=judgement.weak_first,
                    verdict=judgement.verdict.value,
                    judge_cost_usd=record.judge_cost_usd + judgement.cost_usd,
                )
            )
            if sum(counts.values()) % 50 == 0:
                print(f"  {sum(counts.values())} of {len(todo)} judged, ${spent:.4f}", file=sys.stderr)
    finally:
        await store.close()
        await pool.aclose()
    counts["spent_micro_usd"] = round(spent * 1e6)
    return counts


def run(args: argparse.Namespace) -> int:
    try:
        counts = asyncio.run(rejudge(args))
    except (ConfigError, StoreError, OSError) as exc:
        print(f"ferryman learn judge: {exc}", file=sys.stderr)
        return 2
    spent = counts.pop("spent_micro_usd") / 1e6
    judged = sum(v for k, v in counts.items() if k != "skipped_budget")
    outcomes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items())) or "none"
    print(f"judged {judged} pairs ({outcomes}); spent ${spent:.4f}")
    return 0
