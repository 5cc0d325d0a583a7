from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResponseHeader(_message.Message):
    __slots__ = ("region_id", "revision", "leader_id")
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    revision: int
    leader_id: int
    def __init__(self, region_id: _Optional[int] = ..., revision: _Optional[int] = ..., leader_id: _Optional[int] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "create_revision", "mod_revision", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("key", "value", "prev_kv")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    prev_kv: bool
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., prev_kv: _Optional[bool] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("header", "prev_kv")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    prev_kv: KeyValue
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., prev_kv: _Optional[_Union[KeyValue, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key", "serializable")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SERIALIZABLE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    serializable: bool
    def __init__(self, key: _Optional[bytes] = ..., serializable: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("header", "kv")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    kv: KeyValue
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., kv: _Optional[_Union[KeyValue, _Mapping]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key", "prev_kv")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    prev_kv: bool
    def __init__(self, key: _Optional[bytes] = ..., prev_kv: _Optional[bool] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("header", "deleted", "prev_kv")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    deleted: int
    prev_kv: KeyValue
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., deleted: _Optional[int] = ..., prev_kv: _Optional[_Union[KeyValue, _Mapping]] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("start", "end", "limit", "reverse", "serializable")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    SERIALIZABLE_FIELD_NUMBER: _ClassVar[int]
    start: bytes
    end: bytes
    limit: int
    reverse: bool
    serializable: bool
    def __init__(self, start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., limit: _Optional[int] = ..., reverse: _Optional[bool] = ..., serializable: _Optional[bool] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("header", "kvs", "more")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KVS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    kvs: _containers.RepeatedCompositeFieldContainer[KeyValue]
    more: bool
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., kvs: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ("key", "target", "result", "value", "version", "exists")
    class Target(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VALUE: _ClassVar[Compare.Target]
        VERSION: _ClassVar[Compare.Target]
        EXISTS: _ClassVar[Compare.Target]
    VALUE: Compare.Target
    VERSION: Compare.Target
    EXISTS: Compare.Target
    class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        EQUAL: _ClassVar[Compare.Result]
        NOT_EQUAL: _ClassVar[Compare.Result]
        LESS: _ClassVar[Compare.Result]
        GREATER: _ClassVar[Compare.Result]
    EQUAL: Compare.Result
    NOT_EQUAL: Compare.Result
    LESS: Compare.Result
    GREATER: Compare.Result
    KEY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    target: Compare.Target
    result: Compare.Result
    value: bytes
    version: int
    exists: bool
    def __init__(self, key: _Optional[bytes] = ..., target: _Optional[_Union[Compare.Target, str]] = ..., result: _Optional[_Union[Compare.Result, str]] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., exists: _Optional[bool] = ...) -> None: ...

class TxnOp(_message.Message):
    __slots__ = ("put", "delete")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    put: PutRequest
    delete: DeleteRequest
    def __init__(self, put: _Optional[_Union[PutRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ...) -> None: ...

class TxnOpResult(_message.Message):
    __slots__ = ("put", "delete")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    put: PutResponse
    delete: DeleteResponse
    def __init__(self, put: _Optional[_Union[PutResponse, _Mapping]] = ..., delete: _Optional[_Union[DeleteResponse, _Mapping]] = ...) -> None: ...

class TxnRequest(_message.Message):
    __slots__ = ("compares", "success", "failure")
    COMPARES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    compares: _containers.RepeatedCompositeFieldContainer[Compare]
    success: _containers.RepeatedCompositeFieldContainer[TxnOp]
    failure: _containers.RepeatedCompositeFieldContainer[TxnOp]
    def __init__(self, compares: _Optional[_Iterable[_Union[Compare, _Mapping]]] = ..., success: _Optional[_Iterable[_Union[TxnOp, _Mapping]]] = ..., failure: _Optional[_Iterable[_Union[TxnOp, _Mapping]]] = ...) -> None: ...

class TxnResponse(_message.Message):
    __slots__ = ("header", "succeeded", "results")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    succeeded: bool
    results: _containers.RepeatedCompositeFieldContainer[TxnOpResult]
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., succeeded: _Optional[bool] = ..., results: _Optional[_Iterable[_Union[TxnOpResult, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("key_prefix", "from_revision")
    KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    key_prefix: bytes
    from_revision: int
    def __init__(self, key_prefix: _Optional[bytes] = ..., from_revision: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "key", "value", "revision")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PUT: _ClassVar[Event.Type]
        DELETE: _ClassVar[Event.Type]
    PUT: Event.Type
    DELETE: Event.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    type: Event.Type
    key: bytes
    value: bytes
    revision: int
    def __init__(self, type: _Optional[_Union[Event.Type, str]] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., revision: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("header", "events")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class KvError(_message.Message):
    __slots__ = ("code", "leader_hint", "leader_address", "compact_revision", "message")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNSPECIFIED: _ClassVar[KvError.Code]
        NOT_LEADER: _ClassVar[KvError.Code]
        EPOCH_MISMATCH: _ClassVar[KvError.Code]
        TIMEOUT: _ClassVar[KvError.Code]
        COMPACTED: _ClassVar[KvError.Code]
        REGION_NOT_FOUND: _ClassVar[KvError.Code]
        KEY_NOT_IN_REGION: _ClassVar[KvError.Code]
        OVERLOADED: _ClassVar[KvError.Code]
        INVALID_ARGUMENT: _ClassVar[KvError.Code]
        INTERNAL: _ClassVar[KvError.Code]
    UNSPECIFIED: KvError.Code
    NOT_LEADER: KvError.Code
    EPOCH_MISMATCH: KvError.Code
    TIMEOUT: KvError.Code
    COMPACTED: KvError.Code
    REGION_NOT_FOUND: KvError.Code
    KEY_NOT_IN_REGION: KvError.Code
    OVERLOADED: KvError.Code
    INVALID_ARGUMENT: KvError.Code
    INTERNAL: KvError.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: KvError.Code
    leader_hint: int
    leader_address: str
    compact_revision: int
    message: str
    def __init__(self, code: _Optional[_Union[KvError.Code, str]] = ..., leader_hint: _Optional[int] = ..., leader_address: _Optional[str] = ..., compact_revision: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
