from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_TYPE_NORMAL: _ClassVar[EntryType]
    ENTRY_TYPE_CONF_CHANGE: _ClassVar[EntryType]

class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_TYPE_HUP: _ClassVar[MessageType]
    MESSAGE_TYPE_BEAT: _ClassVar[MessageType]
    MESSAGE_TYPE_PROP: _ClassVar[MessageType]
    MESSAGE_TYPE_UNREACHABLE: _ClassVar[MessageType]
    MESSAGE_TYPE_SNAP_STATUS: _ClassVar[MessageType]
    MESSAGE_TYPE_CHECK_QUORUM: _ClassVar[MessageType]
    MESSAGE_TYPE_APP: _ClassVar[MessageType]
    MESSAGE_TYPE_APP_RESP: _ClassVar[MessageType]
    MESSAGE_TYPE_VOTE: _ClassVar[MessageType]
    MESSAGE_TYPE_VOTE_RESP: _ClassVar[MessageType]
    MESSAGE_TYPE_PRE_VOTE: _ClassVar[MessageType]
    MESSAGE_TYPE_PRE_VOTE_RESP: _ClassVar[MessageType]
    MESSAGE_TYPE_SNAP: _ClassVar[MessageType]
    MESSAGE_TYPE_HEARTBEAT: _ClassVar[MessageType]
    MESSAGE_TYPE_HEARTBEAT_RESP: _ClassVar[MessageType]
    MESSAGE_TYPE_TRANSFER_LEADER: _ClassVar[MessageType]
    MESSAGE_TYPE_TIMEOUT_NOW: _ClassVar[MessageType]
    MESSAGE_TYPE_READ_INDEX: _ClassVar[MessageType]
    MESSAGE_TYPE_READ_INDEX_RESP: _ClassVar[MessageType]
ENTRY_TYPE_NORMAL: EntryType
ENTRY_TYPE_CONF_CHANGE: EntryType
MESSAGE_TYPE_HUP: MessageType
MESSAGE_TYPE_BEAT: MessageType
MESSAGE_TYPE_PROP: MessageType
MESSAGE_TYPE_UNREACHABLE: MessageType
MESSAGE_TYPE_SNAP_STATUS: MessageType
MESSAGE_TYPE_CHECK_QUORUM: MessageType
MESSAGE_TYPE_APP: MessageType
MESSAGE_TYPE_APP_RESP: MessageType
MESSAGE_TYPE_VOTE: MessageType
MESSAGE_TYPE_VOTE_RESP: MessageType
MESSAGE_TYPE_PRE_VOTE: MessageType
MESSAGE_TYPE_PRE_VOTE_RESP: MessageType
MESSAGE_TYPE_SNAP: MessageType
MESSAGE_TYPE_HEARTBEAT: MessageType
MESSAGE_TYPE_HEARTBEAT_RESP: MessageType
MESSAGE_TYPE_TRANSFER_LEADER: MessageType
MESSAGE_TYPE_TIMEOUT_NOW: MessageType
MESSAGE_TYPE_READ_INDEX: MessageType
MESSAGE_TYPE_READ_INDEX_RESP: MessageType

class Entry(_message.Message):
    __slots__ = ("term", "index", "type", "data_len")
    TERM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_LEN_FIELD_NUMBER: _ClassVar[int]
    term: int
    index: int
    type: EntryType
    data_len: int
    def __init__(self, term: _Optional[int] = ..., index: _Optional[int] = ..., type: _Optional[_Union[EntryType, str]] = ..., data_len: _Optional[int] = ...) -> None: ...

class HardState(_message.Message):
    __slots__ = ("term", "vote", "commit")
    TERM_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    term: int
    vote: int
    commit: int
    def __init__(self, term: _Optional[int] = ..., vote: _Optional[int] = ..., commit: _Optional[int] = ...) -> None: ...

class ConfState(_message.Message):
    __slots__ = ("voters", "learners")
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    voters: _containers.RepeatedScalarFieldContainer[int]
    learners: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, voters: _Optional[_Iterable[int]] = ..., learners: _Optional[_Iterable[int]] = ...) -> None: ...

class SnapshotMeta(_message.Message):
    __slots__ = ("index", "term", "conf")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    CONF_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    conf: ConfState
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., conf: _Optional[_Union[ConfState, _Mapping]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("meta", "data_len")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_LEN_FIELD_NUMBER: _ClassVar[int]
    meta: SnapshotMeta
    data_len: int
    def __init__(self, meta: _Optional[_Union[SnapshotMeta, _Mapping]] = ..., data_len: _Optional[int] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("type", "to", "frm", "term", "log_term", "index", "entries", "commit", "reject", "reject_hint", "snapshot", "context")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    FRM_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    REJECT_HINT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    type: MessageType
    to: int
    frm: int
    term: int
    log_term: int
    index: int
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    commit: int
    reject: bool
    reject_hint: int
    snapshot: Snapshot
    context: bytes
    def __init__(self, type: _Optional[_Union[MessageType, str]] = ..., to: _Optional[int] = ..., frm: _Optional[int] = ..., term: _Optional[int] = ..., log_term: _Optional[int] = ..., index: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., commit: _Optional[int] = ..., reject: _Optional[bool] = ..., reject_hint: _Optional[int] = ..., snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., context: _Optional[bytes] = ...) -> None: ...

class GroupMessage(_message.Message):
    __slots__ = ("group_id", "message")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    message: Message
    def __init__(self, group_id: _Optional[int] = ..., message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class RaftBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[GroupMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[GroupMessage, _Mapping]]] = ...) -> None: ...
