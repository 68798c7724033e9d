from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolChoiceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CHOICE_MODE_UNSPECIFIED: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_AUTO: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_NONE: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_REQUIRED: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_FUNCTION: _ClassVar[ToolChoiceMode]

class ResponseFormatType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESPONSE_FORMAT_TYPE_UNSPECIFIED: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_TEXT: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_JSON_OBJECT: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_JSON_SCHEMA: _ClassVar[ResponseFormatType]

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_STRONG: _ClassVar[Tier]
    TIER_WEAK: _ClassVar[Tier]
    TIER_PASSTHROUGH: _ClassVar[Tier]
    TIER_INTERMEDIATE: _ClassVar[Tier]

class DecisionSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_SOURCE_UNSPECIFIED: _ClassVar[DecisionSource]
    DECISION_SOURCE_SCORED: _ClassVar[DecisionSource]
    DECISION_SOURCE_SCORER_UNAVAILABLE: _ClassVar[DecisionSource]
    DECISION_SOURCE_PASSTHROUGH: _ClassVar[DecisionSource]
    DECISION_SOURCE_STICKY: _ClassVar[DecisionSource]

class ThresholdSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THRESHOLD_SOURCE_UNSPECIFIED: _ClassVar[ThresholdSource]
    THRESHOLD_SOURCE_FIXED: _ClassVar[ThresholdSource]
    THRESHOLD_SOURCE_ARTIFACT: _ClassVar[ThresholdSource]
    THRESHOLD_SOURCE_ONLINE: _ClassVar[ThresholdSource]

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
TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode
TOOL_CHOICE_MODE_AUTO: ToolChoiceMode
TOOL_CHOICE_MODE_NONE: ToolChoiceMode
TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode
TOOL_CHOICE_MODE_FUNCTION: ToolChoiceMode
RESPONSE_FORMAT_TYPE_UNSPECIFIED: ResponseFormatType
RESPONSE_FORMAT_TYPE_TEXT: ResponseFormatType
RESPONSE_FORMAT_TYPE_JSON_OBJECT: ResponseFormatType
RESPONSE_FORMAT_TYPE_JSON_SCHEMA: ResponseFormatType
TIER_UNSPECIFIED: Tier
TIER_STRONG: Tier
TIER_WEAK: Tier
TIER_PASSTHROUGH: Tier
TIER_INTERMEDIATE: Tier
DECISION_SOURCE_UNSPECIFIED: DecisionSource
DECISION_SOURCE_SCORED: DecisionSource
DECISION_SOURCE_SCORER_UNAVAILABLE: DecisionSource
DECISION_SOURCE_PASSTHROUGH: DecisionSource
DECISION_SOURCE_STICKY: DecisionSource
THRESHOLD_SOURCE_UNSPECIFIED: ThresholdSource
THRESHOLD_SOURCE_FIXED: ThresholdSource
THRESHOLD_SOURCE_ARTIFACT: ThresholdSource
THRESHOLD_SOURCE_ONLINE: ThresholdSource
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
    __slots__ = ("role", "content", "name", "tool_calls", "tool_call_id", "tool_error")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_ERROR_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    name: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    tool_call_id: str
    tool_error: bool
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ..., name: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., tool_call_id: _Optional[str] = ..., tool_error: _Optional[bool] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("id", "name", "arguments")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    arguments: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "parameters_json", "strict")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json: str
    strict: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json: _Optional[str] = ..., strict: _Optional[bool] = ...) -> None: ...

class ToolChoice(_message.Message):
    __slots__ = ("mode", "name")
    MODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    mode: ToolChoiceMode
    name: str
    def __init__(self, mode: _Optional[_Union[ToolChoiceMode, str]] = ..., name: _Optional[str] = ...) -> None: ...

class ResponseFormat(_message.Message):
    __slots__ = ("type", "name", "schema_json", "strict", "description")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    type: ResponseFormatType
    name: str
    schema_json: str
    strict: bool
    description: str
    def __init__(self, type: _Optional[_Union[ResponseFormatType, str]] = ..., name: _Optional[str] = ..., schema_json: _Optional[str] = ..., strict: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...

class TokenLogprob(_message.Message):
    __slots__ = ("token", "logprob", "token_bytes", "top_logprobs")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    token: str
    logprob: float
    token_bytes: bytes
    top_logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprob]
    def __init__(self, token: _Optional[str] = ..., logprob: _Optional[float] = ..., token_bytes: _Optional[bytes] = ..., top_logprobs: _Optional[_Iterable[_Union[TokenLogprob, _Mapping]]] = ...) -> None: ...

class ChatChoice(_message.Message):
    __slots__ = ("index", "message", "finish_reason", "logprobs")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    index: int
    message: ChatMessage
    finish_reason: str
    logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprob]
    def __init__(self, index: _Optional[int] = ..., message: _Optional[_Union[ChatMessage, _Mapping]] = ..., finish_reason: _Optional[str] = ..., logprobs: _Optional[_Iterable[_Union[TokenLogprob, _Mapping]]] = ...) -> None: ...

class ToolCallDelta(_message.Message):
    __slots__ = ("index", "id", "name", "arguments")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    name: str
    arguments: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class TierScore(_message.Message):
    __slots__ = ("tier", "router_model", "score", "threshold")
    TIER_FIELD_NUMBER: _ClassVar[int]
    ROUTER_MODEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    tier: str
    router_model: str
    score: float
    threshold: float
    def __init__(self, tier: _Optional[str] = ..., router_model: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class LlmRating(_message.Message):
    __slots__ = ("router", "model", "rating", "reason", "cached", "latency_ms", "fallback_reason")
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    router: str
    model: str
    rating: int
    reason: str
    cached: bool
    latency_ms: float
    fallback_reason: str
    def __init__(self, router: _Optional[str] = ..., model: _Optional[str] = ..., rating: _Optional[int] = ..., reason: _Optional[str] = ..., cached: _Optional[bool] = ..., latency_ms: _Optional[float] = ..., fallback_reason: _Optional[str] = ...) -> None: ...

class RoutingOptions(_message.Message):
    __slots__ = ("router", "threshold", "strong_share", "policy", "conversation_id")
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STRONG_SHARE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    router: str
    threshold: float
    strong_share: float
    policy: str
    conversation_id: str
    def __init__(self, router: _Optional[str] = ..., threshold: _Optional[float] = ..., strong_share: _Optional[float] = ..., policy: _Optional[str] = ..., conversation_id: _Optional[str] = ...) -> None: ...

class RoutingDecision(_message.Message):
    __slots__ = ("tier", "model", "router", "score", "threshold", "source", "policy", "scorer_latency_ms", "scorer_server_time_ms", "router_version", "tier_name", "tier_scores", "threshold_source", "llm")
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
    TIER_NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_SCORES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
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
    tier_name: str
    tier_scores: _containers.RepeatedCompositeFieldContainer[TierScore]
    threshold_source: ThresholdSource
    llm: LlmRating
    def __init__(self, tier: _Optional[_Union[Tier, str]] = ..., model: _Optional[str] = ..., router: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., source: _Optional[_Union[DecisionSource, str]] = ..., policy: _Optional[str] = ..., scorer_latency_ms: _Optional[float] = ..., scorer_server_time_ms: _Optional[float] = ..., router_version: _Optional[str] = ..., tier_name: _Optional[str] = ..., tier_scores: _Optional[_Iterable[_Union[TierScore, _Mapping]]] = ..., threshold_source: _Optional[_Union[ThresholdSource, str]] = ..., llm: _Optional[_Union[LlmRating, _Mapping]] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("model", "messages", "routing", "tools", "response_format", "logprobs", "n")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    routing: RoutingOptions
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    response_format: ResponseFormat
    logprobs: bool
    n: int
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., routing: _Optional[_Union[RoutingOptions, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., response_format: _Optional[_Union[ResponseFormat, _Mapping]] = ..., logprobs: _Optional[bool] = ..., n: _Optional[int] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: RoutingDecision
    def __init__(self, decision: _Optional[_Union[RoutingDecision, _Mapping]] = ...) -> None: ...

class ChatCompletionRequest(_message.Message):
    __slots__ = ("model", "messages", "temperature", "max_tokens", "top_p", "stop", "user", "routing", "tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs", "n")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    temperature: float
    max_tokens: int
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    user: str
    routing: RoutingOptions
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    tool_choice: ToolChoice
    parallel_tool_calls: bool
    response_format: ResponseFormat
    logprobs: bool
    top_logprobs: int
    n: int
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., user: _Optional[str] = ..., routing: _Optional[_Union[RoutingOptions, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., tool_choice: _Optional[_Union[ToolChoice, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ..., response_format: _Optional[_Union[ResponseFormat, _Mapping]] = ..., logprobs: _Optional[bool] = ..., top_logprobs: _Optional[int] = ..., n: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("model", "tier", "outcome", "error", "retries", "latency_ms", "tier_name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TIER_NAME_FIELD_NUMBER: _ClassVar[int]
    model: str
    tier: Tier
    outcome: AttemptOutcome
    error: str
    retries: int
    latency_ms: float
    tier_name: str
    def __init__(self, model: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., outcome: _Optional[_Union[AttemptOutcome, str]] = ..., error: _Optional[str] = ..., retries: _Optional[int] = ..., latency_ms: _Optional[float] = ..., tier_name: _Optional[str] = ...) -> None: ...

class Accounting(_message.Message):
    __slots__ = ("served_model", "served_tier", "attempts", "degraded", "cost_usd", "strong_cost_usd", "served_tier_name")
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVED_TIER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    STRONG_COST_USD_FIELD_NUMBER: _ClassVar[int]
    SERVED_TIER_NAME_FIELD_NUMBER: _ClassVar[int]
    served_model: str
    served_tier: Tier
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    degraded: bool
    cost_usd: float
    strong_cost_usd: float
    served_tier_name: str
    def __init__(self, served_model: _Optional[str] = ..., served_tier: _Optional[_Union[Tier, str]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., degraded: _Optional[bool] = ..., cost_usd: _Optional[float] = ..., strong_cost_usd: _Optional[float] = ..., served_tier_name: _Optional[str] = ...) -> None: ...

class ChatCompletionResponse(_message.Message):
    __slots__ = ("id", "model", "message", "finish_reason", "usage", "decision", "accounting", "created", "choices")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTING_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    message: ChatMessage
    finish_reason: str
    usage: Usage
    decision: RoutingDecision
    accounting: Accounting
    created: int
    choices: _containers.RepeatedCompositeFieldContainer[ChatChoice]
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., message: _Optional[_Union[ChatMessage, _Mapping]] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., decision: _Optional[_Union[RoutingDecision, _Mapping]] = ..., accounting: _Optional[_Union[Accounting, _Mapping]] = ..., created: _Optional[int] = ..., choices: _Optional[_Iterable[_Union[ChatChoice, _Mapping]]] = ...) -> None: ...

class StreamChatCompletionRequest(_message.Message):
    __slots__ = ("model", "messages", "temperature", "max_tokens", "top_p", "stop", "user", "routing", "tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs", "n")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    temperature: float
    max_tokens: int
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    user: str
    routing: RoutingOptions
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    tool_choice: ToolChoice
    parallel_tool_calls: bool
    response_format: ResponseFormat
    logprobs: bool
    top_logprobs: int
    n: int
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., user: _Optional[str] = ..., routing: _Optional[_Union[RoutingOptions, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., tool_choice: _Optional[_Union[ToolChoice, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ..., response_format: _Optional[_Union[ResponseFormat, _Mapping]] = ..., logprobs: _Optional[bool] = ..., top_logprobs: _Optional[int] = ..., n: _Optional[int] = ...) -> None: ...

class StreamChatCompletionResponse(_message.Message):
    __slots__ = ("id", "decision", "delta", "summary", "tool_call", "choice_index", "logprobs", "served_model", "served_tier")
    ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    CHOICE_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVED_TIER_FIELD_NUMBER: _ClassVar[int]
    id: str
    decision: RoutingDecision
    delta: str
    summary: StreamSummary
    tool_call: ToolCallDelta
    choice_index: int
    logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprob]
    served_model: str
    served_tier: str
    def __init__(self, id: _Optional[str] = ..., decision: _Optional[_Union[RoutingDecision, _Mapping]] = ..., delta: _Optional[str] = ..., summary: _Optional[_Union[StreamSummary, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCallDelta, _Mapping]] = ..., choice_index: _Optional[int] = ..., logprobs: _Optional[_Iterable[_Union[TokenLogprob, _Mapping]]] = ..., served_model: _Optional[str] = ..., served_tier: _Optional[str] = ...) -> None: ...

class StreamSummary(_message.Message):
    __slots__ = ("model", "finish_reason", "usage", "accounting", "finish_reasons")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTING_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    finish_reason: str
    usage: Usage
    accounting: Accounting
    finish_reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., accounting: _Optional[_Union[Accounting, _Mapping]] = ..., finish_reasons: _Optional[_Iterable[str]] = ...) -> None: ...

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
