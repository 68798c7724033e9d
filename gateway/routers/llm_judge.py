"""The causal-LLM router (RouteLLM's fourth design), run by the gateway: ask a model how hard the prompt is.

A configured model (``llm_routers.<name>.model``: a cheap tier's model or a local one) is asked to
rate, from 1 to 5, how much the prompt needs a highly capable model, and to say why in a few
words (:data:`SYSTEM_PROMPT`; the answer must be ``{"rating": N, "reason": "..."}``). The rating
becomes win rates the policies use like any router's scores (:func:`win_rates`): with two tiers
``(rating - 1) / 4``; with more, the rating is read as the share of the tier ladder the prompt
needs, and tier ``i`` (at position ``i / (N - 1)``) is beaten by the top tier with probability
``(c - position) / (1 - position)`` clipped to [0, 1], ``c = (rating - 1) / 4``.

It is explainable (the rating and the reason go into the decision's provenance: headers,
``RoutingDecision.llm``) and **slow**: a model call of hundreds of milliseconds or more per
uncached prompt, against a few milliseconds for the scorer's routers, and it costs a model call.
Hence: its own deadline (``deadline_ms``), a per-replica cache of ratings by the prompt's SHA-256
(``cache_size``, ``cache_ttl_s``), and the scorer's router (``fallback_router``) deciding whenever
the model times out, fails, has an open breaker, or answers something that is not a rating; the
decision then records why (``LLMRating.fallback_reason``) and is counted in
``ferryman_gateway_llm_router_calls{outcome}``. Rating calls never count against the model's
circuit breaker (a slow rater is not a failed provider for clients).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.config import ModelConfig
from gateway.cost import cost_usd
from gateway.providers import Provider, ProviderError
from gateway.routers.llm_config import LLMRouterConfig
from gateway.types import ChatRequest, LLMRating, Message

log = logging.getLogger(__name__)

RATINGS = range(1, 6)
SYSTEM_PROMPT = """You decide which language model should answer a user's request. Rate how much the \
request needs a highly capable (expensive) model rather than a small, cheap one, from 1 to 5:
1 = any small model answers it perfectly well (greetings, small talk, simple facts, short rewrites);
2 = a small model will very likely do;
3 = a mid-sized model is needed (some reasoning, moderate code or writing);
4 = a strong model will answer noticeably better (multi-step reasoning, non-trivial code, careful analysis);
5 = only the strongest model will do (hard proofs, complex code or systems, expert knowledge).
Do not answer the request itself. Reply with one line of JSON only:
{"rating": <1-5>, "reason": "<at most 20 words>"}"""

_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_MAX_REASON = 200


def parse_rating(text: str) -> tuple[int, str] | None:
    """(rating, reason) from the model's answer, or None when it is not a rating."""
    for match in _JSON_OBJECT.finditer(text):
        try:
            data = json.loads(match.group(0))
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        raw = data.get("rating")
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw.strip())
        if isinstance(raw, bool) or not isinstance(raw, int) or raw not in RATINGS:
            return None
        reason = data.get("reason", "")
        return raw, _clean(reason if isinstance(reason, str) else "")
    stripped = text.strip()
    if len(stripped) == 1 and stripped.isdigit() and int(stripped) in RATINGS:
        return int(stripped), ""
    return None


def _clean(reason: str) -> str:
    """One printable line (it goes into an HTTP header and logs), at most ``_MAX_REASON`` characters."""
    text = " ".join(reason.split())
    return "".join(ch for ch in text if ch.isprintable())[:_MAX_REASON]


def win_rates(rating: int, tiers: int) -> tuple[float, ...]:
    """The top tier's win rate over each lower tier, cheapest first (see the module docstring)."""
    need = (rating - 1) / 4
    out = []
    for i in range(tiers - 1):
        position = i / (tiers - 1)
        out.append(min(1.0, max(0.0, (need - position) / (1 - position))))
    return tuple(out)


def _excerpt(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit // 4
    return text[:head] + "\n[...]\n" + text[-(limit - head) :]


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "ferryman_gateway_llm_router_calls",
            "Causal-LLM router ratings by outcome: ok, cached, timeout, error, unparseable, breaker_open.",
            ["router", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "ferryman_gateway_llm_router_latency_seconds",
            "Time of uncached rating calls (answered or abandoned).",
            ["router"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
            registry=registry,
        )
        self.cost = Counter(
            "ferryman_gateway_llm_router_cost_usd", "Estimated spend on rating calls.", ["router"], registry=registry
        )


class LLMRouter:
    """One configured causal-LLM router: rate a prompt, with a cache and a deadline; never raises."""

    def __init__(
        self,
        cfg: LLMRouterConfig,
        model: ModelConfig,
        provider: Provider,
        breaker_open: Callable[[str], bool],
        metrics: _Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self._model = model
        self._provider = provider
        self._breaker_open = breaker_open
        self._metrics = metrics
        self._clock = clock
        self._cache: OrderedDict[str, tuple[int, str, float]] = OrderedDict()

    def _cached(self, key: str) -> tuple[int, str] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        rating, reason, expires = entry
        if expires < self._clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return rating, reason

    def _remember(self, key: str, rating: int, reason: str) -> None:
        self._cache[key] = (rating, reason, self._clock() + self.cfg.cache_ttl_s)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cfg.cache_size:
            self._cache.popitem(last=False)

    def _result(self, outcome: str, **kwargs: object) -> LLMRating:
        self._metrics.calls.labels(self.cfg.name, outcome).inc()
        return LLMRating(self.cfg.name, self.cfg.model, **kwargs)  # type: ignore[arg-type]

    async def rate(self, prompt: str) -> LLMRating:
        """The model's rating of ``prompt`` (the conversation's last user turn), or why there is none."""
        key = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        hit = self._cached(key)
        if hit is not None:
            return self._result("cached", rating=hit[0], reason=hit[1], cached=True)
        if self._breaker_open(self.cfg.model):
            return self._result("breaker_open", fallback_reason="breaker_open")
        request = ChatRequest(
            model=self.cfg.model,
            messages=(
                Message("system", SYSTEM_PROMPT),
                Message("user", "Request to rate:\n<<<\n" + _excerpt(prompt, self.cfg.max_prompt_chars) + "\n>>>"),
            ),
            temperature=0.0,
            max_tokens=self.cfg.max_tokens,
        )
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.cfg.deadline_ms / 1000):
                completion = await self._provider.complete(request)
        except TimeoutError:
            return self._finish(started, "timeout", fallback_reason="timeout")
        except ProviderError as exc:
            log.info("llm router %s: rating call to %s failed: %s", self.cfg.name, self.cfg.model, exc)
            return self._finish(started, "error", fallback_reason="error")
        self._metrics.cost.labels(self.cfg.name).inc(cost_usd(self._model, completion.usage))
        parsed = parse_rating(completion.content)
        if parsed is None:
            log.info("llm router %s: %s answered something that is not a rating", self.cfg.name, self.cfg.model)
            return self._finish(started, "unparseable", fallback_reason="unparseable")
        self._remember(key, *parsed)
        return self._finish(started, "ok", rating=parsed[0], reason=parsed[1])

    def _finish(self, started: float, outcome: str, **kwargs: object) -> LLMRating:
        elapsed = time.perf_counter() - started
        self._metrics.latency.labels(self.cfg.name).observe(elapsed)
        return self._result(outcome, latency_ms=elapsed * 1000, **kwargs)


class LLMRouters:
    """Every configured causal-LLM router, by name."""

    def __init__(
        self,
        configs: Mapping[str, LLMRouterConfig],
        models: Mapping[str, ModelConfig],
        providers: Mapping[str, Provider] | Callable[[str], Provider],
        breaker_open: Callable[[str], bool],
        registry: CollectorRegistry,
    ) -> None:
        metrics = _Metrics(registry)
        get = providers if callable(providers) else providers.__getitem__
        self.routers = {
            name: LLMRouter(cfg, models[cfg.model], get(cfg.model), breaker_open, metrics)
            for name, cfg in configs.items()
        }

    def get(self, name: str) -> LLMRouter | None:
        return self.routers.get(name)
