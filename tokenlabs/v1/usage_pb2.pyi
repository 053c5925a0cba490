import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Window(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_UNSPECIFIED: _ClassVar[Window]
    WINDOW_MINUTE: _ClassVar[Window]
    WINDOW_DAY: _ClassVar[Window]
WINDOW_UNSPECIFIED: Window
WINDOW_MINUTE: Window
WINDOW_DAY: Window

class WindowUsage(_message.Message):
    __slots__ = ("window", "requests", "request_limit", "requests_remaining", "tokens", "token_limit", "tokens_remaining", "resets_at")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_REMAINING_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    window: Window
    requests: int
    request_limit: int
    requests_remaining: int
    tokens: int
    token_limit: int
    tokens_remaining: int
    resets_at: _timestamp_pb2.Timestamp
    def __init__(self, window: _Optional[_Union[Window, str]] = ..., requests: _Optional[int] = ..., request_limit: _Optional[int] = ..., requests_remaining: _Optional[int] = ..., tokens: _Optional[int] = ..., token_limit: _Optional[int] = ..., tokens_remaining: _Optional[int] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelUsage(_message.Message):
    __slots__ = ("model", "requests", "prompt_tokens", "completion_tokens", "cost_usd")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    def __init__(self, model: _Optional[str] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class TenantUsage(_message.Message):
    __slots__ = ("tenant_id", "tier", "windows", "models", "requests", "prompt_tokens", "completion_tokens", "cost_usd")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    tier: str
    windows: _containers.RepeatedCompositeFieldContainer[WindowUsage]
    models: _containers.RepeatedCompositeFieldContainer[ModelUsage]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    def __init__(self, tenant_id: _Optional[str] = ..., tier: _Optional[str] = ..., windows: _Optional[_Iterable[_Union[WindowUsage, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[ModelUsage, _Mapping]]] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class GetTenantUsageRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetTenantUsageResponse(_message.Message):
    __slots__ = ("usage",)
    USAGE_FIELD_NUMBER: _ClassVar[int]
    usage: TenantUsage
    def __init__(self, usage: _Optional[_Union[TenantUsage, _Mapping]] = ...) -> None: ...

class ListTenantUsageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTenantUsageResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantUsage]
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantUsage, _Mapping]]] = ...) -> None: ...
