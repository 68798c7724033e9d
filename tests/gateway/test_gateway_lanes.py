"""The provider connection pool (gateway.providers.lanes) against a real fake provider on loopback."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import pytest

from gateway.providers.lanes import LaneTransport
from harness.fake_provider import DISCONNECT, FakeProvider, slow

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _client(max_connections: int, pool_timeout_s: float = 5.0) -> tuple[httpx.AsyncClient, LaneTransport]:
    transport = LaneTransport(max_connections)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, pool=pool_timeout_s)), transport


def test_concurrent_requests_share_at_most_max_connections(fakes: dict[str, FakeProvider]) -> None:
    fake = fakes["strong-openai"]
    fake.reset(default=slow(0.05))

    async def main() -> list[int]:
        client, transport = _client(4)
        async with client:
            url = fake.base_url + "/chat/completions"
            first = await asyncio.gather(*(client.post(url, json=BODY) for _ in range(20)))
            second = await asyncio.gather(*(client.post(url, json=BODY) for _ in range(8)))
            assert transport.lanes == 4
            return [r.status_code for r in first + second]

    codes = asyncio.run(main())
    assert codes == [200] * 28 and fake.requests == 28
    assert len(fake.peers) == 4  # 28 requests over 4 kept-alive connections


def test_lanes_share_one_tls_context(fakes: dict[str, FakeProvider], monkeypatch: pytest.MonkeyPatch) -> None:
    """A new lane must not build a TLS context of its own (loading the CA bundle: ~16 ms of CPU each)."""
    fake = fakes["strong-openai"]
    fake.reset(default=slow(0.05))
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)

    async def main() -> int:
        client, transport = _client(6)
        async with client:
            url = fake.base_url + "/chat/completions"
            codes = [r.status_code for r in await asyncio.gather(*(client.post(url, json=BODY) for _ in range(6)))]
            assert codes == [200] * 6
            return transport.lanes

    assert asyncio.run(main()) == 6
    assert len(made) == 1


def test_waiting_for_a_lane_is_bounded_by_the_pool_timeout(fakes: dict[str, FakeProvider]) -> None:
    fake = fakes["strong-openai"]
    fake.reset(default=slow(0.5))

    async def main() -> None:
        client, _ = _client(1, pool_timeout_s=0.1)
        async with client:
            url = fake.base_url + "/chat/completions"
            busy = asyncio.create_task(client.post(url, json=BODY))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await client.post(url, json=BODY)
            assert (await busy).status_code == 200

    asyncio.run(main())
    assert fake.requests == 1


def test_lanes_come_back_after_cancellation_errors_and_abandoned_streams(fakes: dict[str, FakeProvider]) -> None:
    fake = fakes["strong-openai"]

    async def main() -> None:
        client, transport = _client(1, pool_timeout_s=1.0)
        async with client:
            url = fake.base_url + "/chat/completions"
            fake.program(slow(1.0))
            with pytest.raises(TimeoutError):  # cancelled while waiting for the answer
                await asyncio.wait_for(client.post(url, json=BODY), 0.1)
            async with client.stream("POST", url, json=BODY | {"stream": True}) as response:
                async for _ in response.aiter_lines():
                    break  # abandoned after the first line
            fake.program(DISCONNECT)
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream("POST", url, json=BODY | {"stream": True}) as response:
                    await response.aread()
            fake.program(slow(0.2))
            with pytest.raises(httpx.ReadTimeout):
                await client.post(url, json=BODY, timeout=httpx.Timeout(0.05, pool=1.0))
            # the single lane is free again each time: this would otherwise wait 1 s and raise PoolTimeout
            assert (await client.post(url, json=BODY)).status_code == 200
            assert transport.lanes == 1

    asyncio.run(main())


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LaneTransport(0)
