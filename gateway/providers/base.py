"""What every provider adapter shares: the error taxonomy, status handling, and checked parsing.

Every answer is checked at this edge before the core sees it: a body or an SSE event that is
not the documented shape (a field of the wrong type, a count that is not a non-negative
integer, more bytes than ``limits.max_response_bytes``, a tool call naming a tool the request
did not offer or whose arguments are not a JSON object, more choices or tool calls than asked)
raises :class:`MalformedAnswerError`, a provider fault like a 5xx: retried, then the next model.
Only provider faults (429, 5xx, connect errors, provider timeouts, malformed or oversized answers) are retried and count
against a circuit breaker; a full local connection pool is :class:`LocalSaturationError` (the
next model, no breaker); any other 4xx is the caller's problem and is returned as such. Error
texts are short and secret-free: provider bodies are echoed only for 400-class request errors,
through :func:`sanitise` (keys, bearer tokens, URLs and addresses removed).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from email.utils import parsedate_to_datetime
from time import time
from typing import Any, Protocol, TypeVar

import httpx

from gateway.config import ModelConfig
from gateway.formats.openai import parse_arguments
from gateway.types import ChatRequest, Completion, StreamDelta, StreamEnd, ToolCall, ToolCallDelta, Usage

StreamEvent = StreamDelta | ToolCallDelta | StreamEnd
T = TypeVar("T")


class ProviderError(Exception):
    """Base class of provider failures; ``str()`` is safe to show to clients."""


class TransientProviderError(ProviderError):
    """A provider fault, worth retrying, that counts against the breaker: 429, 5xx, connect error,
    timeout, a malformed or oversized answer."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderTimeoutError(TransientProviderError):
    """The provider sent nothing for the model's ``read_timeout_s``: a hung model. Retried on the same
    model only when ``retry.retry_read_timeouts`` is set; by default the next model is tried at once."""


class MalformedAnswerError(TransientProviderError):
    """The provider answered, but not in the documented shape (or too much of it)."""


class LocalSaturationError(ProviderError):
    """No connection of the gateway's own pool to this endpoint was free in time: not the provider's
    fault (never counts against its breaker); the next model is tried at once."""


class ProviderClientError(ProviderError):
    """A non-retryable 4xx: the request itself is wrong (never trips a breaker)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class MissingKeyError(ProviderError):
    """The model's provider key is not configured; names where it should come from."""


class Provider(Protocol):
    """One provider model behind one API."""

    config: ModelConfig

    @property
    def has_key(self) -> bool:
        """Whether a provider key is configured."""
        ...

    async def complete(self, request: ChatRequest) -> Completion:
        """The whole answer."""
        ...

    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Text and tool-call deltas, then exactly one :class:`StreamEnd`; anything else raises."""
        ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# ---------------------------------------------------------------- relayed error text

_SANITISE = [
    (re.compile(r"https?://\S+", re.I), "[url]"),
    (re.compile(r"\b(?:bearer|basic)\s+\S+", re.I), "[credential]"),
    # API keys as providers print them: sk-..., sk-ant-..., key-..., or masked (sk-abc***xyz)
    (re.compile(r"\b(?:sk|pk|rk|key|api[-_]?key)[-_][\w\-*.]{6,}", re.I), "[key]"),
    (re.compile(r"\S*\*{3,}\S*"), "[key]"),
    (re.compile(r"\b[A-Za-z0-9+/_\-]{32,}={0,2}"), "[token]"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "[address]"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def sanitise(text: str, secret: str | None) -> str:
    """A provider's error text fit to relay to a client: no key, token, URL, address or control
    character, at most 300 characters."""
    if secret:
        text = text.replace(secret, "[key]")
    text = _CONTROL.sub(" ", text)
    for pattern, replacement in _SANITISE:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text[:297] + "..." if len(text) > 300 else text


async def check_status(response: httpx.Response, secret: str | None) -> None:
    """Raise the right :class:`ProviderError` for a non-2xx response (reads at most 64 KiB of it)."""
    status = response.status_code
    if status < 300:
        return
    if status == 429 or status >= 500:
        raise TransientProviderError(
            f"provider returned HTTP {status}", retry_after_s=parse_retry_after(response.headers.get("retry-after"))
        )
    if status in (401, 403):
        raise ProviderClientError(f"provider rejected the gateway's credentials (HTTP {status})", status)
    if not 400 <= status < 500:  # 3xx (a redirect the client does not follow) or 1xx
        raise MalformedAnswerError(f"provider returned HTTP {status}")
    body = await read_capped(response, 65_536, truncate=True)
    detail = ""
    try:
        err = json.loads(body).get("error")
        detail = err.get("message", "") if isinstance(err, dict) else ""
    except (ValueError, AttributeError, RecursionError):
        pass
    suffix = f": {sanitise(detail, secret)}" if isinstance(detail, str) and detail else ""
    raise ProviderClientError(f"provider rejected the request (HTTP {status}){suffix}", status)


async def read_capped(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes:
    """The response body, at most ``limit`` bytes: more is a :class:`MalformedAnswerError` (or cut)."""
    length = response.headers.get("content-length", "")
    if not truncate and length.isdigit() and int(length) > limit:
        raise MalformedAnswerError(f"provider answer larger than {limit} bytes")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            if truncate:
                return bytes(body[:limit])
            raise MalformedAnswerError(f"provider answer larger than {limit} bytes")
    return bytes(body)


# ---------------------------------------------------------------- checked parsing


def decode_json(text: str | bytes) -> dict[str, Any]:
    """Parse a provider JSON object; malformed bodies are a provider fault."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedAnswerError("provider sent malformed JSON") from exc
    if not isinstance(data, dict):
        raise MalformedAnswerError("provider sent JSON that is not an object")
    return data


def malformed(where: str, what: str) -> MalformedAnswerError:
    return MalformedAnswerError(f"provider answer malformed: {where} {what}")


def obj(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``data[key]`` as an object; absent or null is ``{}``, anything else is malformed."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed(f"{where}.{key}", "is not an object")
    return value


def opt(data: dict[str, Any], key: str, kind: type[T], where: str) -> T | None:
    """``data[key]`` when it is a ``kind``; None when absent or null; anything else is malformed."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise malformed(f"{where}.{key}", f"is not a {kind.__name__}")
    return value


def count(data: dict[str, Any], key: str, where: str) -> int:
    """A token count: a non-negative integer (absent or null is 0)."""
    value = opt(data, key, int, where)
    if value is not None and value < 0:
        raise malformed(f"{where}.{key}", "is negative")
    return value or 0


def check_tool_calls(calls: tuple[ToolCall, ...], request: ChatRequest) -> None:
    """A whole answer's tool calls: each names a tool the request offered, with a JSON object as
    arguments (a model calling an unknown tool, or with broken arguments, is a malformed answer)."""
    names = {t.name for t in request.tools}
    for call in calls:
        if call.name not in names:
            raise malformed("answer tool call", f"names unknown tool {call.name!r}")
        if parse_arguments(call.arguments) is None:
            raise malformed(f"answer tool call {call.name!r}", "has arguments that are not a JSON object")


def usage(data: dict[str, Any], key: str, where: str, prompt_key: str, completion_key: str) -> Usage | None:
    """``data[key]`` as token counts, None when the provider sent none."""
    if data.get(key) is None:
        return None
    counts = obj(data, key, where)
    return Usage(count(counts, prompt_key, f"{where}.{key}"), count(counts, completion_key, f"{where}.{key}"))


async def iter_sse(response: httpx.Response, max_bytes: int) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as ``(event, data)`` pairs (event is "" when unnamed).

    At most ``max_bytes`` of stream in all (which also bounds one line): a provider that sends
    more, or bytes that are not UTF-8, is malformed.
    """
    event, data = "", list[str]()
    pending = b""
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise MalformedAnswerError(f"provider stream larger than {max_bytes} bytes")
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            try:
                line = raw.rstrip(b"\r").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedAnswerError("provider stream is not UTF-8") from exc
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = "", list[str]()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif line.startswith("event:"):
                event = line[6:].strip()
    if data:
        yield event, "\n".join(data)


def transport_error(exc: httpx.HTTPError) -> ProviderError:
    """A secret-free provider error for an httpx transport failure."""
    if isinstance(exc, httpx.PoolTimeout):
        return LocalSaturationError("no free connection to the provider in time (the gateway's own pool)")
    if isinstance(exc, httpx.ReadTimeout):
        return ProviderTimeoutError("provider timed out")
    if isinstance(exc, httpx.TimeoutException):
        return TransientProviderError("provider timed out")
    if isinstance(exc, httpx.ConnectError):
        return TransientProviderError("cannot connect to provider")
    return TransientProviderError(f"provider connection failed ({type(exc).__name__})")
