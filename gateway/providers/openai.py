"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, Together, ...), whole and SSE."""

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


def _body(config_model: str, request: ChatRequest, stream: bool) -> dict[str, Any]:
    messages = []
    for m in request.messages:
        msg = {"role": m.role, "content": m.content}
        if m.name:
            msg["name"] = m.name
        messages.append(msg)
    body: dict[str, Any] = {"model": config_model, "messages": messages}
    for key in ("temperature", "max_tokens", "top_p"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.user:
        body["user"] = request.user
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _usage(data: dict[str, Any], where: str) -> Usage | None:
    return usage(data, "usage", where, "prompt_tokens", "completion_tokens")


def _choices(data: dict[str, Any], where: str) -> list[dict[str, Any]]:
    choices = data.get("choices")
    if choices is None:
        return []
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise malformed(f"{where}.choices", "is not a list of objects")
    return choices


class OpenAIProvider(HTTPProvider):
    """``POST {base_url}/chat/completions`` with a bearer key."""

    def headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"} if key else {}

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self.post_json("/chat/completions", _body(self.config.provider_model, request, stream=False))
        choices = _choices(data, "answer")
        if not choices:
            raise malformed("answer.choices", "is empty")
        message = obj(choices[0], "message", "answer.choices[0]")
        content = opt(message, "content", str, "answer.choices[0].message") or ""
        finish = opt(choices[0], "finish_reason", str, "answer.choices[0]") or "stop"
        return Completion(content, finish, _usage(data, "answer") or Usage())

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        body = _body(self.config.provider_model, request, stream=True)
        finish: str | None = None
        usage: Usage | None = None
        async with self.post_stream("/chat/completions", body) as response:
            async for _, data in iter_sse(response, self.max_response_bytes):
                if data.strip() == "[DONE]":
                    yield StreamEnd(finish or "stop", usage)
                    return
                chunk = decode_json(data)
                if "error" in chunk:
                    raise TransientProviderError("provider sent an error event mid-stream")
                usage = _usage(chunk, "chunk") or usage
                for choice in _choices(chunk, "chunk"):
                    text = opt(obj(choice, "delta", "chunk.choices[]"), "content", str, "chunk.choices[].delta")
                    if text:
                        yield StreamDelta(text)
                    finish = opt(choice, "finish_reason", str, "chunk.choices[]") or finish
        raise TransientProviderError("provider stream ended without [DONE]")
