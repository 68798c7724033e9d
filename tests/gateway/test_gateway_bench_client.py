"""The gateway benchmark's minimal HTTP client (bench.gateway.KeepAliveConnection) against a real fake provider."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.gateway import KeepAliveConnection
from harness.fake_provider import FakeProvider

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


def test_posts_over_one_kept_alive_connection_and_reopens_a_closed_one(fakes: dict[str, FakeProvider]) -> None:
    fake = fakes["weak-openai"]

    async def main() -> list[tuple[int, dict[str, str], bytes]]:
        conn = KeepAliveConnection(fake.base_url + "/chat/completions")
        answers = [await conn.post(BODY) for _ in range(3)]
        assert conn._writer is not None
        conn._writer.close()  # as if the server had closed the idle connection
        answers.append(await conn.post(BODY))
        await conn.close()
        return answers

    answers = asyncio.run(main())
    assert [status for status, _, _ in answers] == [200] * 4
    assert all(json.loads(content)["choices"][0]["message"]["content"] == fake.reply for _, _, content in answers)
    assert answers[0][1]["content-type"] == "application/json"
    assert fake.requests == 4 and len(fake.peers) == 2  # three requests on the first connection, one on the next


def test_needs_an_http_url_with_a_port() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        KeepAliveConnection("https://example.com/v1")
