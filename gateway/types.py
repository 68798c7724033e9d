"""Plain domain types shared by the core, the providers and both front ends (gRPC, HTTP).

They are independent of protobuf and of the OpenAI JSON shape; ``gateway.grpc_server`` and
``gateway.http_app`` convert to and from them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Tier(enum.Enum):
    """Price/quality class a request is sent to (the tier's own name is in ``Decision.tier_name``)."""

    #: The top (most capable) tier.
    STRONG = "strong"
    #: The cheapest tier.
    WEAK = "weak"
    #: A tier between the cheapest and the top one (configs with more than two tiers).
    INTERMEDIATE = "intermediate"
    PASSTHROUGH = "passthrough"


class DecisionSource(enum.Enum):
    """How the tier was chosen."""

    SCORED = "scored"
    SCORER_UNAVAILABLE = "scorer_unavailable"
    PASSTHROUGH = "passthrough"
    #: A follow-up turn kept on the tier its conversation already had (``gateway.sticky``).
    STICKY = "sticky"


class AttemptOutcome(enum.Enum):
    """Result of trying one model."""

    SUCCESS = "success"
    TRANSIENT_ERROR = "transient_error"
    BREAKER_OPEN = "breaker_open"
    CLIENT_ERROR = "client_error"
    #: The gateway's own connection pool to the model's endpoint was full (the provider is not blamed).
    SATURATED = "saturated"


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for (OpenAI's shape: ``arguments`` is JSON text of an object)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Tool:
    """A function the model may call; ``parameters`` is its JSON schema (None: takes no arguments)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None
    #: OpenAI's strict schema adherence (None: the provider's default; not forwarded to Anthropic).
    strict: bool | None = None


@dataclass(frozen=True)
class ToolChoice:
    """Whether and which tool the model must call: ``mode`` auto, none, required, or function (``name``)."""

    mode: str
    name: str = ""


@dataclass(frozen=True)
class ResponseFormat:
    """Structured output: ``type`` text, json_object, or json_schema (with ``name`` and ``schema``)."""

    type: str
    name: str = ""
    schema: Mapping[str, Any] | None = None
    strict: bool | None = None
    description: str = ""


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability, and the most likely alternatives (``top``)."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Message:
    """One chat turn; an assistant turn may carry tool calls, a ``tool`` turn answers one (``tool_call_id``;
    ``tool_error``: the tool failed, Anthropic's ``tool_result.is_error``, which chat completions cannot say)."""

    role: str
    content: str
    name: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    tool_error: bool = False


@dataclass(frozen=True)
class RoutingOverrides:
    """Per-request routing options; each is optional."""

    router: str = ""
    threshold: float | None = None
    strong_share: float | None = None
    policy: str = ""
    #: Conversation key for sticky policies ("" = derived from the conversation: ``gateway.sticky``).
    conversation_id: str = ""


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
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    #: Whether the model may call several tools in one turn (None: the provider's default).
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    #: Choices to generate (all from the one model that serves the request).
    n: int = 1
    #: Who sent it: the client key's tenant id (``gateway.learning.tenants``); never sent to providers.
    tenant: str = ""

    @property
    def uses_tools(self) -> bool:
        """Tools are offered, or the conversation has tool calls or results."""
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.messages)


@dataclass(frozen=True)
class TierScore:
    """One score a routing decision used: the top tier's predicted win rate over ``tier``, and its threshold."""

    tier: str
    #: The router model identity ``tier`` stands for ("" = the router's default weak model).
    router_model: str
    score: float
    threshold: float


@dataclass(frozen=True)
class LLMRating:
    """What the causal-LLM router said (``gateway.routers.llm_judge``), or why it was not used."""

    router: str
    model: str
    #: 1 (any model will do) .. 5 (needs the strongest); None when no usable rating came back.
    rating: int | None = None
    reason: str = ""
    cached: bool = False
    latency_ms: float = 0.0
    #: Why the scorer's router decided instead ("" = the rating was used): timeout, error, unparseable, breaker_open.
    fallback_reason: str = ""


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
    #: The configured name of the chosen tier ("" for passthrough).
    tier_name: str = ""
    #: Every score used, one per tier below the top (empty when not scored).
    tier_scores: tuple[TierScore, ...] = ()
    #: Where the thresholds came from: fixed (the request or policy gave one), artifact (the router's
    #: calibration table), online (calibrated on live traffic: ``gateway.calibration_online``).
    threshold_source: str = ""
    #: The causal-LLM router's rating, when the policy's router is one.
    llm: LLMRating | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Choice:
    """One generated answer: text and/or tool calls."""

    content: str
    finish_reason: str
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None
    #: The stop sequence that ended it, when the provider says (Anthropic's ``stop_sequence``).
    stop_sequence: str = ""


@dataclass(frozen=True)
class Completion:
    """A provider's whole answer, translated: the first choice, usage, and any further choices (n > 1)."""

    content: str
    finish_reason: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None
    more_choices: tuple[Choice, ...] = ()
    stop_sequence: str = ""

    @property
    def choices(self) -> tuple[Choice, ...]:
        first = Choice(self.content, self.finish_reason, self.tool_calls, self.logprobs, self.stop_sequence)
        return (first, *self.more_choices)

    @staticmethod
    def of(choices: list[Choice], usage: Usage) -> Completion:
        first, *more = choices
        return Completion(
            first.content,
            first.finish_reason,
            usage,
            first.tool_calls,
            first.logprobs,
            tuple(more),
            first.stop_sequence,
        )


@dataclass(frozen=True)
class StreamDelta:
    """A piece of streamed text of choice ``choice`` (with its tokens' log-probabilities, when asked)."""

    text: str
    choice: int = 0
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of call ``index`` has its id and name, later
    ones more of its JSON arguments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""
    choice: int = 0


@dataclass(frozen=True)
class StreamEnd:
    """The end of a provider stream (usage is None when the provider sent none); the finish reason
    of choice 0, then of any further choices."""

    finish_reason: str
    usage: Usage | None
    more_finish_reasons: tuple[str, ...] = ()
    #: The stop sequence that ended choice 0, when the provider says (Anthropic's ``stop_sequence``).
    stop_sequence: str = ""


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
    #: The configured name of the served model's tier ("" for passthrough).
    served_tier_name: str = ""
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

    @property
    def served_tier_label(self) -> str:
        """The served tier as every transport names it: the configured tier name ("strong" or
        "weak" in a two-tier configuration, any name with more), "passthrough" for a named model."""
        return self.served_tier_name or self.served_tier.value


@dataclass(frozen=True)
class ChatResult:
    """A routed, served chat completion."""

    id: str
    created: int
    completion: Completion
    decision: Decision
    accounting: Accounting
