"""Gateway under a flaky provider: load for ``--duration`` s per failure rate, nothing lost, nothing leaking.

Processes on loopback: two fake providers (``harness.fake_provider``) — "flaky", answering
``--fail-rate`` of its calls with HTTP 500 at random, and "healthy" — and a real ``ferryman
gateway``. The strong tier's chain is flaky-strong → healthy-strong → (weak tier) healthy-weak;
the scorer is unreachable, so every routed request starts on the flaky model. Clients (``--concurrency``
workers, 30 % streams) send requests for the whole run; each answer is classified as in the fault
suite (``harness.faults``): answered, after fallback, clean error, lost.

One phase per ``--fail-rates`` entry, each with fresh processes. What a phase shows:

- the breaker opens only when the rate it sees is over ``breaker.failure_rate`` (50 %): it sees
  one outcome per request, after retries (a 20 % call failure rate is 0.2³ = 0.8 % of requests
  failing all three tries; 90 % is 73 %), and its min_requests (10) in the window (30 s);
- fallbacks absorb the rest: 0 lost, 0 untyped 5xx;
- the gateway's memory (RSS) and open files after the warm-up stay flat (sampled every second
  from /proc; the figures compare the end of the warm-up with the end of the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from harness.faults import FALLBACK, Tally, classify_http
from harness.processes import Process, RedisServer, read_json, scrape, spawn, wait_for

ROUTED = "router-random-0.0"
FLAKY = "flaky-strong"
MESSAGES = [{"role": "user", "content": "Write a haiku about ferries crossing a river at dawn."}]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the memory/open-files baseline")
    parser.add_argument("--fail-rates", default="0.2,0.9", help="comma-separated call failure rates, one phase each")
    parser.add_argument("--concurrency", type=int, default=16, help="client workers")
    parser.add_argument("--stream-share", type=float, default=0.3, help="share of requests that stream")
    parser.add_argument("--provider-delay-ms", type=float, default=20.0, help="fake providers answer after this")
    parser.add_argument("--redis", action="store_true", help="share breaker state through a throw-away redis-server")
    parser.add_argument("--json", type=Path, help="also write the results here")


@dataclass
class Sample:
    t: float
    rss_mb: float
    open_files: int
    breaker: str


@dataclass
class Phase:
    fail_rate: float
    tally: Tally = field(default_factory=Tally)
    statuses: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    opened_s: float = 0.0


def _proc(pid: int) -> tuple[float, int]:
    """(RSS in MB, open files) of a process."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def _one(client: httpx.AsyncClient, url: str, stream: bool, phase: Phase) -> None:
    body = {"model": ROUTED, "messages": MESSAGES, "stream": stream}
    started = time.perf_counter()
    try:
        if stream:
            async with client.stream("POST", url, json=body) as response:
                content = await response.aread()
        else:
            response = await client.post(url, json=body)
            content = response.content
        outcome, detail = classify_http(response.status_code, response.headers, content, stream=stream)
        key = str(response.status_code)
    except httpx.HTTPError as exc:
        outcome, detail, key = "lost", repr(exc), type(exc).__name__
    phase.tally.add(outcome, detail)
    phase.statuses[key] = phase.statuses.get(key, 0) + 1
    if outcome in ("answered", FALLBACK):
        phase.latencies_ms.append((time.perf_counter() - started) * 1000)


async def _load(url: str, admin: str, pid: int, args: argparse.Namespace, phase: Phase) -> None:
    rng = random.Random(1)
    end = time.monotonic() + args.duration
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            while time.monotonic() < end:
                await _one(client, url, rng.random() < args.stream_share, phase)

        async def sampler() -> None:
            start = time.monotonic()
            while time.monotonic() < end:
                rss, files = _proc(pid)
                try:
                    state = (await client.get(admin + "/readyz")).json()["breakers"][FLAKY]
                except (httpx.HTTPError, ValueError, KeyError):
                    state = "?"
                phase.samples.append(Sample(time.monotonic() - start, rss, files, state))
                if state != "closed":
                    phase.opened_s += 1.0
                t = len(phase.samples)
                if t % 5 == 0:
                    s = phase.tally
                    print(
                        f"  {t:>3} s  sent {s.sent:>6}  answered {s.answered:>6} (after fallback {s.after_fallback:>5})"
                        f"  clean error {s.clean_error:>4}  lost {s.lost}  breaker {state:<9}"
                        f"  RSS {rss:6.1f} MB  open files {files}",
                        flush=True,
                    )
                await asyncio.sleep(1.0)

        await asyncio.gather(sampler(), *(worker() for _ in range(args.concurrency)))


def _config(fake_urls: dict[str, str]) -> dict[str, Any]:
    def model(url: str, name: str, price: float) -> dict[str, Any]:
        return {
            "provider": "openai",
            "base_url": url,
            "provider_model": name,
            "api_key_env": "BENCH_FAKE_KEY",
            "price_in_per_mtok": price,
            "price_out_per_mtok": price * 3,
            "read_timeout_s": 10.0,
        }

    return {
        "models": {
            FLAKY: model(fake_urls["flaky"], FLAKY, 10.0),
            "healthy-strong": model(fake_urls["healthy"], "healthy-strong", 10.0),
            "healthy-weak": model(fake_urls["healthy"], "healthy-weak", 0.5),
        },
        "tiers": {"strong": {"models": [FLAKY, "healthy-strong"]}, "weak": {"models": ["healthy-weak"]}},
        "scorer": {"target": "dns:///127.0.0.1:1", "deadline_ms": 50},
        "retry": {"max_retries": 2, "base_delay_s": 0.05, "max_delay_s": 0.2},
        "server": {"grpc_host": "127.0.0.1", "grpc_port": 0, "http_host": "127.0.0.1", "http_port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "auth": {"disabled": True},
    }


def _phase(rate: float, args: argparse.Namespace) -> Phase:
    phase = Phase(rate)
    py = sys.executable
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ferryman-bench-faults-") as tmp_s:
        tmp = Path(tmp_s)
        urls: dict[str, str] = {}
        for name, fail in (("flaky", rate), ("healthy", 0.0)):
            argv = [py, "-m", "harness.fake_provider", "--port-file", str(tmp / f"{name}.port")]
            argv += ["--delay-ms", str(args.provider_delay_ms), "--fail-rate", str(fail), "--seed", "11"]
            fake = spawn(f"fake-{name}", argv, tmp)
            stack.callback(fake.stop)
            urls[name] = f"http://127.0.0.1:{wait_for(name, lambda n=name: read_json(tmp / f'{n}.port'), 60)}/v1"
        env = {"BENCH_FAKE_KEY": "bench"}
        if args.redis:
            redis = RedisServer(tmp)
            stack.callback(redis.stop)
            env["REDIS_URL"] = redis.url
        (tmp / "gateway.yaml").write_text(yaml.safe_dump(_config(urls)))
        gw_argv = [py, "-m", "ferryman", "gateway", "--config", str(tmp / "gateway.yaml")]
        gw_argv += ["--port-file", str(tmp / "gw.json"), "--log-level", "WARNING"]
        gateway: Process = spawn("gateway", gw_argv, tmp, env)
        stack.callback(gateway.stop)
        ports = wait_for("gateway", lambda: read_json(tmp / "gw.json"), 120, gateway.proc)
        url = f"http://127.0.0.1:{ports['http_port']}/v1/chat/completions"
        admin = f"http://127.0.0.1:{ports['admin_port']}"
        print(f"phase: {FLAKY} fails {rate:.0%} of its calls at random, {args.duration:g} s", flush=True)
        asyncio.run(_load(url, admin, gateway.proc.pid, args, phase))
        outcomes = scrape(ports["admin_port"], "ferryman_gateway_breaker_outcomes_total", model=FLAKY) or {}
        phase.outcomes = {k.removeprefix("outcome="): v for k, v in outcomes.items()}
        retries = scrape(ports["admin_port"], "ferryman_gateway_retries_total", model=FLAKY) or {}
        phase.retries = sum(retries.values())
        code = gateway.stop()
        if code != 0:
            print(f"gateway exited with {code}:\n{gateway.tail()}")
    return phase


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def _report(phases: list[Phase], args: argparse.Namespace) -> tuple[str, list[dict[str, Any]]]:
    head = (
        f"{'call fail rate':>14} {'requests':>9} {'req. fail rate':>14} {'breaker open':>12} {'answered':>9}"
        f" {'fallback':>9} {'clean err':>9} {'lost':>5} {'p50/p99 ms':>13} {'RSS MB warm→end':>16}"
        f" {'open files':>11}"
    )
    lines, rows = [head], []
    for p in phases:
        success, failure = p.outcomes.get("success", 0), p.outcomes.get("failure", 0)
        seen = failure / (success + failure) if success + failure else 0.0
        warm = next((s for s in p.samples if s.t >= args.warmup), p.samples[0])
        end = p.samples[-1]
        t = p.tally
        lines.append(
            f"{p.fail_rate:>14.0%} {t.sent:>9} {seen:>14.1%} {p.opened_s:>11.0f}s {t.answered:>9}"
            f" {t.after_fallback:>9} {t.clean_error:>9} {t.lost:>5}"
            f" {_pct(p.latencies_ms, 50):>6.0f}/{_pct(p.latencies_ms, 99):<6.0f}"
            f" {warm.rss_mb:>7.1f}→{end.rss_mb:<7.1f} {warm.open_files:>5}→{end.open_files:<5}"
        )
        rows.append(
            {
                "call_fail_rate": p.fail_rate,
                "requests": t.sent,
                "answered": t.answered,
                "after_fallback": t.after_fallback,
                "clean_error": t.clean_error,
                "lost": t.lost,
                "statuses": p.statuses,
                "breaker_outcomes": p.outcomes,
                "request_fail_rate_seen_by_breaker": seen,
                "retries": p.retries,
                "breaker_open_s": p.opened_s,
                "p50_ms": _pct(p.latencies_ms, 50),
                "p99_ms": _pct(p.latencies_ms, 99),
                "rss_mb_after_warmup": warm.rss_mb,
                "rss_mb_end": end.rss_mb,
                "open_files_after_warmup": warm.open_files,
                "open_files_end": end.open_files,
            }
        )
    lines += [
        "req. fail rate = the flaky model's failed requests / its requests, as its breaker counts them (one",
        "  outcome per request, after 2 retries); the breaker opens at >= 50 % with >= 10 requests in 30 s",
        "breaker open = seconds (of the samples) the flaky model's breaker was open or half-open",
        f"RSS / open files of the gateway process: after the {args.warmup:g} s warm-up → at the end",
    ]
    return "\n".join(lines), rows


def run(args: argparse.Namespace) -> int:
    rates = [float(r) for r in args.fail_rates.split(",") if r.strip()]
    load = os.getloadavg()
    print(
        f"gateway fault load: {os.cpu_count()} CPUs, load average before {load[0]:.2f}, concurrency "
        f"{args.concurrency}, {args.stream_share:.0%} streams, provider delay {args.provider_delay_ms:g} ms",
        flush=True,
    )
    phases = [_phase(rate, args) for rate in rates]
    table, rows = _report(phases, args)
    print(table)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    lost = sum(p.tally.lost for p in phases)
    if lost:
        print(f"LOST {lost} request(s): {[p.tally.lost_examples for p in phases]}")
    return 1 if lost else 0
