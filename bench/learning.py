"""Shadow sampling's cost to clients: the same routed requests through a gateway with learning off
and one with shadow sampling on (``--rate``, default 20 %), side by side in one run.

Processes on loopback: a fake strong and a fake weak provider and a fake judge (each answering
after ``--provider-delay-ms``), a scorer (small test routers, or ``--routers-dir``), and three
gateways over them: ``off`` and ``off-twin`` (learning off: the twin measures the noise floor,
what two identical gateways differ by on this machine now) and ``shadow`` (learning on: shadow
at ``--rate`` on the policy, the judge, a SQLite store, or ``--store redis``; its learning worker
process does the shadow calls, the judging and the writes). Clients (one
keep-alive connection per worker) send non-streamed requests with real prompts (the Arena
questions in ``--prompts`` when present) to the policy ``bench-policy`` (the random router at
threshold 0.5: about half strong, half weak). Paths are interleaved in rounds, in a rotating
order, and after each round the benchmark waits until the shadow gateway's shadow jobs have
finished, so one path's background work never spills into another's measurement.

``--baseline-dir DIR`` adds a fourth gateway, ``shadow-base``: the same shadow configuration run
from another revision's packages (``git archive REV | tar -x -C DIR``), interleaved with the rest,
so the shadow path's CPU and latency before and after a change print side by side in one run.

Printed per concurrency: n, p50/p90/p99, mean, and CPU time per request, per path: the gateway
process's, its learning worker's, the scorer's (with them, the product's) and the rig's (the fake
providers and judge: they stand for remote machines, but here take the same cores), and the Score
calls the scorer answered per client request (1 on every path: the shadow path asks it for nothing
more); shadow − off and twin − off for each percentile with a bootstrap 95 % interval; "unchanged
within noise" when the shadow difference's interval contains 0 or its size is within the twin's;
then what the shadow gateway did (shadowed share, judge verdicts, store writes, spend) and sent /
answered / lost per path.

``--product-cpus 0 --rig-cpus 1`` (``harness.cpus``) runs the product (gateways, learning worker,
scorer) on CPU 0 and the rig plus the client on CPU 1, as if those were other machines; the default
layout is shared. The header line and the JSON (``cpu_layout``) say which ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.gateway import KeepAliveConnection, _cpu_note, _cpu_s
from ferryman import paths
from gateway.learning.config import LearningConfig, ShadowConfig
from harness import cpus
from harness.cpus import CpuLayout
from harness.processes import Process, RedisServer, children, free_port, read_json, spawn, wait_for

POLICY = "bench-policy"
PATHS = ("off", "off-twin", "shadow")
#: The shadow gateway run from ``--baseline-dir``'s packages (another revision), when given.
BASE = "shadow-base"
FALLBACK_PROMPTS = [
    "Write a haiku about ferries crossing a river at dawn.",
    "Explain the difference between a process and a thread, with an example of when to use each.",
    "What is 17 * 23? Show your work.",
    "Summarise the causes of the French Revolution in three bullet points.",
]
REPLY_WORDS = 120
#: The shadow gateway's ``shadow.max_concurrent`` (the product's default).
MAX_CONCURRENT = ShadowConfig.max_concurrent


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative (0: no shadow job waits)")
    return value


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """How the shadow gateway's learning worker runs and waits (both learning benchmarks)."""
    parser.add_argument(
        "--worker-sched-idle",
        action=argparse.BooleanOptionalAction,
        default=LearningConfig.worker_sched_idle,
        help="its learning worker under SCHED_IDLE or at its niceness only (worker_sched_idle; default: the"
        " product's, %(default)s)",
    )
    parser.add_argument(
        "--max-queued",
        type=_count,
        default=ShadowConfig.max_queued,
        help=f"its shadow.max_queued: admitted shadow jobs that may wait beyond the {MAX_CONCURRENT} running"
        " (shadow.max_concurrent) instead of being shed as saturated (default: the product's, %(default)s; 0: none"
        " wait)",
    )


def shadow_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The shadow gateway's shadowing and worker settings, as the header line and the JSON report them."""
    return {
        "sample_rate": args.rate,
        "max_concurrent": MAX_CONCURRENT,
        "max_queued": args.max_queued,
        "worker_sched_idle": args.worker_sched_idle,
    }


def describe_shadow(settings: dict[str, Any]) -> str:
    """``settings`` (:func:`shadow_settings`) in words, for a benchmark's header line."""
    idle = " and SCHED_IDLE" if settings["worker_sched_idle"] else ""
    return (
        f"shadow rate {settings['sample_rate']:g}, max_concurrent {settings['max_concurrent']}, max_queued"
        f" {settings['max_queued']}; learning worker at nice 10{idle}"
    )


def learning_section(settings: dict[str, Any], store_url: str, **extra: Any) -> dict[str, Any]:
    """The shadow gateway's ``learning:`` section for ``settings`` (:func:`shadow_settings`)."""
    shadow = {k: settings[k] for k in ("sample_rate", "max_concurrent", "max_queued")}
    return {
        "policies": [POLICY],
        "store": {"url": store_url},
        "shadow": shadow | {"daily_budget_usd": 1000.0, "timeout_s": 30},
        "judge": {"model": "bench-judge"},
        "worker_sched_idle": settings["worker_sched_idle"],
    } | extra


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=600, help="measured requests per path and concurrency")
    parser.add_argument("--warmup", type=int, default=60, help="unmeasured requests per path first")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client concurrency levels")
    parser.add_argument("--rounds", type=int, default=6, help="interleaving rounds (the path order rotates)")
    parser.add_argument("--rate", type=float, default=0.2, help="shadow sample rate of the shadow gateway")
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite", help="the shadow gateway's store")
    parser.add_argument("--feedback", action="store_true", help="also record every answer for feedback")
    add_worker_arguments(parser)
    parser.add_argument(
        "--provider-delay-ms", type=float, default=50.0, help="the fake providers and judge answer after this delay"
    )
    parser.add_argument(
        "--prompts",
        type=Path,
        default=paths.data_dir() / "arena-bench-v1" / "questions.jsonl",
        help="real prompts: a questions JSONL ({turns: [...]}); a few built-in ones when absent",
    )
    parser.add_argument("--routers-dir", type=Path, help="router artifacts (default: build small test routers)")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir())
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        help="also run a shadow gateway from this directory's packages (another revision: git archive REV | tar -x"
        " -C DIR), as path shadow-base, interleaved with the others",
    )
    cpus.add_arguments(parser)


def load_prompts(path: Path) -> list[str]:
    if not path.is_file():
        return FALLBACK_PROMPTS
    prompts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        turns = json.loads(line).get("turns") or []
        if turns and isinstance(turns[0], str) and turns[0].strip():
            prompts.append(turns[0])
    return prompts or FALLBACK_PROMPTS


def reply_text(tier: str) -> str:
    words = f"This is the {tier} model's answer.".split()
    filler = ["The", "answer", "continues", "with", "a", "careful", "explanation", "of", "each", "step"]
    return " ".join(words + [filler[i % len(filler)] for i in range(REPLY_WORDS - len(words))]) + "."


def gateway_config(
    tmp: Path,
    name: str,
    urls: dict[str, str],
    scorer_port: int,
    learning: dict[str, Any] | None,
    policy: dict[str, Any] | None = None,
) -> Path:
    """A gateway over the fake strong/weak/judge models; ``policy`` is ``POLICY``'s routing (default: random at 0.5)."""

    def model(url: str, price_in: float, price_out: float, key: bool = True) -> dict[str, Any]:
        m: dict[str, Any] = {"provider": "openai", "base_url": url, "price_in_per_mtok": price_in}
        m |= {"price_out_per_mtok": price_out, "read_timeout_s": 30}
        return m | ({"api_key_env": "BENCH_FAKE_KEY"} if key else {})

    config: dict[str, Any] = {
        "models": {
            "bench-strong": model(urls["strong"], 10.0, 30.0),
            "bench-weak": model(urls["weak"], 0.5, 1.5),
            "bench-judge": model(urls["judge"], 0.5, 1.5, key=False),
        },
        "tiers": {"strong": {"models": ["bench-strong"]}, "weak": {"models": ["bench-weak"]}},
        "policies": {POLICY: policy or {"router": "random", "threshold": 0.5}},
        "scorer": {"target": f"dns:///127.0.0.1:{scorer_port}", "deadline_ms": 1000},
        "server": {"grpc_host": "127.0.0.1", "grpc_port": 0, "http_host": "127.0.0.1", "http_port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "auth": {"disabled": True},
    }
    if learning is not None:
        config["learning"] = learning
    path = tmp / f"gateway-{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == w for k, w in labels.items())
    )


async def wait_idle(port: int | Sequence[int], timeout_s: float = 60.0) -> None:
    """Until the shadow gateway (each of ``port``'s) has no shadow job in flight."""
    deadline = time.monotonic() + timeout_s
    for p in [port] if isinstance(port, int) else port:
        while total(await asyncio.to_thread(scrape, p), "ferryman_learning_shadow_inflight") > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("shadow jobs did not finish")
            await asyncio.sleep(0.05)


async def wait_scored(url: str, body: bytes, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    conn = KeepAliveConnection(url)
    try:
        while True:
            status, headers, _ = await conn.post(body)
            if status == 200 and headers.get("x-ferryman-decision-source") == "scored":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"routed requests are not scored: {status} {headers}")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def _tree_cpu_s(pid: int) -> tuple[float, float]:
    """(CPU seconds of the process, of its live children)."""
    return _cpu_s(pid), sum(_cpu_s(c) for c in children(pid))


#: The processes every path shares, by kind: {"scorer": [pid], "rig": [fake provider and judge pids]}.
Shared = dict[str, list[int]]


def _shared_cpu_s(shared: Shared) -> tuple[float, float]:
    """(CPU seconds of the scorer, of the rig's processes)."""
    return sum(_cpu_s(s) for s in shared["scorer"]), sum(_cpu_s(s) for s in shared["rig"])


class Counts:
    def __init__(self) -> None:
        self.sent = self.answered = self.lost = 0
        #: The path's gateway process CPU time over its rounds, and its children's (the learning worker).
        self.cpu_s = 0.0
        self.worker_cpu_s = 0.0
        #: The shared processes' CPU time over the path's rounds: what the path's requests, and its shadow
        #: and judge calls, cost the processes every path uses. The scorer is the product's; the fake
        #: providers and judge are the rig's (they stand for remote machines, here on the same cores).
        self.scorer_cpu_s = 0.0
        self.rig_cpu_s = 0.0
        #: Shadow jobs the path's gateway admitted over its rounds (shadow paths).
        self.shadowed = 0.0
        #: Score calls the scorer answered over the path's rounds (from any process: gateway or worker).
        self.score_calls = 0.0


async def _run_path(
    conns: list[KeepAliveConnection], bodies: list[bytes], start: int, n: int, counts: Counts
) -> list[float]:
    latencies: list[float] = []
    next_i = start
    remaining = n

    async def worker(conn: KeepAliveConnection) -> None:
        nonlocal remaining, next_i
        while remaining > 0:
            remaining -= 1
            body = bodies[next_i % len(bodies)]
            next_i += 1
            counts.sent += 1
            t0 = time.perf_counter()
            try:
                status, _, _ = await conn.post(body)
            except (OSError, asyncio.IncompleteReadError):
                counts.lost += 1
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            if status != 200:
                counts.lost += 1
                continue
            counts.answered += 1
            latencies.append(elapsed)

    await asyncio.gather(*(worker(c) for c in conns))
    return latencies


async def measure(
    urls: dict[str, str],
    pids: dict[str, int],
    bodies: list[bytes],
    args: argparse.Namespace,
    level: int,
    shadow_ports: dict[str, int],
    shared: Shared,
    scorer_metrics: int | None = None,
) -> tuple[dict[str, list[float]], dict[str, Counts]]:
    """``level`` clients per path (``urls``' keys), the paths interleaved in ``args.rounds`` rounds in a
    rotating order; after each path's turn, until no shadow gateway (``shadow_ports``: path -> admin
    port) has a job in flight.

    ``shared``: the pids every path uses, by kind: "scorer" (the product's) and "rig" (fake providers and
    judge); their CPU time is counted per path. ``scorer_metrics``: the scorer's /metrics port, to count
    the Score calls it answered per path.
    """
    paths = tuple(urls)
    conns = {p: [KeepAliveConnection(urls[p]) for _ in range(level)] for p in paths}
    lat: dict[str, list[float]] = {p: [] for p in paths}
    counts = {p: Counts() for p in paths}
    try:
        for p in paths:
            await _run_path(conns[p], bodies, 0, args.warmup, Counts())
        await wait_idle(list(shadow_ports.values()))
        per_round = max(1, args.requests // args.rounds)
        for r in range(args.rounds):
            order = paths[r % len(paths) :] + paths[: r % len(paths)]
            for p in order:
                # every path gets the same prompts in the same round
                shadowed0 = await _shadowed(shadow_ports.get(p))
                calls0 = await _score_calls(scorer_metrics)
                cpu0, worker0 = _tree_cpu_s(pids[p])
                scorer0, rig0 = _shared_cpu_s(shared)
                lat[p] += await _run_path(conns[p], bodies, r * per_round, per_round, counts[p])
                await wait_idle(list(shadow_ports.values()))
                cpu1, worker1 = _tree_cpu_s(pids[p])
                scorer1, rig1 = _shared_cpu_s(shared)
                counts[p].shadowed += await _shadowed(shadow_ports.get(p)) - shadowed0
                counts[p].score_calls += await _score_calls(scorer_metrics) - calls0
                counts[p].cpu_s += cpu1 - cpu0
                counts[p].worker_cpu_s += worker1 - worker0
                counts[p].scorer_cpu_s += scorer1 - scorer0
                counts[p].rig_cpu_s += rig1 - rig0
    finally:
        for c in (c for cs in conns.values() for c in cs):
            await c.close()
    return lat, counts


async def _shadowed(port: int | None) -> float:
    """Shadow jobs admitted so far by the gateway whose admin port is ``port`` (0 without one)."""
    if port is None:
        return 0.0
    return total(await asyncio.to_thread(scrape, port), "ferryman_learning_requests_total", outcome="shadowed")


async def _score_calls(port: int | None) -> float:
    """Score calls the scorer whose /metrics port is ``port`` has answered so far (0 without one)."""
    if port is None:
        return 0.0
    return total(await asyncio.to_thread(scrape, port), "ferryman_scorer_requests_total", method="Score")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
VERDICTS = ("strong", "weak", "tie", "inconsistent", "invalid", "error")


def shadow_summary(before: Samples, after: Samples) -> dict[str, Any]:
    """What the shadow gateway did between two scrapes: shadowed share, saturation, store writes, spend, verdicts."""

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    verdicts = {v: int(delta("ferryman_learning_judge_verdicts_total", verdict=v)) for v in VERDICTS}
    return {
        "shadowed": delta("ferryman_learning_requests_total", outcome="shadowed"),
        "eligible": delta("ferryman_learning_requests_total"),
        "saturated": delta("ferryman_learning_requests_total", outcome="saturated"),
        "writes_ok": delta("ferryman_learning_store_ops_total", op="put", outcome="ok"),
        "writes_failed": sum(
            delta("ferryman_learning_store_ops_total", op="put", outcome=o) for o in ("error", "timeout", "dropped")
        ),
        "spend": delta("ferryman_learning_spend_usd_total"),
        "verdicts": {k: v for k, v in verdicts.items() if v},
    }


def _boot_diff(a: np.ndarray, b: np.ndarray, q: float, n: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Percentile ``q`` of b minus that of a, and a bootstrap 95 % interval."""
    point = float(np.percentile(b, q) - np.percentile(a, q))
    ia = rng.integers(0, len(a), (n, len(a)))
    ib = rng.integers(0, len(b), (n, len(b)))
    diffs = np.percentile(b[ib], q, axis=1) - np.percentile(a[ia], q, axis=1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return point, float(lo), float(hi)


def _cpu_ms(counts: Counts) -> tuple[float, float, float, float]:
    """(gateway, learning worker, scorer, rig: fake providers and judge) CPU ms per answered request."""
    n = max(1, counts.answered)
    cpu = (counts.cpu_s, counts.worker_cpu_s, counts.scorer_cpu_s, counts.rig_cpu_s)
    return cpu[0] * 1000 / n, cpu[1] * 1000 / n, cpu[2] * 1000 / n, cpu[3] * 1000 / n


def _per_job(counts: Counts, ms_per_request: float) -> float:
    """CPU ms per answered request -> per shadow job the path's gateway admitted."""
    return ms_per_request * counts.answered / max(1.0, counts.shadowed)


def report(
    results: dict[int, tuple[dict[str, list[float]], dict[str, Counts]]],
    shadows: dict[str, dict[str, Any]],
    n_boot: int,
) -> tuple[str, list[dict[str, Any]]]:
    """The table; ``shadows``: each shadow path's ``shadow_summary`` ("shadow", and ``BASE`` with a baseline).

    The verdict is about "shadow" (this revision); ``BASE`` prints beside it, with shadow − shadow-base.
    """
    rng = np.random.default_rng(0)
    head = f"{'conc':>4}  {'path':<11} {'n':>5}  {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}"
    lines = [head + f"  {'gw CPU/req':>10} {'worker':>7} {'scorer':>7} {'rig':>7}"]
    rows: list[dict[str, Any]] = []
    verdicts = []
    paths: list[str] = []
    for level, (lat, counts) in results.items():
        paths = list(lat)
        arrays = {p: np.asarray(v) for p, v in lat.items()}
        for p in paths:
            a = arrays[p]
            pct = [float(np.percentile(a, q)) for q in (50, 90, 99)]
            cpu_ms, worker_ms, scorer_ms, rig_ms = _cpu_ms(counts[p])
            lines.append(
                f"{level:>4}  {p:<11} {len(a):>5}  {pct[0]:>8.2f} {pct[1]:>8.2f} {pct[2]:>8.2f} {a.mean():>8.2f}"
                f"  {cpu_ms:>10.2f} {worker_ms:>7.2f} {scorer_ms:>7.2f} {rig_ms:>7.2f}"
            )
            rows.append(
                {"concurrency": level, "path": p, "n": len(a), "p50": pct[0], "p90": pct[1], "p99": pct[2]}
                | {
                    "mean": float(a.mean()),
                    "gateway_cpu_ms_per_request": cpu_ms,
                    "worker_cpu_ms_per_request": worker_ms,
                    "scorer_cpu_ms_per_request": scorer_ms,
                    "rig_cpu_ms_per_request": rig_ms,
                    "shared_cpu_ms_per_request": scorer_ms + rig_ms,
                    "shadowed": counts[p].shadowed,
                    "score_calls_per_request": counts[p].score_calls / max(1, counts[p].answered),
                }
            )
        off = _cpu_ms(counts["off"])
        added = {p: [x - o for x, o in zip(_cpu_ms(counts[p]), off, strict=True)] for p in shadows}
        sums = [
            f"{p} {g:+.2f} / {w:.2f} / {sc:+.2f} ms, product {g + w + sc:+.2f} (per shadow job"
            f" {_per_job(counts[p], g + w + sc):.2f}, worker {_per_job(counts[p], w):.2f}); rig {rig:+.2f} (per shadow"
            f" job {_per_job(counts[p], rig):.2f}); {counts[p].shadowed:.0f} jobs"
            for p, (g, w, sc, rig) in added.items()
        ]
        lines.append(
            f"{'':>4}  CPU the shadow path adds per client request, vs off (gateway / worker / scorer = the"
            " product's; rig = fake providers and judge): " + "; ".join(sums)
        )
        lines.append(
            f"{'':>4}  Score calls the scorer answered per client request: "
            + ", ".join(f"{p} {counts[p].score_calls / max(1, counts[p].answered):.3f}" for p in paths)
        )
        for q in (50, 90, 99):
            twin = _boot_diff(arrays["off"], arrays["off-twin"], q, n_boot, rng)
            shad = _boot_diff(arrays["off"], arrays["shadow"], q, n_boot, rng)
            within = shad[1] <= 0 <= shad[2] or abs(shad[0]) <= max(abs(twin[1]), abs(twin[2]))
            verdicts.append(within)
            lines.append(
                f"{'':>4}  p{q}: shadow - off {shad[0]:+7.2f} ms [{shad[1]:+.2f}, {shad[2]:+.2f}]"
                f"   twin - off {twin[0]:+7.2f} ms [{twin[1]:+.2f}, {twin[2]:+.2f}]"
                f"   {'unchanged within noise' if within else 'CHANGED beyond noise'}"
            )
            row: dict[str, Any] = {"concurrency": level, "percentile": q, "shadow_minus_off": shad}
            row |= {"twin_minus_off": twin, "within": within}
            if BASE in arrays:
                base = _boot_diff(arrays["off"], arrays[BASE], q, n_boot, rng)
                vs = _boot_diff(arrays[BASE], arrays["shadow"], q, n_boot, rng)
                base_within = base[1] <= 0 <= base[2] or abs(base[0]) <= max(abs(twin[1]), abs(twin[2]))
                lines.append(
                    f"{'':>4}       {BASE} - off {base[0]:+7.2f} ms [{base[1]:+.2f}, {base[2]:+.2f}]"
                    f"   shadow - {BASE} {vs[0]:+7.2f} ms [{vs[1]:+.2f}, {vs[2]:+.2f}]"
                    f"   baseline {'unchanged within noise' if base_within else 'CHANGED beyond noise'}"
                )
                row |= {"base_minus_off": base, "shadow_minus_base": vs, "base_within": base_within}
            rows.append(row)
    lines.append("intervals: bootstrap 95 % over requests; twin = a second learning-off gateway (the noise floor)")
    lines.append(
        "CPU ms per answered request: gw, the gateway process's; worker, its learning worker's (shadow calls, judge,"
        " store writes; at nice 10, or SCHED_IDLE); scorer, the scorer's; rig, the fake providers' and judge's,"
        " which stand for remote machines but run on this machine's cores (the shadow path's include its shadow"
        " and judge calls)"
    )
    answered = {p: sum(c[p].answered for _, c in results.values()) for p in paths}
    sent = {p: sum(c[p].sent for _, c in results.values()) for p in paths}
    lost = {p: sum(c[p].lost for _, c in results.values()) for p in paths}
    lines.append("clients: " + ", ".join(f"{p} sent {sent[p]} answered {answered[p]} lost {lost[p]}" for p in paths))
    for p, shadow in shadows.items():
        lines.append(
            f"{p} gateway: {shadow['shadowed']:.0f} of {shadow['eligible']:.0f} answers shadowed"
            f" ({shadow['shadowed'] / max(1, shadow['eligible']):.1%}); judge verdicts {shadow['verdicts']};"
            f" store writes ok {shadow['writes_ok']:.0f}, failed {shadow['writes_failed']:.0f};"
            f" spend ${shadow['spend']:.4f}; saturated {shadow['saturated']:.0f}"
        )
    changed = len(verdicts) - sum(verdicts)
    lines.append(
        "verdict: unchanged within noise at every percentile and level"
        if not changed
        else f"verdict: changed beyond noise at {changed} of {len(verdicts)} (percentile, level) points"
    )
    return "\n".join(lines), rows


def start_gateway(
    stack: ExitStack,
    tmp: Path,
    name: str,
    urls: dict[str, str],
    scorer_port: int,
    learning: dict[str, Any] | None,
    policy: dict[str, Any] | None = None,
    cwd: Path | None = None,
    layout: CpuLayout = cpus.SHARED,
) -> tuple[int, int, int]:
    """A ``ferryman gateway`` process (``gateway_config``; from ``cwd``'s packages when given) on the
    product's CPUs of ``layout``, stopped by ``stack``: (HTTP port, admin port, pid)."""
    config = gateway_config(tmp, name, urls, scorer_port, learning, policy)
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(config)]
    argv += ["--port-file", str(tmp / f"{name}.json"), "--log-level", "WARNING"]
    with layout.product_spawns():
        gw = spawn(f"gateway-{name}", argv, tmp, {"BENCH_FAKE_KEY": "bench"}, cwd=cwd)
    stack.callback(gw.stop)
    written = wait_for(name, lambda: read_json(tmp / f"{name}.json"), 120, gw.proc)
    return int(written["http_port"]), int(written["admin_port"]), gw.proc.pid


def start_gateways(
    stack: ExitStack,
    tmp: Path,
    urls: dict[str, str],
    scorer_port: int,
    learning: dict[str, Any],
    probe: bytes,
    policy: dict[str, Any] | None = None,
    baseline_dir: Path | None = None,
    layout: CpuLayout = cpus.SHARED,
) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
    """One gateway per path in ``PATHS`` (``learning`` on "shadow" only), each answering ``probe`` scored;
    with ``baseline_dir``, also ``BASE``: the shadow configuration (its own store) from that directory's packages.
    All on the product's CPUs of ``layout``.

    Returns the chat-completions URL, admin port (/metrics) and pid per path.
    """
    ports: dict[str, int] = {}
    admin_ports: dict[str, int] = {}
    pids: dict[str, int] = {}
    for path in PATHS:
        on = learning if path == "shadow" else None
        ports[path], admin_ports[path], pids[path] = start_gateway(
            stack, tmp, path, urls, scorer_port, on, policy, layout=layout
        )
    if baseline_dir is not None:
        store = dict(learning["store"])
        if store["url"].startswith("sqlite://"):
            store["url"] += "-base"
        else:
            store["namespace"] = "bench-base"
        base = learning | {"store": store}
        ports[BASE], admin_ports[BASE], pids[BASE] = start_gateway(
            stack, tmp, BASE, urls, scorer_port, base, policy, cwd=baseline_dir.resolve(), layout=layout
        )
    gw_urls = {p: f"http://127.0.0.1:{port}/v1/chat/completions" for p, port in ports.items()}
    for url in gw_urls.values():
        asyncio.run(wait_scored(url, probe))
    return gw_urls, admin_ports, pids


def check_layout(layout: CpuLayout, gateway_pids: Sequence[int], shared: Shared) -> dict[str, Any]:
    """The layout, with each process's CPUs read back (raises when one is not where the layout puts it):
    product = the scorer, the gateways and their children (learning workers); rig = the fakes and this
    process (the client)."""
    product = [*shared["scorer"], *gateway_pids, *(c for g in gateway_pids for c in children(g))]
    observed = layout.check({"product": product, "rig": [*shared["rig"], os.getpid()]})
    seen = {role: {"processes": len(masks), "cpus": sorted(set(masks.values()))} for role, masks in observed.items()}
    return layout.as_dict() | {"observed": seen}


def start_scorer(
    stack: ExitStack, tmp: Path, routers: Path, encoder_dir: Path, layout: CpuLayout, extra: Sequence[str] = ()
) -> tuple[Process, int, int]:
    """A ``ferryman scorer`` on loopback, on the product's CPUs of ``layout``, stopped by ``stack``:
    (process, gRPC port, /metrics port)."""
    port, metrics_port = free_port(), free_port()
    argv = [sys.executable, "-m", "ferryman", "scorer", "--routers-dir", str(routers), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--metrics-port", str(metrics_port), "--encoder-dir", str(encoder_dir), *extra]
    with layout.product_spawns():
        scorer = spawn("scorer", argv, tmp)
    stack.callback(scorer.stop)
    return scorer, port, metrics_port


def spawn_fake(tmp: Path, name: str, delay_ms: float, extra: list[str]) -> tuple[Process, str]:
    port_file = tmp / f"{name}.port"
    argv = [sys.executable, "-m", "harness.fake_provider", "--port-file", str(port_file), "--delay-ms", str(delay_ms)]
    proc = spawn(name, argv + extra, tmp)
    port = int(wait_for(name, lambda: read_json(port_file), 60, proc.proc))
    return proc, f"http://127.0.0.1:{port}/v1"


def run(args: argparse.Namespace) -> int:
    layout = cpus.from_args(args)
    layout.enter_rig()  # the client, and the rig's processes it starts
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    prompts = load_prompts(args.prompts)
    bodies = [json.dumps({"model": POLICY, "messages": [{"role": "user", "content": p}]}).encode() for p in prompts]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ferryman-bench-learning-") as tmp_s:
        tmp = Path(tmp_s)
        urls: dict[str, str] = {}
        fakes: list[int] = []  # the rig
        for name, extra in (("strong", ["--reply", reply_text("strong")]), ("weak", ["--reply", reply_text("weak")]),
                            ("judge", ["--judge"])):  # fmt: skip
            proc, urls[name] = spawn_fake(tmp, f"fake-{name}", args.provider_delay_ms, extra)
            stack.callback(proc.stop)
            fakes.append(proc.proc.pid)
        routers = args.routers_dir
        if routers is None:
            from harness.scorer import build_test_routers

            routers = build_test_routers(tmp / "routers", encoder_dir=args.encoder_dir)
        scorer, scorer_port, scorer_metrics = start_scorer(stack, tmp, routers, args.encoder_dir, layout)
        if args.store == "redis":
            redis = RedisServer(tmp)
            stack.callback(redis.stop)
            store_url = redis.url
        else:
            store_url = f"sqlite://{tmp / 'learning.db'}"
        settings = shadow_settings(args)
        learning = learning_section(settings, store_url, feedback={"enabled": args.feedback})
        gw_urls, admin_ports, pids = start_gateways(
            stack, tmp, urls, scorer_port, learning, bodies[0], baseline_dir=args.baseline_dir, layout=layout
        )
        shared: Shared = {"scorer": [scorer.proc.pid], "rig": fakes}
        placed = check_layout(layout, list(pids.values()), shared)
        print(
            f"learning benchmark: {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f};"
            f" {len(prompts)} prompts; provider/judge delay {args.provider_delay_ms:g} ms;"
            f" {args.store} store{', feedback records' if args.feedback else ''}; {describe_shadow(settings)}"
            + (f"; {BASE}: the shadow gateway from {args.baseline_dir}" if args.baseline_dir else "")
            + f"; {layout.describe()}",
            flush=True,
        )
        shadow_paths = [p for p in ("shadow", BASE) if p in gw_urls]
        shadow_admins = {p: admin_ports[p] for p in shadow_paths}
        before = {p: scrape(admin_ports[p]) for p in shadow_paths}
        all_pids = [os.getpid(), scorer.proc.pid, *fakes, *pids.values()]

        def run_levels() -> dict[int, tuple[dict[str, list[float]], dict[str, Counts]]]:
            return {
                level: asyncio.run(measure(gw_urls, pids, bodies, args, level, shadow_admins, shared, scorer_metrics))
                for level in levels
            }

        results = _cpu_note(all_pids, run_levels)
        summaries = {p: shadow_summary(before[p], scrape(admin_ports[p])) for p in shadow_paths}
        table, rows = report(results, summaries, args.bootstrap)
        print(table)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if args.json:
            out = {"cpu_layout": placed, "settings": settings, "rows": rows, "shadow": summaries["shadow"]}
            out["shadows"] = summaries
            args.json.write_text(json.dumps(out, indent=2))
    return 0
