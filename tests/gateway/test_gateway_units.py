"""Pure functions of the gateway: backoff, Retry-After, calibration interpolation, translation, SSE."""

from __future__ import annotations

import random
from email.utils import formatdate
from time import time

from gateway.config import RetryConfig
from gateway.formats.anthropic import request_json
from gateway.providers.base import parse_retry_after
from gateway.resilience import backoff_delay
from gateway.types import ChatRequest, Message, Tool, ToolCall


def test_backoff_grows_is_capped_jittered_and_honours_retry_after():
    cfg = RetryConfig(base_delay_s=0.1, max_delay_s=0.5)
    rng = random.Random(1)
    for retry, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.5), (8, 0.5)]:
        delays = {backoff_delay(retry, cfg, None, rng) for _ in range(50)}
        assert all(cap / 2 <= d <= cap for d in delays) and len(delays) > 1
    assert backoff_delay(0, cfg, 3.0, rng) == 3.0


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 8 <= parse_retry_after(formatdate(time() + 10, usegmt=True)) <= 10


def test_anthropic_translation():
    request = ChatRequest(
        model="m",
        messages=(
            Message("system", "Be brief."),
            Message("user", "a"),
            Message("user", "b"),
            Message("assistant", "c", tool_calls=(ToolCall("t1", "look", '{"q": 1}'),)),
            Message("tool", "d", tool_call_id="t1"),
            Message("user", "e"),
        ),
        stop=("END",),
        temperature=0.2,
        tools=(Tool("look"),),
    )
    body = request_json("claude-x", request, default_max_tokens=256, stream=True)
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": "a\n\nb"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "c"},
                {"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "d"}, {"type": "text", "text": "e"}],
        },
    ]
    assert body["tools"] == [{"name": "look", "input_schema": {"type": "object", "properties": {}}}]
    assert body["max_tokens"] == 256 and body["stop_sequences"] == ["END"] and body["stream"] is True
    assert body["temperature"] == 0.2 and "top_p" not in body
