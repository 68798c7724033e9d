"""Plain domain types shared by the core, the providers and both front ends (gRPC, HTTP).

They are independent of protobuf and of the OpenAI JSON shape; ``gateway.grpc_server`` and
``gateway.http_app`` convert to and from them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Tier(enum.Enum):
    """Price/quality class a request is sent to."""

    STRONG = "strong"
    WEAK = "weak"
    PASSTHROUGH = "passthrough"


class DecisionSource(enum.Enum):
    """How the tier was chosen."""

    SCORED = "scored"
    SCORER_UNAVAILABLE = "scorer_unavailable"
    PASSTHROUGH = "passthrough"


class AttemptOutcome(enum.Enum):
    """Result of trying one model."""

    SUCCESS = "success"
    TRANSIENT_ERROR = "transient_error"
    BREAKER_OPEN = "breaker_open"
    CLIENT_ERROR = "client_error"
    #: The gateway's own connection pool to the model's endpoint was full (the provider is not blamed).
    SATURATED = "saturated"


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str
    content: str
    name: str = ""


@dataclass(frozen=True)
class RoutingOverrides:
    """Per-request routing options; each is optional."""

    router: str = ""
    threshold: float | None = None
    strong_share: float | None = None
    policy: str = ""


@dataclass(frozen=True)
class ChatRequest:
    """A chat completion request in provider-neutral form."""

    model: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    user: str = ""
    routing: RoutingOverrides = field(default_factory=RoutingOverrides)
    #: Who sent it: the client key's tenant id (``gateway.learning.tenants``); never sent to providers.
    tenant: str = ""


@dataclass(frozen=True)
class Decision:
    """Where a request goes and why; ``chain`` is every model to try, in order."""

    tier: Tier
    model: str
    chain: tuple[str, ...]
    source: DecisionSource
    router: str = ""
    score: float = 0.0
    threshold: float = 0.0
    policy: str = ""
    #: Score RPC round trip as the gateway timed it.
    scorer_latency_ms: float = 0.0
    #: Of that, the scorer's own time (queueing + inference), as the scorer reported it.
    scorer_server_ms: float = 0.0
    #: The router artifact version that scored the request ("" = unknown; recorded with learning data).
    router_version: str = ""


@dataclass(frozen=True)
class Usage:
    """Token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """A provider's whole answer, translated."""

    content: str
    finish_reason: str
    usage: Usage


@dataclass(frozen=True)
class StreamDelta:
    """A piece of streamed text."""

    text: str


@dataclass(frozen=True)
class StreamEnd:
    """The end of a provider stream (usage is None when the provider sent none)."""

    finish_reason: str
    usage: Usage | None


@dataclass
class Attempt:
    """One try against one model of a fallback chain."""

    model: str
    tier: Tier
    outcome: AttemptOutcome
    error: str = ""
    retries: int = 0
    latency_ms: float = 0.0


@dataclass
class Accounting:
    """What actually happened and what it cost."""

    served_model: str = ""
    served_tier: Tier = Tier.PASSTHROUGH
    attempts: list[Attempt] = field(default_factory=list)
    degraded: bool = False
    cost_usd: float = 0.0
    strong_cost_usd: float = 0.0

    @property
    def fallbacks(self) -> int:
        """Models given up on before the one that served (or all, when none did)."""
        return sum(1 for a in self.attempts if a.outcome is not AttemptOutcome.SUCCESS)

    @property
    def retries(self) -> int:
        return sum(a.retries for a in self.attempts)


@dataclass(frozen=True)
class ChatResult:
    """A routed, served chat completion."""

    id: str
    created: int
    completion: Completion
    decision: Decision
    accounting: Accounting
