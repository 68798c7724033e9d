"""The ``llm_routers:`` section: causal-LLM routers by name (frozen, validated at start).

Each entry names a configured model to ask, the scorer router to fall back to, and its own
deadline and cache. A policy (or ``router-<name>-<threshold>``) uses it by name like any router.
See ``gateway.routers.llm_judge``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import _Reader

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class LLMRouterConfig:
    """One causal-LLM router."""

    name: str
    #: The configured model asked for a rating (a cheap tier's model, or a local one).
    model: str
    #: The scorer router that decides when the model does not answer in time or answers nonsense.
    fallback_router: str
    #: The rating call is abandoned after this long (then the fallback router decides).
    deadline_ms: float = 2000.0
    max_tokens: int = 100
    #: Ratings kept per replica (by the prompt's SHA-256), least recently used dropped first.
    cache_size: int = 10_000
    cache_ttl_s: float = 3600.0
    #: The prompt is cut to this many characters (its start and its end) before it is sent.
    max_prompt_chars: int = 4000


def parse_llm_routers(raw: Any, top: _Reader, models: Mapping[str, Any]) -> dict[str, LLMRouterConfig]:
    """Validate ``llm_routers:`` (a mapping of router name to settings)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("llm_routers: expected a mapping of router name to settings")
    reader = type(top)
    out: dict[str, LLMRouterConfig] = {}
    for name, data in raw.items():
        name = str(name)
        if not _NAME.match(name):
            raise ConfigError(f"llm_routers.{name}: a router name has letters, digits and '_' only")
        r = reader(data, f"llm_routers.{name}")
        d = LLMRouterConfig
        cfg = LLMRouterConfig(
            name=name,
            model=r.get("model", str, required=True),
            fallback_router=r.get("fallback_router", str, required=True),
            deadline_ms=r.positive("deadline_ms", float, d.deadline_ms),
            max_tokens=r.positive("max_tokens", int, d.max_tokens),
            cache_size=r.positive("cache_size", int, d.cache_size),
            cache_ttl_s=r.positive("cache_ttl_s", float, d.cache_ttl_s),
            max_prompt_chars=r.positive("max_prompt_chars", int, d.max_prompt_chars),
        )
        r.finish()
        if cfg.model not in models:
            raise ConfigError(f"llm_routers.{name}.model: {cfg.model!r} is not defined under models")
        if cfg.fallback_router in raw:
            raise ConfigError(f"llm_routers.{name}.fallback_router: must be a scorer router, not an LLM router")
        out[name] = cfg
    return out
