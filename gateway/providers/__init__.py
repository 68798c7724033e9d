"""Provider adapters: OpenAI-compatible chat completions and Anthropic's Messages API.

``ProviderPool`` builds one adapter per configured model and one shared, pooled
``httpx.AsyncClient`` per provider endpoint (kind + base URL).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from gateway.config import ModelConfig, resolve_secret
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import (
    LocalSaturationError,
    MalformedAnswerError,
    MissingKeyError,
    Provider,
    ProviderClientError,
    ProviderError,
    ProviderTimeoutError,
    StreamEvent,
    TransientProviderError,
)
from gateway.providers.http import new_client, new_lean_client
from gateway.providers.openai import OpenAIProvider

__all__ = [
    "LocalSaturationError",
    "MalformedAnswerError",
    "MissingKeyError",
    "Provider",
    "ProviderClientError",
    "ProviderError",
    "ProviderPool",
    "ProviderTimeoutError",
    "StreamEvent",
    "TransientProviderError",
]


class ProviderPool:
    """Adapters for every configured model, sharing one HTTP client per endpoint."""

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        environ: Mapping[str, str] | None = None,
        max_response_bytes: int = 8_388_608,
        *,
        lean: bool = False,
    ) -> None:
        """``lean``: HTTP on :mod:`gateway.providers.lean` (the learning worker) instead of the lanes."""
        make = new_lean_client if lean else new_client
        self._clients: dict[tuple[str, str], httpx.AsyncClient] = {}
        self.providers: dict[str, Provider] = {}
        for name, cfg in models.items():
            endpoint = (cfg.provider, cfg.base_url)
            client = self._clients.get(endpoint) or self._clients.setdefault(endpoint, make(cfg))
            key = resolve_secret(cfg.api_key, environ)
            cls = AnthropicProvider if cfg.provider == "anthropic" else OpenAIProvider
            self.providers[name] = cls(cfg, client, key, max_response_bytes)

    def missing_keys(self) -> list[str]:
        """Secret-free notes on models that have no key (for a start-up warning)."""
        return [
            f"model {n!r}: no API key ({p.config.api_key.describe()})"
            for n, p in self.providers.items()
            if not p.has_key
        ]

    def __getitem__(self, model: str) -> Provider:
        return self.providers[model]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
