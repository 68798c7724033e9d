"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, Together, ...), whole and SSE."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from gateway.providers.base import StreamEvent, TransientProviderError, decode_json, iter_sse
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


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


class OpenAIProvider(HTTPProvider):
    """``POST {base_url}/chat/completions`` with a bearer key."""

    def headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"} if key else {}

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self.post_json("/chat/completions", _body(self.config.provider_model, request, stream=False))
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise TransientProviderError("provider answer lacks choices[0].message") from exc
        return Completion(str(content), str(finish), _usage(data.get("usage")) or Usage())

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        body = _body(self.config.provider_model, request, stream=True)
        finish: str | None = None
        usage: Usage | None = None
        async with self.post_stream("/chat/completions", body) as response:
            async for _, data in iter_sse(response):
                if data.strip() == "[DONE]":
                    yield StreamEnd(finish or "stop", usage)
                    return
                chunk = decode_json(data)
                if "error" in chunk:
                    raise TransientProviderError("provider sent an error event mid-stream")
                usage = _usage(chunk.get("usage")) or usage
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield StreamDelta(str(text))
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
        raise TransientProviderError("provider stream ended without [DONE]")
