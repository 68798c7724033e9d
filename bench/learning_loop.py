"""The learning loop end to end, with real processes on loopback (issue #17's demonstration).

Processes: a fake strong and a fake weak provider, a fake judge whose verdicts depend on the
prompt's family (``harness.traffic``: proofs and code need the strong model, greetings never do),
a scorer serving a copy of an mf router as the base (``--base``: the small untrained MF test
artifact of ``harness.scorer`` by default, or ``--routers-dir``'s mf, the shipped ``routers/``) and
watching its version pointer, and three gateways over them (``bench.learning``): ``off`` and
``off-twin`` (learning off) and ``shadow`` (shadow sampling at ``--rate``, 20 % by default, the
judge, a SQLite store), all routing the policy ``bench-policy`` with the mf router at a 50 %
strong-call share. The traffic is synthetic user traffic: distinct prompts of the families, which
no shipped router was trained on. ``--product-cpus``/``--rig-cpus`` split the product's processes
from the rig's and the client's CPUs (``harness.cpus``; default shared).

1. **Latency**: the same requests through the three gateways, interleaved in rounds; the client's
   p50/p90/p99 with shadowing on minus off, beside the twin's difference (the noise floor).
   The shadow gateway's store fills with judged comparisons meanwhile.
2. **Export** (``ferryman learn export``), **retrain** (``ferryman learn retrain``: a candidate
   version of the mf router), all as the commands an operator runs.
3. **Promote under load**: clients keep calling the shadow gateway while ``ferryman learn
   promote`` runs the gate and moves the pointer; the scorer reloads; every request's decision
   names the version that scored it. Counted: sent, answered, failed (anything but a 200 with a
   scored decision), decisions per version.
4. **After**: fresh prompts (never judged before) through the shadow gateway, now decided by the
   new version; their judged comparisons give the router APGR the user gets, beside the base
   version's on the same prompts.
5. **Rollback under load** (``ferryman learn rollback``): decisions name the base again; failures counted.
   Skipped, and said so, when step 3 kept the base: there is nothing to roll back.

Why the untrained base by default: the promotion gate (95 %, ``lab.learn.gate``) promotes only a
candidate that is better beyond the noise of its held-back slice. The shipped mf, with its length
head, already ranks this synthetic traffic well, so its candidate gains little (ΔAPGR ~+0.2) and,
with the ~800 judged comparisons the default run collects, the gate is at its noise: at 99 % it kept
the base (2026-12-05 00:27), at 95 % it promoted in one run (09:47) and kept the base in another
(12:16, the 4-layer mf); when it keeps the base, step 4 shows the base and step 5 is skipped (exit 1).
The untrained base has much to learn, so every step runs. ``--base shipped`` runs the same loop on
the shipped router (docs/learning.md, "End to end").
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from bench.gateway import KeepAliveConnection, _cpu_note
from bench.learning import (
    POLICY,
    Shared,
    add_worker_arguments,
    check_layout,
    describe_shadow,
    learning_section,
    measure,
    reply_text,
    report,
    scrape,
    shadow_settings,
    shadow_summary,
    spawn_fake,
    start_gateways,
    start_scorer,
    wait_idle,
)
from ferryman import paths
from harness import cpus
from harness.scorer import build_test_routers
from harness.traffic import capacity as traffic_capacity
from harness.traffic import prompts as traffic_prompts
from lab.learn.gate import verdict_apgr
from lab.learn.scoring import Embedder, load_scoring_router

STRONG_MODEL, WEAK_MODEL = "bench-strong", "bench-weak"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=4000, help="measured requests per gateway in step 1")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests per gateway first")
    parser.add_argument("--concurrency", default="8", help="client concurrency (comma-separated levels in step 1)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaving rounds in step 1")
    parser.add_argument("--rate", type=float, default=0.2, help="shadow sample rate of the shadow gateway")
    add_worker_arguments(parser)
    parser.add_argument("--after", type=int, default=2000, help="fresh prompts after the promotion, sent one at a time")
    parser.add_argument(
        "--min-judged",
        type=int,
        default=600,
        help="judged comparisons the store must hold before retraining: more fresh prompts are sent to the shadow "
        "gateway at concurrency 2 until it does (samples shed under load, beyond --max-queued, are not judged)",
    )
    parser.add_argument("--provider-delay-ms", type=float, default=20.0, help="the fake providers' and judge's delay")
    parser.add_argument("--reload-interval-s", type=float, default=1.0, help="the scorer's pointer check interval")
    parser.add_argument("--hold-s", type=float, default=3.0, help="load kept up after each pointer move is seen")
    parser.add_argument(
        "--base",
        choices=("untrained", "shipped"),
        default="untrained",
        help="the router learnt on: the untrained MF test artifact, or --routers-dir's mf (see above)",
    )
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="its mf is the shipped base")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir())
    parser.add_argument("--cache-dir", type=Path, default=paths.cache_dir(), help="embedding cache of the lab steps")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the latency intervals")
    parser.add_argument("--json", type=Path, help="also write the results here")
    cpus.add_arguments(parser)


def _body(prompt: str) -> bytes:
    return json.dumps({"model": POLICY, "messages": [{"role": "user", "content": prompt}]}).encode()


class LoadResult:
    """What clients saw while a pointer moved."""

    def __init__(self) -> None:
        self.sent = self.answered = 0
        self.failed: Counter[str] = Counter()
        self.versions: list[str] = []  # x-ferryman-router-version of each scored answer, in order

    async def call(self, conn: KeepAliveConnection, body: bytes) -> str:
        """One request, counted; returns the decision's artifact version ("" unless answered and scored)."""
        self.sent += 1
        try:
            status, headers, _ = await conn.post(body)
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.failed[type(exc).__name__] += 1
            return ""
        if status != 200:
            self.failed[f"http {status}"] += 1
            return ""
        if headers.get("x-ferryman-decision-source") != "scored":
            self.failed[f"not scored: {headers.get('x-ferryman-decision-source')}"] += 1
            return ""
        self.answered += 1
        version = headers.get("x-ferryman-router-version", "")
        self.versions.append(version)
        return version

    def as_dict(self) -> dict[str, Any]:
        # Versions in the order they were first seen (answers complete out of order around a swap).
        first_seen = list(dict.fromkeys(v.split("@")[0] for v in self.versions))
        return {
            "sent": self.sent,
            "answered": self.answered,
            "failed": sum(self.failed.values()),
            "failures": dict(self.failed),
            "decisions_per_version": dict(Counter(self.versions)),
            "version_sequence": first_seen,
        }


async def _load_while(
    url: str, bodies: list[bytes], level: int, action: Any, want_prefix: str, hold_s: float, result: LoadResult
) -> Any:
    """Clients call ``url`` without pause; ``action`` (a blocking callable) runs in a thread meanwhile.

    Load continues until answers name ``want_prefix`` for ``hold_s`` seconds (or 60 s pass).
    """
    stop = asyncio.Event()
    seen_at: list[float] = []
    next_i = 0

    async def client() -> None:
        nonlocal next_i
        conn = KeepAliveConnection(url)
        try:
            while not stop.is_set():
                next_i += 1
                version = await result.call(conn, bodies[(next_i - 1) % len(bodies)])
                if version.startswith(want_prefix) and not seen_at:
                    seen_at.append(time.monotonic())
        finally:
            await conn.close()

    tasks = [asyncio.create_task(client()) for _ in range(level)]
    await asyncio.sleep(1.0)
    outcome = await asyncio.to_thread(action)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (seen_at and time.monotonic() - seen_at[0] >= hold_s):
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)
    return outcome


def _labelled(summary: dict[str, Any]) -> int:
    """Judged comparisons that became labels (strong, weak or tie)."""
    return sum(summary["verdicts"].get(v, 0) for v in ("strong", "weak", "tie"))


def _ferryman(tmp: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ferryman", *argv], capture_output=True, text=True, cwd=tmp, timeout=1800, check=False
    )
    shown = (proc.stdout + proc.stderr).strip().splitlines()
    print(f"$ ferryman {' '.join(argv[:2])} ... -> exit {proc.returncode}", flush=True)
    for line in shown[-6:]:
        print(f"    {line}", flush=True)
    return proc


def _judged_rows(export: Path, prompts: set[str]) -> tuple[list[str], list[float], list[int], list[str]]:
    """(prompt, score, strong-side verdict, router_version) of the exported judged rows of ``prompts``."""
    out: tuple[list[str], list[float], list[int], list[str]] = ([], [], [], [])
    with export.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            prompt = json.loads(row["prompt"])[-1]
            if prompt not in prompts or row.get("label_source") != "judge" or not row.get("score"):
                continue
            a_strong = row["model_a"] == STRONG_MODEL
            verdict = 0 if row["winner_tie"] == "1" else (1 if (row["winner_model_a"] == "1") == a_strong else -1)
            out[0].append(prompt)
            out[1].append(float(row["score"]))
            out[2].append(verdict)
            out[3].append(row.get("router_version", ""))
    return out


def run(args: argparse.Namespace) -> int:
    layout = cpus.from_args(args)
    layout.enter_rig()  # the client, the rig's processes and the lab commands it starts
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    # Distinct prompts for step 1 (as many as its requests: no prompt judged twice), then fresh ones.
    n_before = min(args.requests + args.warmup, traffic_capacity() - args.after)
    pool = [p for p, _ in traffic_prompts(traffic_capacity(), seed=0)]
    before_prompts, after_prompts = pool[:n_before], pool[n_before : n_before + args.after]
    spare = pool[n_before + args.after :]  # to fill the store up to --min-judged
    bodies = [_body(p) for p in before_prompts]
    results: dict[str, Any] = {}
    t_start = time.perf_counter()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ferryman-learning-loop-") as tmp_s:
        tmp = Path(tmp_s)
        routers = tmp / "routers"
        source = args.routers_dir
        if args.base == "untrained":
            source = build_test_routers(tmp / "untrained", encoder_dir=args.encoder_dir)
        base_dir = source / "mf"
        shutil.copytree(base_dir, routers / "mf", ignore=shutil.ignore_patterns("versions", "CURRENT"))
        router_dir = routers / "mf"
        urls: dict[str, str] = {}
        fakes = {
            "strong": ["--reply", reply_text("strong")],
            "weak": ["--reply", reply_text("weak")],
            "judge": ["--judge", "--judge-rule", "traffic"],
        }
        # the pids every gateway uses: the scorer (the product's), the fakes and judge (the rig's)
        shared: Shared = {"scorer": [], "rig": []}
        for name, extra in fakes.items():
            fake, urls[name] = spawn_fake(tmp, f"fake-{name}", args.provider_delay_ms, extra)
            stack.callback(fake.stop)
            shared["rig"].append(fake.proc.pid)
        reload = ["--reload-interval-s", str(args.reload_interval_s)]
        scorer, scorer_port, scorer_metrics = start_scorer(stack, tmp, routers, args.encoder_dir, layout, reload)
        shared["scorer"].append(scorer.proc.pid)
        store = tmp / "learning.db"
        settings = results["settings"] = shadow_settings(args)
        learning = learning_section(settings, f"sqlite://{store}")
        policy = {"router": "mf", "strong_share": 0.5}
        gw_urls, admin_ports, pids = start_gateways(
            stack, tmp, urls, scorer_port, learning, bodies[0], policy, layout=layout
        )
        results["cpu_layout"] = check_layout(layout, list(pids.values()), shared)
        admin = admin_ports["shadow"]  # the shadow gateway's admin listener (/metrics)
        print(
            f"learning loop: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
            f"{len(before_prompts)} + {len(after_prompts)} synthetic prompts; {describe_shadow(settings)}; "
            f"provider/judge delay {args.provider_delay_ms:g} ms; base router {base_dir} ({args.base}); "
            f"{layout.describe()}",
            flush=True,
        )

        # 1. Latency with shadowing on vs off (and the twin), while the store fills.
        print("\n1. client latency, shadow sampling on vs off (interleaved rounds)", flush=True)
        print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
        before = scrape(admin)
        ours = [os.getpid(), *shared["scorer"], *shared["rig"], *pids.values()]
        lat = _cpu_note(
            ours,
            lambda: {
                lv: asyncio.run(measure(gw_urls, pids, bodies, args, lv, {"shadow": admin}, shared, scorer_metrics))
                for lv in levels
            },
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)
        asyncio.run(wait_idle(admin))
        after = scrape(admin)
        shadow = shadow_summary(before, after)
        table, rows = report(lat, {"shadow": shadow}, args.bootstrap)
        print(table, flush=True)
        results["latency"] = {"rows": rows, "shadow": shadow}
        judged, fill = _labelled(shadow), LoadResult()
        while judged < args.min_judged and spare:
            batch, spare = spare[:100], spare[100:]
            asyncio.run(_send_all(gw_urls["shadow"], [_body(p) for p in batch], 2, fill))
            asyncio.run(wait_idle(admin))
            judged = _labelled(shadow_summary(before, scrape(admin)))
        if fill.sent:
            print(
                f"   filled the store: {fill.sent} more fresh prompts, {judged} judged comparisons in all", flush=True
            )
        results["fill_requests"] = fill.sent

        # 2. Export, retrain.
        print("\n2. export the store, retrain", flush=True)
        export = tmp / "export.csv"
        proc = _ferryman(tmp, "learn", "export", "--store", f"sqlite://{store}", "--out", str(export))
        if proc.returncode != 0:
            raise RuntimeError("export failed")
        pair = ["--strong", STRONG_MODEL, "--weak", WEAK_MODEL, "--router-dir", str(router_dir)]
        lab = ["--encoder-dir", str(args.encoder_dir.resolve()), "--cache-dir", str(args.cache_dir.resolve())]
        proc = _ferryman(tmp, "learn", "retrain", "--traffic", str(export), *pair, *lab, "--quiet")
        if proc.returncode != 0:
            raise RuntimeError("retrain failed")
        candidate = sorted(p.name for p in (router_dir / "versions").iterdir() if p.name.startswith("v"))[-1]
        results["export_rows"] = sum(1 for _ in export.open(encoding="utf-8")) - 1
        results["candidate"] = candidate

        # 3. Promote under load.
        print(f"\n3. promote {candidate} while clients call the shadow gateway", flush=True)
        promote_load = LoadResult()
        level = levels[-1]
        promote = asyncio.run(
            _load_while(
                gw_urls["shadow"],
                bodies,
                level,
                lambda: _ferryman(
                    tmp, "learn", "promote", "--traffic", str(export), "--candidate", candidate, *pair, *lab, "--quiet"
                ),
                f"{candidate}@",
                args.hold_s,
                promote_load,
            )
        )
        results["promoted"] = promote.returncode == 0
        results["promote_load"] = promote_load.as_dict()
        print(f"   clients: {promote_load.as_dict()}", flush=True)

        # 4. Fresh prompts, decided by the serving version, judged.
        print(f"\n4. {len(after_prompts)} fresh prompts through the shadow gateway", flush=True)
        fresh_load = LoadResult()
        # One at a time: this step measures the new version's decisions, not load, and a loaded machine's
        # learning worker drops shadow samples that arrive faster than it can judge (too few judged to score).
        asyncio.run(_send_all(gw_urls["shadow"], [_body(p) for p in after_prompts], 1, fresh_load))
        asyncio.run(wait_idle(admin))
        export2 = tmp / "export-after.csv"
        _ferryman(tmp, "learn", "export", "--store", f"sqlite://{store}", "--out", str(export2))
        prompts_j, scores, verdicts_j, versions = _judged_rows(export2, set(after_prompts))
        embedder = Embedder(args.encoder_dir, args.cache_dir, progress=False)
        base = load_scoring_router(router_dir, embedder)
        base_scores = base.score(prompts_j, embedder) if prompts_j else np.zeros(0)
        v = np.array(verdicts_j)
        results["after"] = {
            "judged": len(prompts_j),
            "versions": dict(Counter(x.split("@")[0] for x in versions)),
            "router_apgr_live": round(verdict_apgr(np.array(scores), v), 4) if prompts_j else None,
            "router_apgr_base_same_prompts": round(verdict_apgr(base_scores, v), 4) if prompts_j else None,
            "load": fresh_load.as_dict(),
        }
        print(f"   {results['after']}", flush=True)

        # 5. Roll back under load.
        print("\n5. roll back while clients call the shadow gateway", flush=True)
        rollback_load = LoadResult()
        results["rolled_back"] = None  # skipped
        if results["promoted"]:
            rollback = asyncio.run(
                _load_while(
                    gw_urls["shadow"],
                    bodies,
                    level,
                    lambda: _ferryman(tmp, "learn", "rollback", "--router-dir", str(router_dir)),
                    "base@",
                    args.hold_s,
                    rollback_load,
                )
            )
            results["rolled_back"] = rollback.returncode == 0
            print(f"   clients: {rollback_load.as_dict()}", flush=True)
        else:
            print("   skipped: nothing was promoted, the base is still serving", flush=True)
        results["rollback_load"] = rollback_load.as_dict()
    results["wall_s"] = round(time.perf_counter() - t_start, 1)
    _summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    ok = (
        results["promoted"]
        and results["rolled_back"]
        and results["promote_load"]["failed"] == 0
        and results["rollback_load"]["failed"] == 0
        and candidate in results["promote_load"]["version_sequence"]
    )
    return 0 if ok else 1


async def _send_all(url: str, bodies: list[bytes], level: int, result: LoadResult) -> None:
    queue = list(reversed(bodies))

    async def client() -> None:
        conn = KeepAliveConnection(url)
        try:
            while queue:
                await result.call(conn, queue.pop())
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(level)))


def _summary(results: dict[str, Any]) -> None:
    p, r, a = results["promote_load"], results["rollback_load"], results["after"]
    print("\nsummary", flush=True)
    print(f"  store export: {results['export_rows']} judged comparisons; candidate {results['candidate']}")
    print(
        f"  promotion: {'promoted' if results['promoted'] else 'NOT promoted'}; under load {p['sent']} sent, "
        f"{p['answered']} answered, {p['failed']} failed; decisions by version {p['version_sequence']}"
    )
    print(
        f"  after: {a['judged']} judged fresh prompts decided by {a['versions']}: router APGR {a['router_apgr_live']} "
        f"(the base version on the same prompts: {a['router_apgr_base_same_prompts']})"
    )
    print(
        "  rollback: skipped (nothing was promoted)"
        if results["rolled_back"] is None
        else f"  rollback: {'done' if results['rolled_back'] else 'FAILED'}; under load {r['sent']} sent, "
        f"{r['answered']} answered, {r['failed']} failed; decisions by version {r['version_sequence']}"
    )
    print(f"  wall time {results['wall_s']} s, load average {os.getloadavg()[0]:.2f}", flush=True)
