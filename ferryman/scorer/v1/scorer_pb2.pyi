from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TurnSelection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TURN_SELECTION_UNSPECIFIED: _ClassVar[TurnSelection]
    TURN_SELECTION_LAST_USER: _ClassVar[TurnSelection]
    TURN_SELECTION_ALL_USER: _ClassVar[TurnSelection]

class RouterType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTER_TYPE_UNSPECIFIED: _ClassVar[RouterType]
    ROUTER_TYPE_MF: _ClassVar[RouterType]
    ROUTER_TYPE_BERT: _ClassVar[RouterType]
    ROUTER_TYPE_SW: _ClassVar[RouterType]
    ROUTER_TYPE_RANDOM: _ClassVar[RouterType]
TURN_SELECTION_UNSPECIFIED: TurnSelection
TURN_SELECTION_LAST_USER: TurnSelection
TURN_SELECTION_ALL_USER: TurnSelection
ROUTER_TYPE_UNSPECIFIED: RouterType
ROUTER_TYPE_MF: RouterType
ROUTER_TYPE_BERT: RouterType
ROUTER_TYPE_SW: RouterType
ROUTER_TYPE_RANDOM: RouterType

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("router", "prompt", "conversation", "strong_model", "weak_model", "turn_selection")
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    STRONG_MODEL_FIELD_NUMBER: _ClassVar[int]
    WEAK_MODEL_FIELD_NUMBER: _ClassVar[int]
    TURN_SELECTION_FIELD_NUMBER: _ClassVar[int]
    router: str
    prompt: str
    conversation: Conversation
    strong_model: str
    weak_model: str
    turn_selection: TurnSelection
    def __init__(self, router: _Optional[str] = ..., prompt: _Optional[str] = ..., conversation: _Optional[_Union[Conversation, _Mapping]] = ..., strong_model: _Optional[str] = ..., weak_model: _Optional[str] = ..., turn_selection: _Optional[_Union[TurnSelection, str]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("strong_win_rate", "router", "router_version", "strong_model", "weak_model", "server_time_ms", "artifact_version")
    STRONG_WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    ROUTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    STRONG_MODEL_FIELD_NUMBER: _ClassVar[int]
    WEAK_MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    strong_win_rate: float
    router: str
    router_version: str
    strong_model: str
    weak_model: str
    server_time_ms: float
    artifact_version: str
    def __init__(self, strong_win_rate: _Optional[float] = ..., router: _Optional[str] = ..., router_version: _Optional[str] = ..., strong_model: _Optional[str] = ..., weak_model: _Optional[str] = ..., server_time_ms: _Optional[float] = ..., artifact_version: _Optional[str] = ...) -> None: ...

class BatchScoreRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ScoreRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[ScoreRequest, _Mapping]]] = ...) -> None: ...

class BatchScoreResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[ScoreResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[ScoreResponse, _Mapping]]] = ...) -> None: ...

class ListRoutersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRoutersResponse(_message.Message):
    __slots__ = ("routers",)
    ROUTERS_FIELD_NUMBER: _ClassVar[int]
    routers: _containers.RepeatedCompositeFieldContainer[RouterInfo]
    def __init__(self, routers: _Optional[_Iterable[_Union[RouterInfo, _Mapping]]] = ...) -> None: ...

class CalibrationPoint(_message.Message):
    __slots__ = ("strong_share", "threshold")
    STRONG_SHARE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    strong_share: float
    threshold: float
    def __init__(self, strong_share: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class RouterInfo(_message.Message):
    __slots__ = ("name", "type", "version", "models", "default_strong_model", "default_weak_model", "calibration", "calibration_reference", "encoder", "provenance", "artifact_version")
    class ProvenanceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STRONG_MODEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WEAK_MODEL_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: RouterType
    version: str
    models: _containers.RepeatedScalarFieldContainer[str]
    default_strong_model: str
    default_weak_model: str
    calibration: _containers.RepeatedCompositeFieldContainer[CalibrationPoint]
    calibration_reference: str
    encoder: str
    provenance: _containers.ScalarMap[str, str]
    artifact_version: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[RouterType, str]] = ..., version: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., default_strong_model: _Optional[str] = ..., default_weak_model: _Optional[str] = ..., calibration: _Optional[_Iterable[_Union[CalibrationPoint, _Mapping]]] = ..., calibration_reference: _Optional[str] = ..., encoder: _Optional[str] = ..., provenance: _Optional[_Mapping[str, str]] = ..., artifact_version: _Optional[str] = ...) -> None: ...
