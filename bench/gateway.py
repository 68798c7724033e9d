"""Gateway overhead: the same requests sent to a fake provider directly and through the gateway.

Processes on loopback: a fake OpenAI-compatible provider (answers at once), a scorer (real
routers: ``--routers-dir``, or small test routers built on the fly), and a gateway with auth
off. A client in this process sends identical ``POST /v1/chat/completions`` requests:

- ``direct``: to the fake provider (``--provider-delay-ms``: 0 answers at once, so the
  machine is CPU-bound at high concurrency; a few hundred ms resembles a real LLM call);
- ``passthrough``: through the gateway with a plain model name (auth, parsing, breaker,
  provider call, accounting, headers; no scorer);
- ``routed``: through the gateway with ``router-<router>-0.5`` (adds the Score RPC; the
  scorer's round trip is read from ``x-ferryman-scorer-ms`` and reported separately).

Paths are interleaved in rounds so that drift in machine load hits all of them alike.
Added latency = gateway percentile − direct percentile; for ``routed`` it is computed on
per-request latency minus that request's scorer time (the overhead excluding scorer
inference). Targets: p50 added ≤ 2 ms, p99 added ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from bench.cluster_local import _read_json, _spawn, _wait, free_port

ROOT = Path(__file__).resolve().parents[1]
BODY_MESSAGES = [{"role": "user", "content": "Write a haiku about ferries crossing a river at dawn."}]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per path and concurrency")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests per path first")
    parser.add_argument("--concurrency", default="1,32", help="comma-separated client concurrency levels")
    parser.add_argument("--rounds", type=int, default=5, help="interleaving rounds (paths alternate per round)")
    parser.add_argument("--router", default="mf", help="router for the routed path ('' skips it)")
    parser.add_argument("--routers-dir", type=Path, help="router artifacts (default: build small test routers)")
    parser.add_argument("--encoder-dir", type=Path, default=ROOT / "build" / "encoder")
    parser.add_argument(
        "--provider-delay-ms",
        type=float,
        default=0.0,
        help="the fake provider answers after this delay (0: at once, the CPU-bound worst case)",
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


async def _run_path(
    client: httpx.AsyncClient, url: str, model: str, n: int, concurrency: int
) -> tuple[list[float], list[float]]:
    """``n`` requests with ``concurrency`` workers; (latencies ms, scorer ms per request)."""
    latencies: list[float] = []
    scorer: list[float] = []
    body = json.dumps({"model": model, "messages": BODY_MESSAGES}).encode()
    headers = {"content-type": "application/json"}
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            r = await client.post(url, content=body, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:200]}")
            latencies.append(elapsed)
            scorer.append(float(r.headers.get("x-ferryman-scorer-ms", "0")))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, scorer


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    paths: dict[str, tuple[str, str]], args: argparse.Namespace, levels: list[int], gateway_pid: int
) -> dict[int, dict[str, dict[str, list[float]]]]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    results: dict[int, dict[str, dict[str, list[float]]]] = {}
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for concurrency in levels:
            per = {name: {"latency": list[float](), "scorer": list[float]()} for name in paths}
            for url, model in paths.values():
                await _run_path(client, url, model, args.warmup, concurrency)
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                for name, (url, model) in paths.items():
                    cpu0 = _cpu_s(gateway_pid)
                    lat, sc = await _run_path(client, url, model, per_round, concurrency)
                    per[name]["gateway_cpu_ms"] = [
                        sum(per[name].get("gateway_cpu_ms", [0.0])) + (_cpu_s(gateway_pid) - cpu0) * 1000
                    ]
                    per[name]["latency"] += lat
                    per[name]["scorer"] += sc
            results[concurrency] = per
    return results


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _report(results: dict[int, dict[str, dict[str, list[float]]]]) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    lines = [
        f"{'conc':>4}  {'path':<12} {'n':>5}  {'p50 ms':>8} {'p99 ms':>8}  {'added p50':>9} {'added p99':>9}"
        f"  {'scorer p50':>10} {'scorer p99':>10}  {'gw CPU/req':>10}"
    ]
    for concurrency, per in results.items():
        direct = per["direct"]["latency"]
        d50, d99 = _pct(direct, 50), _pct(direct, 99)
        for name, data in per.items():
            lat = data["latency"]
            own = [lat_ - s for lat_, s in zip(lat, data["scorer"], strict=True)]  # excludes scorer time
            row = {
                "concurrency": concurrency,
                "path": name,
                "n": len(lat),
                "p50_ms": _pct(lat, 50),
                "p99_ms": _pct(lat, 99),
                "added_p50_ms": None if name == "direct" else _pct(own, 50) - d50,
                "added_p99_ms": None if name == "direct" else _pct(own, 99) - d99,
                "scorer_p50_ms": _pct(data["scorer"], 50) if name == "routed" else None,
                "scorer_p99_ms": _pct(data["scorer"], 99) if name == "routed" else None,
                "gateway_cpu_ms_per_request": None if name == "direct" else data["gateway_cpu_ms"][0] / len(lat),
            }
            rows.append(row)

            def f(v: float | None, sign: bool = False) -> str:
                return "-" if v is None else (f"{v:+.3f}" if sign else f"{v:.3f}")

            lines.append(
                f"{concurrency:>4}  {name:<12} {row['n']:>5}  {f(row['p50_ms']):>8} {f(row['p99_ms']):>8}"
                f"  {f(row['added_p50_ms'], True):>9} {f(row['added_p99_ms'], True):>9}"
                f"  {f(row['scorer_p50_ms']):>10} {f(row['scorer_p99_ms']):>10}"
                f"  {f(row['gateway_cpu_ms_per_request']):>10}"
            )
    lines.append("added = gateway percentile (minus each request's scorer round trip) − direct percentile")
    lines.append("gw CPU/req = the gateway process's user+system CPU time per measured request (ms)")
    lines.append("targets: added p50 ≤ 2 ms, added p99 ≤ 10 ms (scorer inference excluded)")
    return "\n".join(lines), rows


def run(args: argparse.Namespace) -> int:
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ferryman-bench-gw-") as tmp_s:
        tmp = Path(tmp_s)
        py = sys.executable
        fake_argv = [py, "-m", "gateway.testing.fake_provider", "--port-file", str(tmp / "fake.port")]
        fake = _spawn("fake-provider", [*fake_argv, "--delay-ms", str(args.provider_delay_ms)], tmp)
        stack.callback(fake.stop)
        fake_port = int(_wait("fake provider", lambda: _read_json(tmp / "fake.port"), 120, fake.proc))
        fake_url = f"http://127.0.0.1:{fake_port}/v1"

        scorer_port = free_port()
        if args.router:
            routers = args.routers_dir
            if routers is None:
                from scorer.testing import build_test_routers

                routers = build_test_routers(tmp / "routers", encoder_dir=args.encoder_dir)
            scorer_argv = [py, "-m", "ferryman", "scorer", "--routers-dir", str(routers), "--port", str(scorer_port)]
            scorer_argv += ["--host", "127.0.0.1", "--metrics-port", "0", "--encoder-dir", str(args.encoder_dir)]
            scorer = _spawn("scorer", scorer_argv, tmp)
            stack.callback(scorer.stop)

        model = {"provider": "openai", "base_url": fake_url, "api_key_env": "BENCH_FAKE_KEY"}
        model |= {"price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0}
        config = {
            "models": {"bench-strong": model, "bench-weak": model},
            "tiers": {"strong": {"models": ["bench-strong"]}, "weak": {"models": ["bench-weak"]}},
            "scorer": {"target": f"dns:///127.0.0.1:{scorer_port}", "deadline_ms": 1000},
            "server": {"grpc_host": "127.0.0.1", "grpc_port": 0, "http_host": "127.0.0.1", "http_port": 0},
            "auth": {"disabled": True},
        }
        (tmp / "gateway.yaml").write_text(yaml.safe_dump(config))
        gw_argv = [py, "-m", "ferryman", "gateway", "--config", str(tmp / "gateway.yaml")]
        gw_argv += ["--port-file", str(tmp / "gw.json"), "--log-level", "WARNING"]
        gateway = _spawn("gateway", gw_argv, tmp, {"BENCH_FAKE_KEY": "bench"})
        stack.callback(gateway.stop)
        gw_port = _wait("gateway", lambda: _read_json(tmp / "gw.json"), 120, gateway.proc)["http_port"]
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
            f"fake provider delay {args.provider_delay_ms:g} ms",
            flush=True,
        )
        results = asyncio.run(_measure(paths, args, levels, gateway.proc.pid))
        table, rows = _report(results)
        print(table)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    return 0
