from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceSpec(_message.Message):
    __slots__ = ("path", "capacity_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    capacity_bytes: int
    def __init__(self, path: _Optional[str] = ..., capacity_bytes: _Optional[int] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("node_id", "rpc", "kv", "zone", "rack", "member", "devices")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    rpc: str
    kv: str
    zone: str
    rack: str
    member: bool
    devices: _containers.RepeatedCompositeFieldContainer[DeviceSpec]
    def __init__(self, node_id: _Optional[int] = ..., rpc: _Optional[str] = ..., kv: _Optional[str] = ..., zone: _Optional[str] = ..., rack: _Optional[str] = ..., member: _Optional[bool] = ..., devices: _Optional[_Iterable[_Union[DeviceSpec, _Mapping]]] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "rpc")
    ID_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    id: int
    rpc: str
    def __init__(self, id: _Optional[int] = ..., rpc: _Optional[str] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("cluster_id", "epoch", "device_ids", "members")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    epoch: int
    device_ids: _containers.RepeatedScalarFieldContainer[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, cluster_id: _Optional[str] = ..., epoch: _Optional[int] = ..., device_ids: _Optional[_Iterable[int]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class DeviceUsage(_message.Message):
    __slots__ = ("device_id", "used_bytes", "capacity_bytes")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    used_bytes: int
    capacity_bytes: int
    def __init__(self, device_id: _Optional[int] = ..., used_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "epoch", "devices", "load1", "degraded_reads", "repair")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_READS_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    epoch: int
    devices: _containers.RepeatedCompositeFieldContainer[DeviceUsage]
    load1: float
    degraded_reads: int
    repair: RepairReport
    def __init__(self, node_id: _Optional[int] = ..., epoch: _Optional[int] = ..., devices: _Optional[_Iterable[_Union[DeviceUsage, _Mapping]]] = ..., load1: _Optional[float] = ..., degraded_reads: _Optional[int] = ..., repair: _Optional[_Union[RepairReport, _Mapping]] = ...) -> None: ...

class PgRef(_message.Message):
    __slots__ = ("pool_id", "pg")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    PG_FIELD_NUMBER: _ClassVar[int]
    pool_id: int
    pg: int
    def __init__(self, pool_id: _Optional[int] = ..., pg: _Optional[int] = ...) -> None: ...

class RepairReport(_message.Message):
    __slots__ = ("checked_epoch", "incomplete", "bytes_to_repair", "repaired_bytes", "repaired_shards", "repair_bytes_per_s", "stale_removed", "last_pass_ms")
    CHECKED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TO_REPAIR_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_SHARDS_FIELD_NUMBER: _ClassVar[int]
    REPAIR_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    STALE_REMOVED_FIELD_NUMBER: _ClassVar[int]
    LAST_PASS_MS_FIELD_NUMBER: _ClassVar[int]
    checked_epoch: int
    incomplete: _containers.RepeatedCompositeFieldContainer[PgRef]
    bytes_to_repair: int
    repaired_bytes: int
    repaired_shards: int
    repair_bytes_per_s: float
    stale_removed: int
    last_pass_ms: int
    def __init__(self, checked_epoch: _Optional[int] = ..., incomplete: _Optional[_Iterable[_Union[PgRef, _Mapping]]] = ..., bytes_to_repair: _Optional[int] = ..., repaired_bytes: _Optional[int] = ..., repaired_shards: _Optional[int] = ..., repair_bytes_per_s: _Optional[float] = ..., stale_removed: _Optional[int] = ..., last_pass_ms: _Optional[int] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class MapRequest(_message.Message):
    __slots__ = ("linearizable",)
    LINEARIZABLE_FIELD_NUMBER: _ClassVar[int]
    linearizable: bool
    def __init__(self, linearizable: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class NotLeaderDetail(_message.Message):
    __slots__ = ("leader_id", "leader_rpc")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_RPC_FIELD_NUMBER: _ClassVar[int]
    leader_id: int
    leader_rpc: str
    def __init__(self, leader_id: _Optional[int] = ..., leader_rpc: _Optional[str] = ...) -> None: ...
