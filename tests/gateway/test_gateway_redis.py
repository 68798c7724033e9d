"""Breaker state shared through a real Redis: two gateway processes, and Redis dying mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import redis
import yaml
from gw_harness import CLIENT_KEY, ENV, GatewayThread, config_dict, free_port, gateway_config

from gateway.testing.fake_provider import status

REPO = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "hello"}]
ROUTED = "router-random-0.0"  # scorer down → strong tier: strong-openai first


def _start(config_path: Path, port_file: Path, redis_url: str) -> subprocess.Popen[bytes]:
    env = os.environ | ENV | {"REDIS_URL": redis_url, "TEST_CLIENT_KEYS": CLIENT_KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "ferryman", "gateway", "--config", str(config_path), "--port-file", str(port_file)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_ports(proc: subprocess.Popen[bytes], port_file: Path) -> dict[str, int]:
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise TimeoutError("gateway did not start")
        time.sleep(0.05)
    return dict(json.loads(port_file.read_text()))


def _client(http_port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def test_breaker_opened_by_one_process_is_open_in_the_other(fakes, redis_server, tmp_path):
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config_dict(fakes)))
    procs = [_start(config_path, tmp_path / f"ports-{i}.json", redis_server.url) for i in range(2)]
    try:
        a, b = (_wait_ports(p, tmp_path / f"ports-{i}.json")["http_port"] for i, p in enumerate(procs))
        fakes["strong-openai"].reset(default=status(500))
        # gateway A: 1 try + 2 retries = 3 consecutive failures = fail_max → open (in Redis)
        answer = _client(a).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert answer.ferryman["attempts"][0]["outcome"] == "transient_error"
        assert fakes["strong-openai"].requests == 3
        assert redis.Redis.from_url(redis_server.url).get("ferryman:strong-openai:pybreaker:state") == b"open"
        # gateway B never called strong-openai, yet skips it at once
        breakers = httpx.get(f"http://127.0.0.1:{b}/readyz").json()["breakers"]
        assert breakers["strong-openai"] == "open" and breakers["strong-anthropic"] == "closed"
        answer = _client(b).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert answer.ferryman["attempts"][0]["outcome"] == "breaker_open"
        assert answer.choices[0].message.content == "Answer from strong-anthropic."
        assert fakes["strong-openai"].requests == 3
        metrics = httpx.get(f"http://127.0.0.1:{b}/metrics").text
        assert 'ferryman_gateway_breaker_state{model="strong-openai"} 2.0' in metrics
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(20) == 0  # clean shutdown on SIGTERM


def test_redis_killed_mid_run_gateway_keeps_serving(fakes, redis_server):
    with GatewayThread(gateway_config(fakes), redis_url=redis_server.url) as gw:
        c = _client(gw.running.http_port)
        answered = 0
        for i in range(20):
            if i == 10:
                redis_server.stop()
            c.chat.completions.create(model=ROUTED, messages=MESSAGES)
            answered += 1
        assert answered == 20
        assert gw.gateway.resilience.breakers.redis.health.failures > 0
        # with Redis gone the breaker still protects: local state opens it and it is skipped
        fakes["strong-openai"].reset(default=status(500))
        first = c.chat.completions.create(model=ROUTED, messages=MESSAGES)
        second = c.chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert first.ferryman["attempts"][0]["outcome"] == "transient_error"
        assert second.ferryman["attempts"][0]["outcome"] == "breaker_open"
        assert fakes["strong-openai"].requests == 3
        print(f"\nRedis killed after request 10 of 20: answered {answered}/20; breaker still opened locally")


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0"])
def test_redis_unreachable_from_the_start(fakes, url):
    with GatewayThread(gateway_config(fakes), redis_url=url.format(port=free_port())) as gw:
        reply = _client(gw.running.http_port).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert reply.choices[0].message.content == "Answer from strong-openai."


def test_invalid_redis_url_is_a_clear_config_error(fakes):
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="REDIS_URL is not a valid"):
        GatewayThread(gateway_config(fakes), redis_url="http://user:secret@host").__enter__()
