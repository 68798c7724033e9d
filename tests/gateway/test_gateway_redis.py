"""Breaker state shared through a real Redis: two gateway processes, and Redis dying mid-run."""

from __future__ import annotations

import sys
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


def _start(index: int, config_path: Path, workdir: Path, redis_url: str) -> tuple[Process, int]:
    """A ``ferryman gateway`` process and its HTTP port."""
    port_file = workdir / f"ports-{index}.json"
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(config_path), "--port-file", str(port_file)]
    env = ENV | {"REDIS_URL": redis_url, "TEST_CLIENT_KEYS": CLIENT_KEY}
    process = spawn(f"gateway-{index}", argv, workdir, env)
    ports = wait_for(process.name, lambda: read_json(port_file), 60, process.proc)
    return process, int(ports["http_port"])


def _client(http_port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def test_breaker_opened_by_one_process_is_open_in_the_other(fakes, redis_server, tmp_path):
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config_dict(fakes)))
    procs: list[Process] = []
    try:
        ports = []
        for i in range(2):
            process, port = _start(i, config_path, tmp_path, redis_server.url)
            procs.append(process)
            ports.append(port)
        a, b = ports
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
        codes = [p.stop() for p in procs]
    assert codes == [0, 0]  # clean shutdown on SIGTERM


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
