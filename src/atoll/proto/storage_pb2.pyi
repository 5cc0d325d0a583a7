from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadCache(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READ_CACHE_KEEP: _ClassVar[ReadCache]
    READ_CACHE_DROP: _ClassVar[ReadCache]
    READ_CACHE_BYPASS: _ClassVar[ReadCache]
READ_CACHE_KEEP: ReadCache
READ_CACHE_DROP: ReadCache
READ_CACHE_BYPASS: ReadCache

class ShardId(_message.Message):
    __slots__ = ("pool_id", "pg", "bucket", "key", "version_id", "part_number", "shard_index")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    PG_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    pool_id: int
    pg: int
    bucket: str
    key: str
    version_id: str
    part_number: int
    shard_index: int
    def __init__(self, pool_id: _Optional[int] = ..., pg: _Optional[int] = ..., bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., part_number: _Optional[int] = ..., shard_index: _Optional[int] = ...) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("shard", "k", "m", "block_size", "data_length", "shard_bytes", "file_bytes", "file_name")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SHARD_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    shard: ShardId
    k: int
    m: int
    block_size: int
    data_length: int
    shard_bytes: int
    file_bytes: int
    file_name: str
    def __init__(self, shard: _Optional[_Union[ShardId, _Mapping]] = ..., k: _Optional[int] = ..., m: _Optional[int] = ..., block_size: _Optional[int] = ..., data_length: _Optional[int] = ..., shard_bytes: _Optional[int] = ..., file_bytes: _Optional[int] = ..., file_name: _Optional[str] = ...) -> None: ...

class PutShardRequest(_message.Message):
    __slots__ = ("epoch", "device_id", "shard", "k", "m", "block_size", "data_length")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_LENGTH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    device_id: int
    shard: ShardId
    k: int
    m: int
    block_size: int
    data_length: int
    def __init__(self, epoch: _Optional[int] = ..., device_id: _Optional[int] = ..., shard: _Optional[_Union[ShardId, _Mapping]] = ..., k: _Optional[int] = ..., m: _Optional[int] = ..., block_size: _Optional[int] = ..., data_length: _Optional[int] = ...) -> None: ...

class PutShardChunk(_message.Message):
    __slots__ = ("crc32c", "data_length")
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    DATA_LENGTH_FIELD_NUMBER: _ClassVar[int]
    crc32c: int
    data_length: int
    def __init__(self, crc32c: _Optional[int] = ..., data_length: _Optional[int] = ...) -> None: ...

class PutShardReply(_message.Message):
    __slots__ = ("info", "replaced")
    INFO_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    info: ShardInfo
    replaced: bool
    def __init__(self, info: _Optional[_Union[ShardInfo, _Mapping]] = ..., replaced: _Optional[bool] = ...) -> None: ...

class GetShardRequest(_message.Message):
    __slots__ = ("epoch", "device_id", "shard", "offset", "length", "cache")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    device_id: int
    shard: ShardId
    offset: int
    length: int
    cache: ReadCache
    def __init__(self, epoch: _Optional[int] = ..., device_id: _Optional[int] = ..., shard: _Optional[_Union[ShardId, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., cache: _Optional[_Union[ReadCache, str]] = ...) -> None: ...

class GetShardChunk(_message.Message):
    __slots__ = ("offset", "crc32c")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    offset: int
    crc32c: int
    def __init__(self, offset: _Optional[int] = ..., crc32c: _Optional[int] = ...) -> None: ...

class CombineShardsRequest(_message.Message):
    __slots__ = ("epoch", "sources", "offset", "length")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    sources: _containers.RepeatedCompositeFieldContainer[CombineSource]
    offset: int
    length: int
    def __init__(self, epoch: _Optional[int] = ..., sources: _Optional[_Iterable[_Union[CombineSource, _Mapping]]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class CombineSource(_message.Message):
    __slots__ = ("device_id", "shard", "coefficient")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    shard: ShardId
    coefficient: int
    def __init__(self, device_id: _Optional[int] = ..., shard: _Optional[_Union[ShardId, _Mapping]] = ..., coefficient: _Optional[int] = ...) -> None: ...

class StatShardRequest(_message.Message):
    __slots__ = ("epoch", "device_id", "shard")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    device_id: int
    shard: ShardId
    def __init__(self, epoch: _Optional[int] = ..., device_id: _Optional[int] = ..., shard: _Optional[_Union[ShardId, _Mapping]] = ...) -> None: ...

class StatShardReply(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: ShardInfo
    def __init__(self, info: _Optional[_Union[ShardInfo, _Mapping]] = ...) -> None: ...

class ListPgRequest(_message.Message):
    __slots__ = ("epoch", "device_id", "pool_id", "pg", "start_after", "limit")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    PG_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    device_id: int
    pool_id: int
    pg: int
    start_after: str
    limit: int
    def __init__(self, epoch: _Optional[int] = ..., device_id: _Optional[int] = ..., pool_id: _Optional[int] = ..., pg: _Optional[int] = ..., start_after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListedShard(_message.Message):
    __slots__ = ("file_name", "info", "error")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    info: ShardInfo
    error: str
    def __init__(self, file_name: _Optional[str] = ..., info: _Optional[_Union[ShardInfo, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class ListPgReply(_message.Message):
    __slots__ = ("shards", "next_start_after")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_START_AFTER_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ListedShard]
    next_start_after: str
    def __init__(self, shards: _Optional[_Iterable[_Union[ListedShard, _Mapping]]] = ..., next_start_after: _Optional[str] = ...) -> None: ...

class PgRef(_message.Message):
    __slots__ = ("pool_id", "pg")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    PG_FIELD_NUMBER: _ClassVar[int]
    pool_id: int
    pg: int
    def __init__(self, pool_id: _Optional[int] = ..., pg: _Optional[int] = ...) -> None: ...

class ListPgsRequest(_message.Message):
    __slots__ = ("epoch", "device_id", "pgs", "start_index", "start_after", "limit")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PGS_FIELD_NUMBER: _ClassVar[int]
    START_INDEX_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    device_id: int
    pgs: _containers.RepeatedCompositeFieldContainer[PgRef]
    start_index: int
    start_after: str
    limit: int
    def __init__(self, epoch: _Optional[int] = ..., device_id: _Optional[int] = ..., pgs: _Optional[_Iterable[_Union[PgRef, _Mapping]]] = ..., start_index: _Optional[int] = ..., start_after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListedPg(_message.Message):
    __slots__ = ("index", "shards")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    shards: _containers.RepeatedCompositeFieldContainer[ListedShard]
    def __init__(self, index: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ListedShard, _Mapping]]] = ...) -> None: ...

class ListPgsReply(_message.Message):
    __slots__ = ("pgs", "next_index", "next_start_after")
    PGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_INDEX_FIELD_NUMBER: _ClassVar[int]
    NEXT_START_AFTER_FIELD_NUMBER: _ClassVar[int]
    pgs: _containers.RepeatedCompositeFieldContainer[ListedPg]
    next_index: int
    next_start_after: str
    def __init__(self, pgs: _Optional[_Iterable[_Union[ListedPg, _Mapping]]] = ..., next_index: _Optional[int] = ..., next_start_after: _Optional[str] = ...) -> None: ...

class DeleteShardRequest(_message.Message):
    __slots__ = ("epoch", "device_id", "shard")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    device_id: int
    shard: ShardId
    def __init__(self, epoch: _Optional[int] = ..., device_id: _Optional[int] = ..., shard: _Optional[_Union[ShardId, _Mapping]] = ...) -> None: ...

class DeleteShardReply(_message.Message):
    __slots__ = ("deleted", "freed_bytes")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    freed_bytes: int
    def __init__(self, deleted: _Optional[bool] = ..., freed_bytes: _Optional[int] = ...) -> None: ...

class DevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("device_id", "path", "capacity_bytes", "used_bytes", "reserved_bytes", "shard_files", "failed", "failure")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESERVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHARD_FILES_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    path: str
    capacity_bytes: int
    used_bytes: int
    reserved_bytes: int
    shard_files: int
    failed: bool
    failure: str
    def __init__(self, device_id: _Optional[int] = ..., path: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., reserved_bytes: _Optional[int] = ..., shard_files: _Optional[int] = ..., failed: _Optional[bool] = ..., failure: _Optional[str] = ...) -> None: ...

class DevicesReply(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceInfo]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceInfo, _Mapping]]] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("message", "device_id", "epoch", "file", "block", "offset", "expected_crc32c", "actual_crc32c", "needed_bytes", "free_bytes")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CRC32C_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_CRC32C_FIELD_NUMBER: _ClassVar[int]
    NEEDED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    message: str
    device_id: int
    epoch: int
    file: str
    block: int
    offset: int
    expected_crc32c: int
    actual_crc32c: int
    needed_bytes: int
    free_bytes: int
    def __init__(self, message: _Optional[str] = ..., device_id: _Optional[int] = ..., epoch: _Optional[int] = ..., file: _Optional[str] = ..., block: _Optional[int] = ..., offset: _Optional[int] = ..., expected_crc32c: _Optional[int] = ..., actual_crc32c: _Optional[int] = ..., needed_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ...) -> None: ...
