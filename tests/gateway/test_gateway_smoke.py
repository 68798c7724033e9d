from __future__ import annotations

import httpx
from gw_harness import CLIENT_KEY, GatewayThread, gateway_config


def test_smoke(fakes):
    with GatewayThread(gateway_config(fakes)) as gw:
        r = httpx.post(
            gw.http_url + "/v1/chat/completions",
            json={"model": "weak-openai", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
        print(r.status_code, r.headers, r.text)
        assert r.status_code == 200
