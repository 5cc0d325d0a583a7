"""The storage node's shard service (shared/DESIGN.md §4-§5; docs/formats/storage.md).

- `layout` (pure): where a shard file lives in a device directory and its name.
- `capacity` (pure): a device's capacity accounting and write reservations.
- `errors` (pure): typed failures and their stable error codes on the wire.
- `messages` (pure): the protobuf messages to and from plain dataclasses.
- `devices`: the I/O shell of one device directory (scan, writers, readers, deletes).
- `service`: `StorageService`, the atoll.rpc handlers (`storage.put_shard`, ...).
- `client`: `StorageClient`, the caller's side, raising the same typed errors.
"""

from atoll.storage.capacity import CapacityLedger, Reservation
from atoll.storage.client import Block, PutResult, StorageClient
from atoll.storage.devices import DeviceConfig
from atoll.storage.errors import (
    ERROR_DEVICE_FAILED,
    ERROR_DEVICE_FULL,
    ERROR_INVALID_ARGUMENT,
    ERROR_SHARD_CORRUPT,
    ERROR_SHARD_NOT_FOUND,
    ERROR_STALE_EPOCH,
    ERROR_UNKNOWN_DEVICE,
    DeviceFailed,
    DeviceFull,
    InvalidArgument,
    ProtocolError,
    ShardCorrupt,
    ShardNotFound,
    StaleEpoch,
    StorageError,
    UnknownDevice,
)
from atoll.storage.layout import ShardId, shard_file_name, shard_relative_path
from atoll.storage.messages import (
    DeviceInfo,
    ListedShard,
    ListPage,
    PgsPage,
    ReadCache,
    ShardInfo,
)
from atoll.storage.service import (
    METHOD_COMBINE_SHARDS,
    METHOD_DELETE_SHARD,
    METHOD_DEVICES,
    METHOD_GET_SHARD,
    METHOD_LIST_PG,
    METHOD_LIST_PGS,
    METHOD_PUT_SHARD,
    METHOD_STAT_SHARD,
    StorageConfig,
    StorageService,
)

__all__ = [
    "ERROR_DEVICE_FAILED",
    "ERROR_DEVICE_FULL",
    "ERROR_INVALID_ARGUMENT",
    "ERROR_SHARD_CORRUPT",
    "ERROR_SHARD_NOT_FOUND",
    "ERROR_STALE_EPOCH",
    "ERROR_UNKNOWN_DEVICE",
    "METHOD_COMBINE_SHARDS",
    "METHOD_DELETE_SHARD",
    "METHOD_DEVICES",
    "METHOD_GET_SHARD",
    "METHOD_LIST_PG",
    "METHOD_LIST_PGS",
    "METHOD_PUT_SHARD",
    "METHOD_STAT_SHARD",
    "Block",
    "CapacityLedger",
    "DeviceConfig",
    "DeviceFailed",
    "DeviceFull",
    "DeviceInfo",
    "InvalidArgument",
    "ListPage",
    "ListedShard",
    "PgsPage",
    "ProtocolError",
    "PutResult",
    "ReadCache",
    "Reservation",
    "ShardCorrupt",
    "ShardId",
    "ShardInfo",
    "ShardNotFound",
    "StaleEpoch",
    "StorageClient",
    "StorageConfig",
    "StorageError",
    "StorageService",
    "UnknownDevice",
    "shard_file_name",
    "shard_relative_path",
]
