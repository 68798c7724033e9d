"""What every provider adapter shares: the error taxonomy, status handling and SSE parsing.

Only transient errors (429, 5xx, connect errors, timeouts, a broken or malformed answer)
are retried and count against a circuit breaker; any other 4xx is the caller's problem and
is returned as such. Error texts are short and secret-free: a provider key never appears in
them (provider bodies are echoed only for 400-class request errors, with the key scrubbed).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from email.utils import parsedate_to_datetime
from time import time
from typing import Any, Protocol

import httpx

from gateway.config import ModelConfig
from gateway.types import ChatRequest, Completion, StreamDelta, StreamEnd

StreamEvent = StreamDelta | StreamEnd


class ProviderError(Exception):
    """Base class of provider failures; ``str()`` is safe to show to clients."""


class TransientProviderError(ProviderError):
    """Worth retrying and counts against the breaker: 429, 5xx, connect error, timeout, bad body."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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
        """Deltas, then exactly one :class:`StreamEnd`; anything else raises."""
        ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError, IndexError):
        return None


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "[redacted]")
    return text[:300]


async def check_status(response: httpx.Response, secret: str | None) -> None:
    """Raise the right :class:`ProviderError` for a non-2xx response (reads the body if needed)."""
    status = response.status_code
    if status < 300:
        return
    if status == 429 or status >= 500:
        raise TransientProviderError(
            f"provider returned HTTP {status}", retry_after_s=parse_retry_after(response.headers.get("retry-after"))
        )
    if status in (401, 403):
        raise ProviderClientError(f"provider rejected the gateway's credentials (HTTP {status})", status)
    body = (await response.aread()).decode("utf-8", "replace")
    detail = ""
    try:
        err = json.loads(body).get("error")
        detail = err.get("message", "") if isinstance(err, dict) else ""
    except (ValueError, AttributeError):
        pass
    suffix = f": {_scrub(detail, secret)}" if detail else ""
    raise ProviderClientError(f"provider rejected the request (HTTP {status}){suffix}", status)


def decode_json(text: str | bytes) -> dict[str, Any]:
    """Parse a provider JSON object; malformed bodies are a transient provider fault."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TransientProviderError("provider sent malformed JSON") from exc
    if not isinstance(data, dict):
        raise TransientProviderError("provider sent JSON that is not an object")
    return data


async def iter_sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as ``(event, data)`` pairs (event is "" when unnamed)."""
    event, data = "", list[str]()
    async for line in response.aiter_lines():
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


def transport_error(exc: httpx.HTTPError) -> TransientProviderError:
    """A secret-free transient error for an httpx transport failure."""
    if isinstance(exc, httpx.TimeoutException):
        return TransientProviderError("provider timed out")
    if isinstance(exc, httpx.ConnectError):
        return TransientProviderError("cannot connect to provider")
    return TransientProviderError(f"provider connection failed ({type(exc).__name__})")
