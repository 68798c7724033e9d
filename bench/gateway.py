"""Gateway overhead: the same requests sent to a fake provider directly and through the gateway.

Processes on loopback: a fake OpenAI-compatible provider (answers at once), a scorer (real
routers: ``--routers-dir``, or small test routers built on the fly), and a gateway with auth
off. A client in this process (:class:`KeepAliveConnection`, one keep-alive connection per
worker, so that the measuring client costs next to nothing) sends identical
``POST /v1/chat/completions`` requests:

- ``direct``: to the fake provider (``--provider-delay-ms``: 0 answers at once, so the
  machine is CPU-bound at high concurrency; tens of ms or more resemble a real LLM call);
- ``passthrough``: through the gateway with a plain model name (auth, parsing, breaker,
  provider call, accounting, headers; no scorer);
- ``routed``: through the gateway with ``router-<router>-0.5`` (adds the Score RPC). Each
  answer reports the scorer's round trip as the gateway timed it (``x-ferryman-scorer-ms``)
  and, within it, the scorer's own time (``x-ferryman-scorer-server-ms``: micro-batch
  queueing plus inference, measured by the scorer). Routed latency is judged twice: minus
  the round trip, and minus only the server time (then the gRPC client and transport count as
  gateway overhead: the stricter figure).

Paths are interleaved in rounds so that drift in machine load hits all of them alike.
``--think-ms`` makes every client worker pause after each answer, on all paths alike: the
processes then start each request from idle, as the routed path's gateway and provider do
after the scorer wait (on the development VM, work started from idle took about twice as
long as back-to-back work). ``--stagger-ms`` spreads the workers' first requests: with a
fixed provider delay, workers that start together stay in lockstep and the gateway gets
bursts of ``--concurrency`` simultaneous requests, which one process serves one after another.
Added latency = path percentile − direct percentile, the routed latencies taken per request
after the subtraction. Targets: p50 added ≤ 2 ms, p99 added ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np
import yaml

from ferryman import paths
from harness.processes import Process, free_port, read_json, spawn, wait_for

T = TypeVar("T")
BODY_MESSAGES = [{"role": "user", "content": "Write a haiku about ferries crossing a river at dawn."}]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per path and concurrency")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests per path first")
    parser.add_argument("--concurrency", default="1,32", help="comma-separated client concurrency levels")
    parser.add_argument("--rounds", type=int, default=5, help="interleaving rounds (paths alternate per round)")
    parser.add_argument("--router", default="mf", help="router for the routed path ('' skips it)")
    parser.add_argument("--routers-dir", type=Path, help="router artifacts (default: build small test routers)")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir())
    parser.add_argument(
        "--provider-delay-ms",
        type=float,
        default=0.0,
        help="the fake provider answers after this delay (0: at once, the CPU-bound worst case)",
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="each client worker pauses this long after an answer, on every path alike: the processes then"
        " start each request from idle, as the routed path does after waiting for the scorer",
    )
    parser.add_argument(
        "--stagger-ms",
        type=float,
        default=0.0,
        help="spread the workers' first requests over this long (0: all at once). With a fixed provider delay"
        " workers that start together stay in lockstep, so requests reach the gateway in bursts of"
        " --concurrency; staggering by about the provider delay models a steady stream instead",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")


async def _wait_scored(url: str, model: str, timeout: float = 120) -> None:
    """Wait until the gateway's routed answers are scored (the scorer loads routers at start)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            r = await client.post(url, json={"model": model, "messages": BODY_MESSAGES})
            if r.status_code == 200 and r.headers.get("x-ferryman-decision-source") == "scored":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"routed requests are not scored: {r.status_code} {r.headers}")
            await asyncio.sleep(0.2)


class KeepAliveConnection:
    """One keep-alive HTTP/1.1 connection: the benchmark's client.

    Deliberately minimal (request bytes out, status line, headers and a ``content-length`` body
    in), so that the measuring client costs tens of µs per request and adds no queueing of its
    own. httpx, measured on the development machine at concurrency 32, spent 2.7-3.4 ms of
    client CPU per request in its connection pool (httpcore polls every pooled socket on each
    request: encode/httpcore#924) and had a 1 s tail; that client, not the servers, dominated the
    "direct" p50/p99 at concurrency 32. One connection per worker, as a real client pool would
    have at that concurrency.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"need an http://host:port/path URL, got {url!r}")
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path or "/"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """POST a JSON body; (status, headers with lower-case names, body).

        A kept-alive connection the server has closed meanwhile (uvicorn closes idle ones after
        5 s) is reopened, like any pooling client does; a fresh one that fails is an error.
        """
        if self._reader is not None and self._reader.at_eof():
            await self.close()
        reused = self._reader is not None
        try:
            return await self._exchange(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            if not reused:
                raise
        return await self._exchange(body)

    async def _exchange(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        head = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise RuntimeError(f"{self.path}: answer without content-length: {headers}")
        content = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, content

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


async def _run_path(
    connections: list[KeepAliveConnection], model: str, n: int, think_s: float = 0.0, stagger_s: float = 0.0
) -> tuple[list[float], list[float], list[float]]:
    """``n`` requests, one worker per connection, each pausing ``think_s`` after an answer, worker
    ``i`` of ``k`` starting ``i * stagger_s / k`` late; (latencies, scorer round trips, scorer server
    times) in ms."""
    latencies: list[float] = []
    scorer: list[float] = []
    server: list[float] = []
    body = json.dumps({"model": model, "messages": BODY_MESSAGES}).encode()
    remaining = n

    async def worker(conn: KeepAliveConnection, start_s: float) -> None:
        nonlocal remaining
        await asyncio.sleep(start_s)
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            status, headers, content = await conn.post(body)
            elapsed = (time.perf_counter() - t0) * 1000
            if status != 200:
                raise RuntimeError(f"{conn.path} answered {status}: {content[:200]!r}")
            latencies.append(elapsed)
            scorer.append(float(headers.get("x-ferryman-scorer-ms", "0")))
            server.append(float(headers.get("x-ferryman-scorer-server-ms", "0")))
            if think_s:
                await asyncio.sleep(think_s)

    k = len(connections)
    await asyncio.gather(*(worker(c, i * stagger_s / k) for i, c in enumerate(connections)))
    return latencies, scorer, server


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def _cpu_note(pids: list[int], run: Callable[[], T]) -> T:
    """Run ``run()``; print how busy the machine was and how much of it was other processes."""
    ours0, busy0, wall0 = sum(_cpu_s(p) for p in pids), _machine_busy_s(), time.monotonic()
    result = run()
    ours = sum(_cpu_s(p) for p in pids) - ours0
    busy, wall = _machine_busy_s() - busy0, time.monotonic() - wall0
    cores = os.cpu_count() or 1
    print(
        f"machine during the run: {busy:.1f} CPU-s busy of {wall * cores:.1f} ({busy / (wall * cores):.0%} of"
        f" {cores} cores); this benchmark's processes {ours:.1f} CPU-s, other processes {busy - ours:.1f} CPU-s"
    )
    return result


@dataclass
class PathSamples:
    """What one path measured at one concurrency."""

    latency: list[float] = field(default_factory=list)
    scorer_rtt: list[float] = field(default_factory=list)
    scorer_server: list[float] = field(default_factory=list)
    gateway_cpu_s: float = 0.0


async def _measure(
    paths: dict[str, tuple[str, str]], args: argparse.Namespace, levels: list[int], gateway_pid: int
) -> dict[int, dict[str, PathSamples]]:
    results: dict[int, dict[str, PathSamples]] = {}
    for concurrency in levels:
        per = {name: PathSamples() for name in paths}
        conns = {name: [KeepAliveConnection(url) for _ in range(concurrency)] for name, (url, _) in paths.items()}
        try:
            for name, (_, model) in paths.items():
                await _run_path(conns[name], model, args.warmup, args.think_ms / 1000, args.stagger_ms / 1000)
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                for name, (_, model) in paths.items():
                    cpu0 = _cpu_s(gateway_pid)
                    lat, rtt, server = await _run_path(
                        conns[name], model, per_round, args.think_ms / 1000, args.stagger_ms / 1000
                    )
                    samples = per[name]
                    samples.gateway_cpu_s += _cpu_s(gateway_pid) - cpu0
                    samples.latency += lat
                    samples.scorer_rtt += rtt
                    samples.scorer_server += server
        finally:
            for conn in (c for cs in conns.values() for c in cs):
                await conn.close()
        results[concurrency] = per
    return results


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _variants(name: str, data: PathSamples) -> list[tuple[str, list[float]]]:
    """The latencies a path is judged by: routed ones once per way of excluding the scorer."""
    if not any(data.scorer_rtt):
        return [(name, data.latency)]
    minus = np.subtract  # per request: that request's latency minus that request's scorer time
    return [
        (f"{name} -scorer RTT", list(minus(data.latency, data.scorer_rtt))),
        (f"{name} -scorer server", list(minus(data.latency, data.scorer_server))),
        (f"{name} (all incl.)", data.latency),
    ]


def _report(results: dict[int, dict[str, PathSamples]]) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    lines = [
        f"{'conc':>4}  {'path':<25} {'n':>5}  {'p50 ms':>8} {'p99 ms':>8}  {'added p50':>9} {'added p99':>9}"
        f"  {'gw CPU/req':>10}"
    ]

    def f(v: float | None, sign: bool = False) -> str:
        return "-" if v is None else (f"{v:+.3f}" if sign else f"{v:.3f}")

    for concurrency, per in results.items():
        direct = per["direct"].latency
        d50, d99 = _pct(direct, 50), _pct(direct, 99)
        for name, data in per.items():
            cpu = None if name == "direct" else data.gateway_cpu_s * 1000 / len(data.latency)
            for label, lat in _variants(name, data):
                p50, p99 = _pct(lat, 50), _pct(lat, 99)
                a50 = None if name == "direct" else p50 - d50
                a99 = None if name == "direct" else p99 - d99
                rows.append(
                    {
                        "concurrency": concurrency,
                        "path": label,
                        "n": len(lat),
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "added_p50_ms": a50,
                        "added_p99_ms": a99,
                        "gateway_cpu_ms_per_request": cpu,
                    }
                )
                lines.append(
                    f"{concurrency:>4}  {label:<25} {len(lat):>5}  {f(p50):>8} {f(p99):>8}"
                    f"  {f(a50, True):>9} {f(a99, True):>9}  {f(cpu):>10}"
                )
            if any(data.scorer_rtt):
                rtt, server = data.scorer_rtt, data.scorer_server
                lines.append(
                    f"{'':>4}  {'':<25} scorer RTT p50/p99 {_pct(rtt, 50):.3f}/{_pct(rtt, 99):.3f} ms,"
                    f" scorer server p50/p99 {_pct(server, 50):.3f}/{_pct(server, 99):.3f} ms"
                )
                rows.append(
                    {
                        "concurrency": concurrency,
                        "path": f"{name} scorer",
                        "scorer_rtt_p50_ms": _pct(rtt, 50),
                        "scorer_rtt_p99_ms": _pct(rtt, 99),
                        "scorer_server_p50_ms": _pct(server, 50),
                        "scorer_server_p99_ms": _pct(server, 99),
                    }
                )
    lines += [
        "added = path percentile - direct percentile; routed latencies per request minus that request's",
        "  scorer RTT (the Score call as the gateway timed it: client, network, server) or minus the",
        "  scorer server time (reported by the scorer: its queueing + inference; the gRPC client and",
        "  transport then count as gateway overhead, the stricter figure)",
        "gw CPU/req = the gateway process's user+system CPU time per measured request (ms)",
        "targets: added p50 <= 2 ms, added p99 <= 10 ms (scorer inference excluded)",
    ]
    return "\n".join(lines), rows


def start_fake_provider(stack: ExitStack, tmp: Path, delay_ms: float) -> tuple[Process, int]:
    """A fake OpenAI-compatible provider in its own process (stopped with ``stack``); its port."""
    argv = [sys.executable, "-m", "harness.fake_provider", "--port-file", str(tmp / "fake.port")]
    fake = spawn("fake-provider", [*argv, "--delay-ms", str(delay_ms)], tmp)
    stack.callback(fake.stop)
    return fake, int(wait_for("fake provider", lambda: read_json(tmp / "fake.port"), 120, fake.proc))


def start_gateway(
    stack: ExitStack, tmp: Path, fake_port: int, scorer_port: int, deadline_ms: float, log_level: str = "WARNING"
) -> tuple[Process, dict[str, int]]:
    """``ferryman gateway`` over the fake provider (auth off; both tiers on it); its ports (grpc, http, admin)."""
    model: dict[str, Any] = {"provider": "openai", "base_url": f"http://127.0.0.1:{fake_port}/v1"}
    model |= {"api_key_env": "BENCH_FAKE_KEY", "price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0}
    config = {
        "models": {"bench-strong": model, "bench-weak": model},
        "tiers": {"strong": {"models": ["bench-strong"]}, "weak": {"models": ["bench-weak"]}},
        "scorer": {"target": f"dns:///127.0.0.1:{scorer_port}", "deadline_ms": deadline_ms},
        "server": {"grpc_host": "127.0.0.1", "grpc_port": 0, "http_host": "127.0.0.1", "http_port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "auth": {"disabled": True},
    }
    (tmp / "gateway.yaml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(tmp / "gateway.yaml")]
    argv += ["--port-file", str(tmp / "gw.json"), "--log-level", log_level]
    gateway = spawn("gateway", argv, tmp, {"BENCH_FAKE_KEY": "bench"})
    stack.callback(gateway.stop)
    return gateway, wait_for("gateway", lambda: read_json(tmp / "gw.json"), 120, gateway.proc)


def run(args: argparse.Namespace) -> int:
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ferryman-bench-gw-") as tmp_s:
        tmp = Path(tmp_s)
        py = sys.executable
        fake, fake_port = start_fake_provider(stack, tmp, args.provider_delay_ms)
        fake_url = f"http://127.0.0.1:{fake_port}/v1"

        scorer_port = free_port()
        if args.router:
            routers = args.routers_dir
            if routers is None:
                from harness.scorer import build_test_routers

                routers = build_test_routers(tmp / "routers", encoder_dir=args.encoder_dir)
            scorer_argv = [py, "-m", "ferryman", "scorer", "--routers-dir", str(routers), "--port", str(scorer_port)]
            scorer_argv += ["--host", "127.0.0.1", "--metrics-port", "0", "--encoder-dir", str(args.encoder_dir)]
            scorer = spawn("scorer", scorer_argv, tmp)
            stack.callback(scorer.stop)
        gateway, gw_ports = start_gateway(stack, tmp, fake_port, scorer_port, 1000)
        gw_port = gw_ports["http_port"]
        gw_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"

        paths = {
            "direct": (fake_url + "/chat/completions", "bench-strong"),
            "passthrough": (gw_url, "bench-strong"),
        }
        if args.router:
            routed_model = f"router-{args.router}-0.5"
            asyncio.run(_wait_scored(gw_url, routed_model))
            paths["routed"] = (gw_url, routed_model)
        load = os.getloadavg()
        print(
            f"gateway overhead benchmark: {os.cpu_count()} CPUs, load average before {load[0]:.2f}, "
            f"fake provider delay {args.provider_delay_ms:g} ms, client think time {args.think_ms:g} ms,"
            f" start stagger {args.stagger_ms:g} ms",
            flush=True,
        )
        pids = [os.getpid(), fake.proc.pid, gateway.proc.pid] + ([scorer.proc.pid] if args.router else [])
        results = _cpu_note(pids, lambda: asyncio.run(_measure(paths, args, levels, gateway.proc.pid)))
        table, rows = _report(results)
        print(table)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    return 0
