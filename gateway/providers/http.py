"""The HTTP plumbing both adapters share: the pooled client, auth headers, and error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from gateway.config import ModelConfig
from gateway.providers.base import MissingKeyError, check_status, decode_json, read_capped, transport_error
from gateway.providers.lanes import LaneTransport
from gateway.providers.lean import LeanTransport


class HTTPProvider:
    """Base of the adapters: one model, its key, and the shared ``httpx.AsyncClient``."""

    def __init__(
        self, config: ModelConfig, client: httpx.AsyncClient, api_key: str | None, max_response_bytes: int
    ) -> None:
        self.config = config
        self._client = client
        self._key = api_key
        # a model configured with neither api_key_env nor api_key_file is keyless (a local server): no auth header
        self._keyless = config.api_key.env is None and config.api_key.file is None
        self.max_response_bytes = max_response_bytes
        self._timeout = _timeout(config)
        # On the lean transport (the learning worker's pool) a request goes to the transport directly: httpx's
        # client layer (URL merging, header and cookie handling, auth and redirect plumbing) took about a quarter
        # of the worker's sampled CPU; 0.19-0.21 -> 0.13-0.14 ms of CPU per call on loopback (docs/lab-log.md,
        # 2026-12-05 11:00). The request sent is the same.
        self._lean: LeanTransport | None = client.lean if isinstance(client, LeanClient) else None
        self._urls: dict[str, httpx.URL] = {}

    @property
    def has_key(self) -> bool:
        """Whether a provider key was found, or none is needed (the value itself is never exposed)."""
        return self._key is not None or self._keyless

    def _require_key(self) -> str:
        if self._key is None and self._keyless:
            return ""
        if self._key is None:
            raise MissingKeyError(f"no API key for model {self.config.name!r}: set {self.config.api_key.describe()}")
        return self._key

    def headers(self, key: str) -> dict[str, str]:
        """Provider-specific auth headers (``key`` is "" for a keyless model: send none)."""
        raise NotImplementedError

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST and return the decoded JSON object (at most ``max_response_bytes``), every failure a
        ProviderError."""
        async with self.post_stream(path, body) as response:
            return decode_json(await read_capped(response, self.max_response_bytes))

    @asynccontextmanager
    async def post_stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """POST with a streamed response; transport errors while reading become ProviderErrors."""
        key = self._require_key()
        try:
            if self._lean is not None:
                async with self._lean_stream(path, body, key) as response:
                    await check_status(response, key)
                    yield response
            else:
                async with self._client.stream(
                    "POST", self.config.base_url + path, json=body, headers=self.headers(key), timeout=self._timeout
                ) as response:
                    await check_status(response, key)
                    yield response
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc

    @asynccontextmanager
    async def _lean_stream(self, path: str, body: dict[str, Any], key: str) -> AsyncIterator[httpx.Response]:
        """The request ``AsyncClient.stream`` would send (the client's default headers, then the provider's; the
        JSON body as httpx encodes it; the timeouts), handed to the lean transport; the response closed after.
        Not kept: cookies a provider sets (an API answers without them)."""
        assert self._lean is not None
        url = self._urls.get(path)
        if url is None:
            url = self._urls.setdefault(path, httpx.URL(self.config.base_url + path))
        headers = httpx.Headers(self._client.headers)
        headers.update(self.headers(key))
        request = httpx.Request(
            "POST", url, json=body, headers=headers, extensions={"timeout": self._timeout.as_dict()}
        )
        response = await self._lean.handle_async_request(request)
        response.request = request
        try:
            yield response
        finally:
            await response.aclose()


ClientFactory = Callable[[ModelConfig], httpx.AsyncClient]


def _timeout(config: ModelConfig) -> httpx.Timeout:
    return httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s, pool=config.pool_timeout_s)


def new_client(config: ModelConfig) -> httpx.AsyncClient:
    """A pooled client sized for one provider endpoint (see :mod:`gateway.providers.lanes` for the pool)."""
    return httpx.AsyncClient(transport=LaneTransport(config.max_connections), timeout=_timeout(config))


class LeanClient(httpx.AsyncClient):
    """A client on :class:`~gateway.providers.lean.LeanTransport` that keeps the transport it was built on
    (``lean``), which :class:`HTTPProvider` sends to directly; to anything else, an ``httpx.AsyncClient``."""

    def __init__(self, config: ModelConfig) -> None:
        self.lean = LeanTransport(config.max_connections)
        super().__init__(transport=self.lean, timeout=_timeout(config))


def new_lean_client(config: ModelConfig) -> httpx.AsyncClient:
    """A client on :class:`~gateway.providers.lean.LeanTransport` (the learning worker's: less CPU per call)."""
    return LeanClient(config)
