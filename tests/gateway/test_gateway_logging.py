"""What a real ``ferryman gateway`` process logs while it serves: not a line per provider call."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionMessageParam
from suite import ROUTED

from harness.fake_provider import FakeProvider, status
from harness.gateway import CLIENT_KEY, ENV, config_dict
from harness.processes import Process, read_json, spawn, wait_for


def _gateway_process(fakes: dict[str, FakeProvider], tmp_path: Path) -> tuple[Process, dict[str, int]]:
    """A real ``ferryman gateway`` process over the fake providers, and its ports once it serves."""
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_dict(fakes)))
    port_file = tmp_path / "ports.json"
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(path), "--port-file", str(port_file)]
    gateway = spawn("gateway", argv, tmp_path, ENV | {"TEST_CLIENT_KEYS": CLIENT_KEY})
    try:
        return gateway, wait_for("gateway", lambda: read_json(port_file), 60, gateway.proc)
    except BaseException:
        gateway.stop()
        raise


def test_served_requests_log_no_line_per_provider_call(fakes, tmp_path):
    """Was: httpx's 'INFO httpx: HTTP Request: POST <provider URL> "HTTP/1.1 200 OK"' for every call."""
    gateway, ports = _gateway_process(fakes, tmp_path)
    try:
        url = f"http://127.0.0.1:{ports['http_port']}/v1/chat/completions"
        headers = {"authorization": f"Bearer {CLIENT_KEY}"}
        for model in ("weak-openai", "strong-anthropic"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            assert httpx.post(url, json=body, headers=headers, timeout=30).status_code == 200
    finally:
        assert gateway.stop() == 0
    log = gateway.tail(200)
    assert "gateway serving" in log and sum(f.requests for f in fakes.values()) >= 2
    assert "HTTP Request" not in log, log


def test_a_fallback_and_a_request_no_model_could_serve_each_log_a_line(fakes, tmp_path):
    """Was: neither logged anything (only metrics and the answer's headers said so): a provider failing a share
    of its calls, or every model down, left no line in the gateway's log until a breaker opened, if one did."""
    gateway, ports = _gateway_process(fakes, tmp_path)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{ports['http_port']}/v1", api_key=CLIENT_KEY, max_retries=0)
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
        fakes["strong-openai"].reset(default=status(503, message="overloaded"))
        served = client.chat.completions.with_raw_response.create(model=ROUTED, messages=messages)
        assert served.headers["x-ferryman-model"] == "strong-anthropic" and served.headers["x-ferryman-degraded"]
        for fake in fakes.values():
            fake.reset(default=status(503, message="overloaded"))
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model=ROUTED, messages=messages)
        assert failed.value.status_code == 503
    finally:
        assert gateway.stop() == 0
    lines = gateway.tail(200).splitlines()
    fallback = [line for line in lines if " INFO gateway.resilience: " in line]
    assert len(fallback) == 1, lines
    assert fallback[0].endswith(
        "served by strong-anthropic (tier strong) after strong-openai: transient_error, 2 retries "
        "(provider returned HTTP 503)"
    ), fallback
    failure = [line for line in lines if " WARNING gateway.resilience: " in line]
    assert len(failure) == 1 and "no model could serve a request (strong-openai: transient_error" in failure[0], lines
    for model in ("strong-anthropic", "weak-openai", "weak-anthropic"):
        assert f"{model}: transient_error" in failure[0]
    assert "hi" not in " ".join(fallback + failure).split(), "a prompt was logged"
