"""What a real ``ferryman gateway`` process logs while it serves: not a line per provider call."""

from __future__ import annotations

import sys

import httpx
import yaml

from harness.gateway import CLIENT_KEY, ENV, config_dict
from harness.processes import read_json, spawn, wait_for


def test_served_requests_log_no_line_per_provider_call(fakes, tmp_path):
    """Was: httpx's 'INFO httpx: HTTP Request: POST <provider URL> "HTTP/1.1 200 OK"' for every call."""
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_dict(fakes)))
    port_file = tmp_path / "ports.json"
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(path), "--port-file", str(port_file)]
    gateway = spawn("gateway", argv, tmp_path, ENV | {"TEST_CLIENT_KEYS": CLIENT_KEY})
    try:
        ports = wait_for("gateway", lambda: read_json(port_file), 60, gateway.proc)
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
