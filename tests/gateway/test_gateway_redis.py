"""Breaker state shared through a real Redis: two gateway processes, and Redis dying mid-run."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import redis
import yaml

from harness.fake_provider import status
from harness.gateway import CLIENT_KEY, ENV, GatewayThread, config_dict, gateway_config
from harness.processes import Process, free_port, read_json, spawn, wait_for

MESSAGES = [{"role": "user", "content": "hello"}]
ROUTED = "router-random-0.0"  # scorer down → strong tier: strong-openai first


def _start(index: int, config_path: Path, workdir: Path, redis_url: str) -> tuple[Process, dict[str, int]]:
    """A ``ferryman gateway`` process and its ports."""
    port_file = workdir / f"ports-{index}.json"
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(config_path), "--port-file", str(port_file)]
    env = ENV | {"REDIS_URL": redis_url, "TEST_CLIENT_KEYS": CLIENT_KEY}
    process = spawn(f"gateway-{index}", argv, workdir, env)
    return process, wait_for(process.name, lambda: read_json(port_file), 60, process.proc)


def _client(http_port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def _eventually(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_breaker_opened_by_one_process_is_open_in_the_other(fakes, redis_server, tmp_path):
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config_dict(fakes, breaker={"min_requests": 1})))
    procs: list[Process] = []
    try:
        ports = []
        for i in range(2):
            process, port = _start(i, config_path, tmp_path, redis_server.url)
            procs.append(process)
            ports.append(port)
        a, b = ports
        fakes["strong-openai"].reset(default=status(500))
        # gateway A: the request fails on strong-openai (3 tries: one outcome) and is served by the next
        # model: 1 of 1 failed, min_requests=1 → open, published to Redis in the background
        answer = _client(a["http_port"]).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert answer.ferryman["attempts"][0]["outcome"] == "transient_error"
        assert fakes["strong-openai"].requests == 3
        key = "ferryman:breaker:strong-openai"
        client = redis.Redis.from_url(redis_server.url)
        _eventually(lambda: client.get(key) is not None, "the open breaker is in Redis")
        assert 29_000 < client.pttl(key) <= 30_000  # it expires with the open period (reset_timeout_s)
        # gateway B never called strong-openai, yet skips it once it has read Redis (every redis_sync_s)
        ready = f"http://127.0.0.1:{b['admin_port']}/readyz"
        _eventually(lambda: httpx.get(ready).json()["breakers"]["strong-openai"] == "open", "B adopts it")
        assert httpx.get(ready).json()["breakers"]["strong-anthropic"] == "closed"
        answer = _client(b["http_port"]).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert answer.ferryman["attempts"][0]["outcome"] == "breaker_open"
        assert answer.choices[0].message.content == "Answer from strong-anthropic."
        assert fakes["strong-openai"].requests == 3
        metrics = httpx.get(f"http://127.0.0.1:{b['admin_port']}/metrics").text
        assert 'ferryman_gateway_breaker_state{model="strong-openai"} 2.0' in metrics
    finally:
        codes = [p.stop() for p in procs]
    assert codes == [0, 0]  # clean shutdown on SIGTERM


def test_redis_killed_mid_run_gateway_keeps_serving(fakes, redis_server):
    config = gateway_config(fakes, breaker={"min_requests": 1})
    with GatewayThread(config, redis_url=redis_server.url) as gw:
        sync = gw.gateway.breaker_sync
        _eventually(lambda: sync.healthy, "the gateway reaches Redis")
        c = _client(gw.running.http_port)
        answered = 0
        for i in range(20):
            if i == 10:
                redis_server.stop()
            c.chat.completions.create(model="weak-openai", messages=MESSAGES)
            answered += 1
        assert answered == 20
        _eventually(lambda: sync.failures > 0, "the sync task notices Redis is gone")
        # with Redis gone the breaker still protects: local state opens it and it is skipped
        fakes["strong-openai"].reset(default=status(500))
        first = c.chat.completions.create(model=ROUTED, messages=MESSAGES)
        second = c.chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert first.ferryman["attempts"][0]["outcome"] == "transient_error"
        assert second.ferryman["attempts"][0]["outcome"] == "breaker_open"
        assert fakes["strong-openai"].requests == 3
        print(f"\nRedis killed after request 10 of 20: answered {answered}/20; breaker still opened locally")


def test_a_hung_redis_never_delays_a_request(fakes, redis_server):
    """Breaker state is read and written in memory; Redis is only the background task's (SIGSTOP: hung)."""
    with GatewayThread(gateway_config(fakes), redis_url=redis_server.url) as gw:
        _eventually(lambda: gw.gateway.breaker_sync.healthy, "the gateway reaches Redis")
        c = _client(gw.running.http_port)

        def timed() -> float:
            started = time.perf_counter()
            c.chat.completions.create(model=ROUTED, messages=MESSAGES)
            return time.perf_counter() - started

        before = sorted(timed() for _ in range(10))
        os.kill(redis_server.process.proc.pid, signal.SIGSTOP)
        try:
            during = sorted(timed() for _ in range(10))
        finally:
            os.kill(redis_server.process.proc.pid, signal.SIGCONT)
        print(f"\nmedian latency: Redis up {before[5] * 1000:.1f} ms, Redis hung {during[5] * 1000:.1f} ms")
        assert during[-1] < 0.25, during


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0"])
def test_redis_unreachable_from_the_start(fakes, url):
    with GatewayThread(gateway_config(fakes), redis_url=url.format(port=free_port())) as gw:
        reply = _client(gw.running.http_port).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert reply.choices[0].message.content == "Answer from strong-openai."


def test_invalid_redis_url_is_a_clear_config_error(fakes):
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="REDIS_URL is not a valid"):
        GatewayThread(gateway_config(fakes), redis_url="http://user:secret@host").__enter__()
