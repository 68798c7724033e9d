from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_STRONG: _ClassVar[Tier]
    TIER_WEAK: _ClassVar[Tier]
    TIER_PASSTHROUGH: _ClassVar[Tier]

class DecisionSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_SOURCE_UNSPECIFIED: _ClassVar[DecisionSource]
    DECISION_SOURCE_SCORED: _ClassVar[DecisionSource]
    DECISION_SOURCE_SCORER_UNAVAILABLE: _ClassVar[DecisionSource]
    DECISION_SOURCE_PASSTHROUGH: _ClassVar[DecisionSource]

class AttemptOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_OUTCOME_UNSPECIFIED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SUCCESS: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_TRANSIENT_ERROR: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_BREAKER_OPEN: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_CLIENT_ERROR: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SATURATED: _ClassVar[AttemptOutcome]

class FeedbackRating(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_RATING_UNSPECIFIED: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_GOOD: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_BAD: _ClassVar[FeedbackRating]
TIER_UNSPECIFIED: Tier
TIER_STRONG: Tier
TIER_WEAK: Tier
TIER_PASSTHROUGH: Tier
DECISION_SOURCE_UNSPECIFIED: DecisionSource
DECISION_SOURCE_SCORED: DecisionSource
DECISION_SOURCE_SCORER_UNAVAILABLE: DecisionSource
DECISION_SOURCE_PASSTHROUGH: DecisionSource
ATTEMPT_OUTCOME_UNSPECIFIED: AttemptOutcome
ATTEMPT_OUTCOME_SUCCESS: AttemptOutcome
ATTEMPT_OUTCOME_TRANSIENT_ERROR: AttemptOutcome
ATTEMPT_OUTCOME_BREAKER_OPEN: AttemptOutcome
ATTEMPT_OUTCOME_CLIENT_ERROR: AttemptOutcome
ATTEMPT_OUTCOME_SATURATED: AttemptOutcome
FEEDBACK_RATING_UNSPECIFIED: FeedbackRating
FEEDBACK_RATING_GOOD: FeedbackRating
FEEDBACK_RATING_BAD: FeedbackRating

class ChatMessage(_message.Message):
    __slots__ = ("role", "content", "name")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    name: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RoutingOptions(_message.Message):
    __slots__ = ("router", "threshold", "strong_share", "policy")
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STRONG_SHARE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    router: str
    threshold: float
    strong_share: float
    policy: str
    def __init__(self, router: _Optional[str] = ..., threshold: _Optional[float] = ..., strong_share: _Optional[float] = ..., policy: _Optional[str] = ...) -> None: ...

class RoutingDecision(_message.Message):
    __slots__ = ("tier", "model", "router", "score", "threshold", "source", "policy", "scorer_latency_ms", "scorer_server_time_ms", "router_version")
    TIER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SCORER_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SCORER_SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ROUTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    tier: Tier
    model: str
    router: str
    score: float
    threshold: float
    source: DecisionSource
    policy: str
    scorer_latency_ms: float
    scorer_server_time_ms: float
    router_version: str
    def __init__(self, tier: _Optional[_Union[Tier, str]] = ..., model: _Optional[str] = ..., router: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., source: _Optional[_Union[DecisionSource, str]] = ..., policy: _Optional[str] = ..., scorer_latency_ms: _Optional[float] = ..., scorer_server_time_ms: _Optional[float] = ..., router_version: _Optional[str] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("model", "messages", "routing")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    routing: RoutingOptions
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., routing: _Optional[_Union[RoutingOptions, _Mapping]] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: RoutingDecision
    def __init__(self, decision: _Optional[_Union[RoutingDecision, _Mapping]] = ...) -> None: ...

class ChatCompletionRequest(_message.Message):
    __slots__ = ("model", "messages", "temperature", "max_tokens", "top_p", "stop", "user", "routing")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    temperature: float
    max_tokens: int
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    user: str
    routing: RoutingOptions
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., user: _Optional[str] = ..., routing: _Optional[_Union[RoutingOptions, _Mapping]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("model", "tier", "outcome", "error", "retries", "latency_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    tier: Tier
    outcome: AttemptOutcome
    error: str
    retries: int
    latency_ms: float
    def __init__(self, model: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., outcome: _Optional[_Union[AttemptOutcome, str]] = ..., error: _Optional[str] = ..., retries: _Optional[int] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class Accounting(_message.Message):
    __slots__ = ("served_model", "served_tier", "attempts", "degraded", "cost_usd", "strong_cost_usd")
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVED_TIER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    STRONG_COST_USD_FIELD_NUMBER: _ClassVar[int]
    served_model: str
    served_tier: Tier
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    degraded: bool
    cost_usd: float
    strong_cost_usd: float
    def __init__(self, served_model: _Optional[str] = ..., served_tier: _Optional[_Union[Tier, str]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., degraded: _Optional[bool] = ..., cost_usd: _Optional[float] = ..., strong_cost_usd: _Optional[float] = ...) -> None: ...

class ChatCompletionResponse(_message.Message):
    __slots__ = ("id", "model", "message", "finish_reason", "usage", "decision", "accounting", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTING_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    message: ChatMessage
    finish_reason: str
    usage: Usage
    decision: RoutingDecision
    accounting: Accounting
    created: int
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., message: _Optional[_Union[ChatMessage, _Mapping]] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., decision: _Optional[_Union[RoutingDecision, _Mapping]] = ..., accounting: _Optional[_Union[Accounting, _Mapping]] = ..., created: _Optional[int] = ...) -> None: ...

class StreamChatCompletionRequest(_message.Message):
    __slots__ = ("model", "messages", "temperature", "max_tokens", "top_p", "stop", "user", "routing")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    temperature: float
    max_tokens: int
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    user: str
    routing: RoutingOptions
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., user: _Optional[str] = ..., routing: _Optional[_Union[RoutingOptions, _Mapping]] = ...) -> None: ...

class StreamChatCompletionResponse(_message.Message):
    __slots__ = ("id", "decision", "delta", "summary")
    ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    id: str
    decision: RoutingDecision
    delta: str
    summary: StreamSummary
    def __init__(self, id: _Optional[str] = ..., decision: _Optional[_Union[RoutingDecision, _Mapping]] = ..., delta: _Optional[str] = ..., summary: _Optional[_Union[StreamSummary, _Mapping]] = ...) -> None: ...

class StreamSummary(_message.Message):
    __slots__ = ("model", "finish_reason", "usage", "accounting")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTING_FIELD_NUMBER: _ClassVar[int]
    model: str
    finish_reason: str
    usage: Usage
    accounting: Accounting
    def __init__(self, model: _Optional[str] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., accounting: _Optional[_Union[Accounting, _Mapping]] = ...) -> None: ...

class SubmitFeedbackRequest(_message.Message):
    __slots__ = ("response_id", "rating")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    rating: FeedbackRating
    def __init__(self, response_id: _Optional[str] = ..., rating: _Optional[_Union[FeedbackRating, str]] = ...) -> None: ...

class SubmitFeedbackResponse(_message.Message):
    __slots__ = ("response_id", "rating")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    rating: FeedbackRating
    def __init__(self, response_id: _Optional[str] = ..., rating: _Optional[_Union[FeedbackRating, str]] = ...) -> None: ...
