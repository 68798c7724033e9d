"""``ferryman bench steady``: the gateway with the real scorer at a steady rate, with two heavy requests mid-run.

Processes on loopback: a fake OpenAI-compatible provider (``--provider-delay-ms``), ``ferryman scorer``
with the real routers and its default settings, and ``ferryman gateway`` (auth off, the default
``scorer.deadline_ms`` unless ``--deadline-ms``, log level INFO so every fallback line is kept).
This process sends ``POST /v1/chat/completions`` open-loop at ``--rate`` requests per second
for ``--seconds``, whatever the answers take, each a prompt of the realistic mix
(``bench.prompts``: whole Arena prompts plus 25 % long-context ones), the routers taken in turn
(``router-<r>-0.5``: mf, sw, bert). During the run, straight to the scorer on connections of
their own (other callers):

- at ``--heavy-at`` s, a ``BatchScore`` of ``--batch-size`` (1,024) prompts of the mix;
- 5 s later, a ``Score`` whose conversation holds ``--messages`` (3,000,000) empty messages (6 MB).

Printed, then checked: every request accounted for (sent = answered + clean errors + lost; lost
must be 0); the share routed by the scorer-down default (target <= 1 %), counted three ways that
must agree (the answers' ``x-ferryman-decision-source``, the gateway's
``ferryman_gateway_scorer_fallbacks_total`` and its "routed without a score" log lines); the
gateway's Score round trip (``x-ferryman-scorer-ms``, a fallback counting as past the deadline)
p50/p99 by prompt length and during the heavy requests (target: p99 within the deadline); and
what each heavy request got back, and when. Exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.gateway import KeepAliveConnection, _wait_scored, start_fake_provider, start_gateway
from bench.lengths import token_counts
from bench.prompts import BUCKETS, describe_mix, length_bucket, prompt_mix
from ferryman import paths
from harness.processes import free_port, scrape, spawn

FALLBACK_LINE = "routed without a score"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the steady load")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second, open loop")
    parser.add_argument("--routers", default="mf,sw,bert", help="routers the requests use, in turn")
    parser.add_argument("--deadline-ms", type=float, help="the gateway's scorer.deadline_ms (default: its default)")
    parser.add_argument("--heavy-at", type=float, default=20.0, help="when the BatchScore arrives (s into the run)")
    parser.add_argument("--batch-size", type=int, default=1024, help="prompts in the heavy BatchScore")
    parser.add_argument("--messages", type=int, default=3_000_000, help="empty messages in the heavy Score")
    parser.add_argument("--provider-delay-ms", type=float, default=20.0, help="the fake provider's answer time")
    parser.add_argument("--mix-size", type=int, default=1200, help="prompts in the mix (cycled)")
    parser.add_argument("--long-share", type=float, default=0.25, help="share of long-context prompts in the mix")
    parser.add_argument("--data-dir", type=Path, default=paths.data_dir(), help="public data for the mix")
    parser.add_argument("--routers-dir", type=Path, default=paths.routers_dir(), help="router artifacts")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder")
    parser.add_argument("--json", type=Path, help="also write the figures here")


@dataclass
class Answer:
    """One gateway request as the client saw it."""

    sent_at: float
    bucket: str
    status: int = 0  # 0: no HTTP answer (lost)
    source: str = ""
    scorer_ms: float = math.nan
    server_ms: float = math.nan  # the scorer's own time (queue + inference), within scorer_ms
    total_ms: float = math.nan
    error: str = ""


@dataclass
class Heavy:
    """What a heavy request got back."""

    name: str
    started_at: float = math.nan
    seconds: float = math.nan
    code: str = ""
    details: str = ""


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    heavy: list[Heavy] = field(default_factory=list)
    late_ms: float = 0.0  # the load generator's worst lateness: a stalled client would send in bursts


async def _post(pool: list[KeepAliveConnection], url: str, body: bytes, answer: Answer) -> None:
    conn = pool.pop() if pool else KeepAliveConnection(url)
    started = time.perf_counter()
    try:
        status, headers, _ = await asyncio.wait_for(conn.post(body), 60)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
        answer.error = f"{type(exc).__name__}: {exc}"
        await conn.close()
        return
    answer.total_ms = (time.perf_counter() - started) * 1000
    answer.status = status
    answer.source = headers.get("x-ferryman-decision-source", "")
    if "x-ferryman-scorer-ms" in headers:
        answer.scorer_ms = float(headers["x-ferryman-scorer-ms"])
        answer.server_ms = float(headers.get("x-ferryman-scorer-server-ms", "nan"))
    pool.append(conn)


def heavy_requests(mix: Sequence[str], batch_size: int, messages: int) -> dict[str, tuple[str, bytes]]:
    """The two heavy requests, serialized before the run (3 million messages take seconds to build)."""
    from ferryman.scorer.v1 import scorer_pb2 as pb

    prompts = [mix[i % len(mix)] for i in range(batch_size)]
    batch = pb.BatchScoreRequest(requests=[pb.ScoreRequest(router="mf", prompt=p) for p in prompts])
    conversation = pb.Conversation(messages=[pb.ChatMessage() for _ in range(messages)])
    many = pb.ScoreRequest(router="mf", conversation=conversation)
    return {
        "BatchScore": ("/ferryman.scorer.v1.ScorerService/BatchScore", batch.SerializeToString()),
        "Score, many messages": ("/ferryman.scorer.v1.ScorerService/Score", many.SerializeToString()),
    }


def send_heavy(scorer: str, method: str, payload: bytes, heavy: Heavy, t0: float, at: float) -> None:
    """In its own thread and connection (another caller): wait until ``at`` s into the run, send, record the answer."""
    import grpc

    from ferryman.scorer.v1 import scorer_pb2 as pb

    time.sleep(max(0.0, t0 + at - time.perf_counter()))
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(scorer, options=options) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        heavy.started_at = time.perf_counter() - t0
        started = time.perf_counter()
        try:
            raw = call(payload, timeout=300)
            heavy.code = "OK"
            if method.endswith("BatchScore"):
                heavy.details = f"{len(pb.BatchScoreResponse.FromString(raw).responses)} results"
        except grpc.RpcError as exc:
            heavy.code, heavy.details = exc.code().name, exc.details() or ""  # type: ignore[attr-defined]
        heavy.seconds = time.perf_counter() - started


async def _load(
    args: argparse.Namespace,
    url: str,
    scorer: str,
    mix: list[str],
    buckets: list[str],
    heavy: dict[str, tuple[str, bytes]],
) -> Run:
    routers = [r.strip() for r in args.routers.split(",") if r.strip()]
    run = Run()
    pool: list[KeepAliveConnection] = []
    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter()
    threads = []
    for (name, (method, payload)), at in zip(heavy.items(), (args.heavy_at, args.heavy_at + 5), strict=True):
        record = Heavy(name)
        run.heavy.append(record)
        threads.append(threading.Thread(target=send_heavy, args=(scorer, method, payload, record, t0, at)))
    for th in threads:
        th.start()
    late = 0.0
    for k in range(int(args.rate * args.seconds)):
        due = t0 + k / args.rate
        while (now := time.perf_counter()) < due:
            await asyncio.sleep(min(due - now, 0.05))
        late = max(late, now - due)
        i = k % len(mix)
        body = {"model": f"router-{routers[k % len(routers)]}-0.5", "messages": [{"role": "user", "content": mix[i]}]}
        answer = Answer(now - t0, buckets[i])
        run.answers.append(answer)
        tasks.append(asyncio.create_task(_post(pool, url, json.dumps(body).encode(), answer)))
    await asyncio.gather(*tasks)
    for th in threads:
        await asyncio.to_thread(th.join)
    for conn in pool:
        await conn.close()
    run.late_ms = late * 1000
    return run


def _pcts(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{_pct(values, 50):7.1f} / {_pct(values, 99):7.1f}"


def _pct(values: Sequence[float], q: float) -> float:
    """A percentile that is one of the values (``inf`` stands for a fallback; interpolating would give nan)."""
    return float(np.percentile(values, q, method="higher")) if values else math.nan


def _p99(values: Sequence[float]) -> float:
    return _pct(values, 99)


def report(
    run: Run, deadline_ms: float, fallbacks_metric: int, fallback_lines: int, heavy_window: tuple[float, float]
) -> tuple[str, dict[str, Any], bool]:
    """The tables, the figures as a dict, and whether every target is met."""
    answers = run.answers
    sent = len(answers)
    ok = [a for a in answers if a.status == 200]
    clean = [a for a in answers if a.status not in (0, 200)]
    lost = [a for a in answers if a.status == 0]
    fell_back = [a for a in ok if a.source == "scorer_unavailable"]
    scored = [a for a in ok if a.source == "scored"]
    share = len(fell_back) / len(ok) if ok else math.nan

    def scorer_times(group: Sequence[Answer]) -> list[float]:
        # A fallback waited the whole deadline (or failed fast): it counts as past the deadline.
        return [a.scorer_ms if a.source == "scored" else math.inf for a in group if a.status == 200]

    lines = [
        f"requests: sent {sent}, answered {len(ok)} (scored {len(scored)}, scorer-down default {len(fell_back)}), "
        f"clean errors {len(clean)}, lost {len(lost)}",
        f"fallbacks: answers {len(fell_back)}, gateway metric {fallbacks_metric}, gateway log lines {fallback_lines}",
        "",
        f"gateway's Score round trip (x-ferryman-scorer-ms; a fallback counts as past the deadline {deadline_ms:g} ms)",
        f"{'tokens':<9}{'n':>6}  {'p50 / p99 ms':>17}  {'fallbacks':>9}  {'scorer server time p50 / p99':>30}",
    ]

    def server(group: Sequence[Answer]) -> str:
        return _pcts([a.server_ms for a in group if a.source == "scored"])

    for label, _ in BUCKETS:
        group = [a for a in ok if a.bucket == label]
        if group:
            times = scorer_times(group)
            n_fb = sum(a.source == "scorer_unavailable" for a in group)
            lines.append(f"{label:<9}{len(group):>6}  {_pcts(times):>17}  {n_fb:>9}  {server(group):>30}")
    lo, hi = heavy_window
    during = [a for a in ok if lo <= a.sent_at <= hi]
    outside = [a for a in ok if not lo <= a.sent_at <= hi]
    lines.append(f"{'all':<9}{len(ok):>6}  {_pcts(scorer_times(ok)):>17}  {len(fell_back):>9}  {server(ok):>30}")
    n_during = sum(a.source == "scorer_unavailable" for a in during)
    lines.append(
        f"{'heavy on':<9}{len(during):>6}  {_pcts(scorer_times(during)):>17}  {n_during:>9}  {server(during):>30}"
        f"   ({lo:.1f}-{hi:.1f} s)"
    )
    n_outside = sum(a.source == "scorer_unavailable" for a in outside)
    lines.append(
        f"{'heavy off':<9}{len(outside):>6}  {_pcts(scorer_times(outside)):>17}  {n_outside:>9}  {server(outside):>30}"
    )
    full = [a for a in outside if a.bucket not in ("<=32", "33-128")]
    lines.append(
        f"{'full win.':<9}{len(full):>6}  {_pcts(scorer_times(full)):>17}  "
        f"{sum(a.source == 'scorer_unavailable' for a in full):>9}  {server(full):>30}   (> 128 tokens, heavy off)"
    )
    lines.append(
        f"end to end (through the gateway and the fake provider) p50 / p99 ms: {_pcts([a.total_ms for a in ok])}"
    )
    lines.append("")
    for h in run.heavy:
        lines.append(f"{h.name}: sent at {h.started_at:.1f} s, {h.code} after {h.seconds:.2f} s: {h.details[:160]}")
    p99_all, p99_during = _p99(scorer_times(ok)), _p99(scorer_times(during))
    checks = [
        ("nothing lost", len(lost) == 0, f"{len(lost)} lost"),
        ("scorer-down default <= 1 %", share <= 0.01, f"{100 * share:.2f} %"),
        (
            "every fallback logged and counted",
            len(fell_back) == fallbacks_metric == fallback_lines,
            f"{len(fell_back)} / {fallbacks_metric} / {fallback_lines}",
        ),
        ("others' p99 within the deadline", p99_all <= deadline_ms, f"{p99_all:.1f} ms"),
        ("others' p99 within it while heavy", p99_during <= deadline_ms, f"{p99_during:.1f} ms"),
        ("both heavy requests answered", all(h.code for h in run.heavy), ", ".join(h.code for h in run.heavy)),
    ]
    lines += ["", "targets:"]
    lines += [f"  {name:<40}{value:>20}   {'PASS' if passed else 'FAIL'}" for name, passed, value in checks]
    figures = {
        "sent": sent,
        "answered": len(ok),
        "scored": len(scored),
        "fallbacks": len(fell_back),
        "clean_errors": len(clean),
        "lost": len(lost),
        "fallback_share": share,
        "scorer_p99_ms": p99_all,
        "scorer_p99_ms_during_heavy": p99_during,
        "heavy": [h.__dict__ for h in run.heavy],
        "buckets": {
            label: sorted(a.scorer_ms for a in ok if a.bucket == label and a.source == "scored") for label, _ in BUCKETS
        },
    }
    return "\n".join(lines), figures, all(passed for _, passed, _ in checks)


def run(args: argparse.Namespace) -> int:
    from gateway.config import ScorerClientConfig

    deadline_ms = args.deadline_ms or ScorerClientConfig().deadline_ms
    mix_prompts = prompt_mix(args.data_dir, args.mix_size, long_share=args.long_share)
    mix = [p.text for p in mix_prompts]
    heavy = heavy_requests(mix, args.batch_size, args.messages)
    tokens = token_counts(args.encoder_dir, mix)
    buckets = [length_bucket(t) for t in tokens]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ferryman-bench-steady-") as tmp_s:
        tmp = Path(tmp_s)
        py = sys.executable
        _, fake_port = start_fake_provider(stack, tmp, args.provider_delay_ms)
        scorer_port = free_port()
        scorer_argv = [py, "-m", "ferryman", "scorer", "--routers-dir", str(args.routers_dir)]
        scorer_argv += ["--encoder-dir", str(args.encoder_dir), "--host", "127.0.0.1", "--port", str(scorer_port)]
        scorer = spawn("scorer", [*scorer_argv, "--metrics-port", "0"], tmp)
        stack.callback(scorer.stop)
        gateway, gw_ports = start_gateway(stack, tmp, fake_port, scorer_port, deadline_ms, "INFO")
        gw_port, admin_port = gw_ports["http_port"], gw_ports["admin_port"]
        url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        for r in args.routers.split(","):
            asyncio.run(_wait_scored(url, f"router-{r.strip()}-0.5"))
        time.sleep(2)  # let the gateway's start-up self-check finish
        before = scrape(admin_port, "ferryman_gateway_scorer_fallbacks_total") or Counter()
        lines_before = gateway.log.read_text(errors="replace").count(FALLBACK_LINE)
        load0 = os.getloadavg()[0]
        print(
            f"steady-rate benchmark: {os.cpu_count()} CPUs, load average {load0:.2f}, {args.rate:g} requests/s for "
            f"{args.seconds:g} s, routers {args.routers} in turn, scorer.deadline_ms {deadline_ms:g}, fake provider "
            f"{args.provider_delay_ms:g} ms; mix of {describe_mix(mix_prompts, tokens)}; BatchScore of "
            f"{args.batch_size} prompts at {args.heavy_at:g} s, Score of {args.messages:,} empty messages 5 s later",
            flush=True,
        )
        result = asyncio.run(_load(args, url, f"127.0.0.1:{scorer_port}", mix, buckets, heavy))
        time.sleep(1)
        after = scrape(admin_port, "ferryman_gateway_scorer_fallbacks_total") or Counter()
        metric = sum(after.values()) - sum(before.values())
        log_lines = gateway.log.read_text(errors="replace").count(FALLBACK_LINE) - lines_before
        batch = result.heavy[0]
        window = (batch.started_at, batch.started_at + (batch.seconds if math.isfinite(batch.seconds) else 0))
        text, figures, passed = report(result, deadline_ms, metric, log_lines, window)
        print(text)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if passed else 1
