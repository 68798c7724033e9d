"""Anthropic's Messages API, translated to and from the chat-completions shape (streaming too).

System turns become the top-level ``system`` field; ``stop`` becomes ``stop_sequences``;
``max_tokens`` (required by Anthropic) defaults to the model's ``default_max_tokens``;
``stop_reason`` maps back to OpenAI's finish reasons.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from gateway.providers.base import (
    StreamEvent,
    TransientProviderError,
    decode_json,
    iter_sse,
    malformed,
    obj,
    opt,
    usage,
)
from gateway.providers.http import HTTPProvider
from gateway.types import ChatRequest, Completion, StreamDelta, StreamEnd, Usage

API_VERSION = "2023-06-01"
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _finish(reason: Any) -> str:
    return _FINISH.get(str(reason), "stop")


def to_anthropic(model: str, request: ChatRequest, default_max_tokens: int, stream: bool) -> dict[str, Any]:
    """The Messages API body for a chat request."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    messages: list[dict[str, str]] = []
    for m in request.messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        if messages and messages[-1]["role"] == role:  # Anthropic requires alternating turns
            messages[-1]["content"] += "\n\n" + m.content
        else:
            messages.append({"role": role, "content": m.content})
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": request.max_tokens or default_max_tokens,
    }
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if stream:
        body["stream"] = True
    return body


def _usage(data: dict[str, Any], where: str) -> Usage | None:
    return usage(data, "usage", where, "input_tokens", "output_tokens")


class AnthropicProvider(HTTPProvider):
    """``POST {base_url}/messages`` with ``x-api-key``."""

    def headers(self, key: str) -> dict[str, str]:
        return ({"x-api-key": key} if key else {}) | {"anthropic-version": API_VERSION}

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        return to_anthropic(self.config.provider_model, request, self.config.default_max_tokens, stream)

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self.post_json("/messages", self._body(request, stream=False))
        blocks = data.get("content")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise malformed("answer.content", "is not a list of content blocks")
        texts = [opt(b, "text", str, "answer.content[]") or "" for b in blocks if b.get("type") == "text"]
        stop = opt(data, "stop_reason", str, "answer")
        return Completion("".join(texts), _finish(stop), _usage(data, "answer") or Usage())

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        prompt_tokens = 0
        usage: Usage | None = None
        finish = "stop"
        async with self.post_stream("/messages", self._body(request, stream=True)) as response:
            async for event, data in iter_sse(response, self.max_response_bytes):
                payload = decode_json(data)
                kind = event or opt(payload, "type", str, "event") or ""
                if kind == "message_start":
                    started = _usage(obj(payload, "message", "message_start"), "message_start.message")
                    prompt_tokens = started.prompt_tokens if started else 0
                elif kind == "content_block_delta":
                    delta = obj(payload, "delta", "content_block_delta")
                    text = opt(delta, "text", str, "content_block_delta.delta")
                    if text:
                        yield StreamDelta(text)
                elif kind == "message_delta":
                    finish = _finish(opt(obj(payload, "delta", "message_delta"), "stop_reason", str, "message_delta"))
                    counted = _usage(payload, "message_delta")
                    if counted is not None:
                        usage = Usage(counted.prompt_tokens or prompt_tokens, counted.completion_tokens)
                elif kind == "message_stop":
                    yield StreamEnd(finish, usage)
                    return
                elif kind == "error":
                    raise TransientProviderError("provider sent an error event mid-stream")
        raise TransientProviderError("provider stream ended without message_stop")
