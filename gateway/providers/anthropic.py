"""Anthropic's Messages API, translated to and from the chat-completions shape (streaming too).

The translation (system turns, tool calls and results, tool choice, structured output as a
forced tool, stop reasons) is :mod:`gateway.formats.anthropic`, which the gateway's own
``/v1/messages`` endpoint shares. ``max_tokens`` (required by Anthropic) defaults to the
model's ``default_max_tokens``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from gateway.formats import anthropic as fmt
from gateway.providers.base import (
    StreamEvent,
    TransientProviderError,
    check_tool_calls,
    decode_json,
    iter_sse,
    malformed,
    opt,
)
from gateway.providers.http import HTTPProvider
from gateway.types import ChatRequest, Completion, StreamEnd, ToolCallDelta

API_VERSION = "2023-06-01"


class AnthropicProvider(HTTPProvider):
    """``POST {base_url}/messages`` with ``x-api-key``."""

    def headers(self, key: str) -> dict[str, str]:
        return ({"x-api-key": key} if key else {}) | {"anthropic-version": API_VERSION}

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        return fmt.request_json(self.config.provider_model, request, self.config.default_max_tokens, stream)

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self.post_json("/messages", self._body(request, stream=False))
        completion, _ = fmt.read_answer(data, request, malformed)
        check_tool_calls(completion.tool_calls, request)
        return completion

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        reader = fmt.StreamReader(fmt.json_tool(request), malformed)
        names = {t.name for t in request.tools}
        async with self.post_stream("/messages", self._body(request, stream=True)) as response:
            async for event, data in iter_sse(response, self.max_response_bytes):
                payload = decode_json(data)
                kind = event or opt(payload, "type", str, "event") or ""
                if kind == "error":
                    raise TransientProviderError("provider sent an error event mid-stream")
                for out in reader.read(kind, payload):
                    if isinstance(out, ToolCallDelta) and out.name and out.name not in names:
                        raise malformed("content_block_start.content_block", f"calls unknown tool {out.name!r}")
                    yield out
                    if isinstance(out, StreamEnd):
                        return
        raise TransientProviderError("provider stream ended without message_stop")
