"""How long restarting the learning worker holds up the gateway's event loop.

The gateway's learning worker (``gateway.learning.worker``) is a *spawn* child process; when it dies
the gateway starts another from its serving loop. This benchmark starts one worker (the gateway's
own :class:`~gateway.learning.worker.LearningWorker`, its config over unreachable providers and a
SQLite store in a temporary folder), then ``--restarts`` times kills it and restarts it, on an event
loop where a ticker asks to sleep 0.1 ms at a time and records its longest gap (the selector's timeouts
are whole milliseconds, so it wakes about every 1 ms: the idle floor is ~1.1 ms). Printed per restart
and as median / max over them, side by side:

- ``Process.start``: the wall time of the spawn call itself (pickling the config, forking and
  exec'ing the interpreter, handing it its preparation data). Before the call ran in a thread, the
  serving loop was blocked for all of it.
- ``loop stall, restart``: the ticker's longest gap while ``LearningWorker.restart()`` ran.
- ``loop stall, idle``: its longest gap over an idle window as long as that restart, just after it
  (the noise floor on this machine now).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from multiprocessing.process import BaseProcess
from types import SimpleNamespace
from typing import Any

from gateway.config import parse_config
from gateway.learning.worker import LearningWorker
from harness.gateway import config_dict

MODELS = ("strong-openai", "strong-anthropic", "weak-openai", "weak-anthropic", "judge-local")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--restarts", type=int, default=10, help="worker restarts measured")


class _Ticker:
    """Sleeps 0.1 ms (in effect 1 ms: epoll's resolution) at a time on the loop; the longest gap since ``reset``."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._last = time.perf_counter()

    def reset(self) -> None:
        self.longest, self._last = 0.0, time.perf_counter()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.0001)
            now = time.perf_counter()
            self.longest, self._last = max(self.longest, now - self._last), now


async def _measure(restarts: int, store: str) -> list[tuple[float, float, float]]:
    fakes: dict[str, Any] = {name: SimpleNamespace(base_url="http://127.0.0.1:9/v1") for name in MODELS}
    learning = {
        "policies": ["fixed-half"],
        "store": {"url": store},
        "shadow": {"sample_rate": 0.2, "daily_budget_usd": 1.0},
        "judge": {"model": "judge-local"},
    }
    config = parse_config(config_dict(fakes, learning=learning))
    spawns: list[float] = []
    start = BaseProcess.start

    def timed(process: BaseProcess) -> None:
        began = time.perf_counter()
        start(process)
        spawns.append(time.perf_counter() - began)

    BaseProcess.start = timed  # type: ignore[method-assign]
    worker = LearningWorker(config, {}, lambda report: None)
    ticker = _Ticker()
    ticking = asyncio.create_task(ticker.run())
    rows = []
    try:
        await worker.start()
        for i in range(restarts):
            await asyncio.sleep(0.5)
            if worker.pid is None:  # never 0: os.kill(0, ...) signals this whole process group
                raise RuntimeError("the learning worker has no process to kill")
            os.kill(worker.pid, signal.SIGKILL)
            if not await worker.wait_exited(10):
                raise RuntimeError(f"the learning worker {worker.pid} did not exit within 10 s of SIGKILL")
            ticker.reset()
            began = time.perf_counter()
            await worker.restart()
            took = time.perf_counter() - began
            await asyncio.sleep(0.002)  # the ticker's gap that spans the restart's end is counted
            stall = ticker.longest
            ticker.reset()  # an idle window as long as the restart took
            await asyncio.sleep(took + 0.002)
            idle = ticker.longest
            rows.append((spawns[-1], stall, idle))
            print(
                f"restart {i + 1}/{restarts}: Process.start {spawns[-1] * 1e3:6.2f} ms | loop stall, restart "
                f"{stall * 1e3:6.2f} ms | loop stall, idle {idle * 1e3:6.2f} ms",
                flush=True,
            )
        await worker.stop(1.0, 1.0)
    finally:
        BaseProcess.start = start  # type: ignore[method-assign]
        ticking.cancel()
    return rows


def run(args: argparse.Namespace) -> int:
    if args.restarts < 1:
        raise SystemExit("--restarts must be at least 1")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(_measure(args.restarts, f"sqlite://{tmp}/learning.db"))
    names = ("Process.start", "loop stall, restart", "loop stall, idle")
    for name, column in zip(names, zip(*rows, strict=True), strict=True):
        print(f"{name:>20}: median {statistics.median(column) * 1e3:6.2f} ms, max {max(column) * 1e3:6.2f} ms")
    return 0
