"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp, Together, ...), whole and SSE.

Tools, tool choice, response format, log-probabilities and ``n`` are passed as they are
(:mod:`gateway.formats.openai`); tool calls and log-probabilities in the answer are read back,
streamed tool calls as :class:`~gateway.types.ToolCallDelta` pieces.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from gateway.formats import openai as fmt
from gateway.providers.base import (
    StreamEvent,
    TransientProviderError,
    check_tool_calls,
    decode_json,
    iter_sse,
    malformed,
    obj,
    opt,
    usage,
)
from gateway.providers.http import HTTPProvider
from gateway.types import ChatRequest, Choice, Completion, StreamDelta, StreamEnd, Usage


def _body(config_model: str, request: ChatRequest, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": config_model, "messages": [fmt.message_json(m) for m in request.messages]}
    for key in ("temperature", "max_tokens", "top_p", "parallel_tool_calls", "top_logprobs"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.user:
        body["user"] = request.user
    if request.tools:
        body["tools"] = fmt.tools_json(request.tools)
    if request.tool_choice is not None:
        body["tool_choice"] = fmt.tool_choice_json(request.tool_choice)
    if request.response_format is not None:
        body["response_format"] = fmt.response_format_json(request.response_format)
    if request.logprobs:
        body["logprobs"] = True
    if request.n != 1:
        body["n"] = request.n
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


def _index(choice: dict[str, Any], where: str, n: int) -> int:
    """A choice's index, in [0, n) (absent: 0)."""
    index = opt(choice, "index", int, where) or 0
    if not 0 <= index < n:
        raise malformed(f"{where}.index", f"is outside [0, {n})")
    return index


def _choice(choice: dict[str, Any], request: ChatRequest) -> Choice:
    where = "answer.choices[]"
    message = obj(choice, "message", where)
    calls = fmt.read_tool_calls(message.get("tool_calls"), f"{where}.message", malformed)
    check_tool_calls(calls, request)
    return Choice(
        opt(message, "content", str, f"{where}.message") or "",
        opt(choice, "finish_reason", str, where) or "stop",
        calls,
        fmt.read_logprobs(choice.get("logprobs"), f"{where}.logprobs", malformed) if request.logprobs else None,
    )


class OpenAIProvider(HTTPProvider):
    """``POST {base_url}/chat/completions`` with a bearer key (none for a keyless local server)."""

    def headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"} if key else {}

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self.post_json("/chat/completions", _body(self.config.provider_model, request, stream=False))
        choices = _choices(data, "answer")
        if len(choices) != request.n:
            raise malformed("answer.choices", f"has {len(choices)} choices, {request.n} were asked")
        ordered = sorted(choices, key=lambda c: _index(c, "answer.choices[]", request.n))
        return Completion.of([_choice(c, request) for c in ordered], _usage(data, "answer") or Usage())

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        body = _body(self.config.provider_model, request, stream=True)
        finish: dict[int, str] = {}
        usage: Usage | None = None
        names = {t.name for t in request.tools}
        async with self.post_stream("/chat/completions", body) as response:
            async for _, data in iter_sse(response, self.max_response_bytes):
                if data.strip() == "[DONE]":
                    reasons = [finish.get(i, "stop") for i in range(request.n)]
                    yield StreamEnd(reasons[0], usage, tuple(reasons[1:]))
                    return
                chunk = decode_json(data)
                if "error" in chunk:
                    raise TransientProviderError("provider sent an error event mid-stream")
                usage = _usage(chunk, "chunk") or usage
                for choice in _choices(chunk, "chunk"):
                    index = _index(choice, "chunk.choices[]", request.n)
                    delta = obj(choice, "delta", "chunk.choices[]")
                    text = opt(delta, "content", str, "chunk.choices[].delta")
                    logprobs = None
                    if request.logprobs:
                        logprobs = fmt.read_logprobs(choice.get("logprobs"), "chunk.choices[].logprobs", malformed)
                    if text or logprobs:
                        yield StreamDelta(text or "", index, logprobs)
                    for call in fmt.read_tool_call_deltas(
                        delta.get("tool_calls"), "chunk.choices[].delta", malformed, index
                    ):
                        if call.name and call.name not in names:
                            raise malformed("chunk.choices[].delta.tool_calls[]", f"calls unknown tool {call.name!r}")
                        yield call
                    reason = opt(choice, "finish_reason", str, "chunk.choices[]")
                    if reason:
                        finish[index] = reason
        raise TransientProviderError("provider stream ended without [DONE]")
