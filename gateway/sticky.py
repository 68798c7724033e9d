"""Conversations keep their tier: follow-up turns go where the conversation's first routed turn went.

Switching models mid-dialogue changes the voice, the formatting and what the model "remembers"
having said; a policy with ``sticky: true`` routes a conversation once and keeps it there.

The conversation key (never the text itself; a SHA-256 of the parts):

- ``conversation_id`` when the client sends one (HTTP header ``x-ferryman-conversation-id`` or
  ``routing.conversation_id``; gRPC ``RoutingOptions.conversation_id``), with the tenant and the policy;
- otherwise the tenant (client key), the policy, the request's ``user`` field, the first system
  message and the first user message. Two conversations of one client that open with the same
  system and user messages and the same ``user`` share a key: send a ``conversation_id`` (or a
  ``user``) to tell them apart.

Only follow-up turns (the request carries an assistant turn) look the key up; every routed
decision that got a score stores its tier under the key, for ``sticky.ttl_s`` (refreshed on each
follow-up). Decisions made without a score (scorer down) are not stored, so a conversation is not
pinned to the scorer-down tier. With Redis (``REDIS_URL``) the tiers are shared by every replica;
without it, or while it is away, each replica keeps its own (at most ``sticky.max_local`` keys,
least recently used dropped first).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

from gateway.shared_redis import SharedRedis
from gateway.types import ChatRequest

if TYPE_CHECKING:
    from gateway.config import _Reader


@dataclass(frozen=True)
class StickyConfig:
    """The ``sticky:`` section (used by policies with ``sticky: true``)."""

    #: How long a conversation keeps its tier after its last turn.
    ttl_s: float = 3600.0
    #: Conversations remembered per replica without Redis (least recently used dropped first).
    max_local: int = 100_000
    namespace: str = "ferryman"
    redis_timeout_s: float = 0.05
    redis_retry_s: float = 5.0


def parse_sticky(r: _Reader) -> StickyConfig:
    d = StickyConfig
    cfg = StickyConfig(
        ttl_s=r.positive("ttl_s", float, d.ttl_s),
        max_local=r.positive("max_local", int, d.max_local),
        namespace=r.get("namespace", str, d.namespace),
        redis_timeout_s=r.positive("redis_timeout_s", float, d.redis_timeout_s),
        redis_retry_s=r.positive("redis_retry_s", float, d.redis_retry_s),
    )
    r.finish()
    return cfg


def is_follow_up(request: ChatRequest) -> bool:
    """True when the conversation already has an answer in it (a later turn)."""
    return any(m.role == "assistant" for m in request.messages)


def conversation_key(request: ChatRequest, policy: str) -> str:
    """The key a conversation's tier is kept under (see the module docstring)."""
    parts: list[str] = [request.tenant, policy]
    if request.routing.conversation_id:
        parts += ["id", request.routing.conversation_id]
    else:
        system = next((m.content for m in request.messages if m.role == "system"), "")
        first_user = next((m.content for m in request.messages if m.role == "user"), "")
        parts += ["derived", request.user, system, first_user]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


class ConversationTiers:
    """Tier per conversation key: Redis when configured and answering, else this replica's LRU."""

    def __init__(self, cfg: StickyConfig, registry: CollectorRegistry, redis_url: str | None) -> None:
        self.cfg = cfg
        self.redis = SharedRedis(
            redis_url, what="sticky conversations", timeout_s=cfg.redis_timeout_s, retry_s=cfg.redis_retry_s
        )
        self._local: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.lookups = Counter(
            "ferryman_gateway_sticky_lookups",
            "Follow-up turns of sticky policies by result (hit, miss) and store (redis, local).",
            ["result", "store"],
            registry=registry,
        )

    def _rkey(self, key: str) -> str:
        return f"{self.cfg.namespace}:sticky:{key}"

    def _local_get(self, key: str) -> str | None:
        entry = self._local.get(key)
        if entry is None:
            return None
        tier, expires = entry
        if expires < time.monotonic():
            del self._local[key]
            return None
        self._local[key] = (tier, time.monotonic() + self.cfg.ttl_s)
        self._local.move_to_end(key)
        return tier

    def _local_put(self, key: str, tier: str) -> None:
        self._local[key] = (tier, time.monotonic() + self.cfg.ttl_s)
        self._local.move_to_end(key)
        while len(self._local) > self.cfg.max_local:
            self._local.popitem(last=False)

    async def get(self, key: str) -> str | None:
        """The conversation's tier (its time-to-live is refreshed), or None."""
        ttl = max(1, int(self.cfg.ttl_s))

        async def getex(client: Any) -> bytes | None:
            return await client.getex(self._rkey(key), ex=ttl)  # type: ignore[no-any-return]

        if self.redis.usable():
            raw = await self.redis.run(getex)
            if raw is not None:
                self.lookups.labels("hit", "redis").inc()
                shared = raw.decode()
                self._local_put(key, shared)
                return shared
        local = self._local_get(key)
        self.lookups.labels("miss" if local is None else "hit", "local").inc()
        return local

    async def put(self, key: str, tier: str) -> None:
        """Remember the tier a conversation was routed to."""
        self._local_put(key, tier)
        ttl = max(1, int(self.cfg.ttl_s))

        async def setex(client: Any) -> object:
            return await client.set(self._rkey(key), tier, ex=ttl)

        await self.redis.run(setex)

    async def close(self) -> None:
        await self.redis.close()
