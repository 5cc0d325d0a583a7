"""The storage service's protobuf messages (proto/atoll/storage.proto) to and from plain
dataclasses, and errors to and from their wire form (docs/formats/storage.md §4-§5).
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from atoll.erasure.shard_format import ShardHeader
from atoll.proto import storage_pb2
from atoll.rpc import HandlerError
from atoll.storage.errors import (
    ERROR_TYPES,
    DeviceFull,
    InvalidArgument,
    ShardCorrupt,
    StaleEpoch,
    StorageError,
)
from atoll.storage.layout import ShardId

M = TypeVar("M", bound=Message)

ERROR_MESSAGE_CHARS_MAX = 1024
"""Longest message text in an `ErrorDetail` (the whole detail must fit the 4 KiB an
atoll.rpc error frame allows)."""


class ReadCache(enum.IntEnum):
    """What a `get_shard` does with the node's page cache (proto `ReadCache`):

    - `KEEP`: read through it; the pages stay (a GET, which may come again).
    - `DROP`: read through it, then drop the file's pages (the read-back of a shard
      just rebuilt: checked once, read again only if a GET comes for it).
    - `BYPASS`: drop them before the read too, so every byte comes from the device
      (scrub: it checks what the disk holds, not what a cache kept)."""

    KEEP = storage_pb2.READ_CACHE_KEEP
    DROP = storage_pb2.READ_CACHE_DROP
    BYPASS = storage_pb2.READ_CACHE_BYPASS


@dataclasses.dataclass(frozen=True, slots=True)
class ShardInfo:
    """What a stored shard file holds (`storage.stat_shard`, listings, put replies)."""

    shard: ShardId
    k: int
    m: int
    block_size: int
    data_length: int
    shard_bytes: int
    file_bytes: int
    file_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class ListedShard:
    file_name: str
    info: ShardInfo | None
    error: str
    """Empty, or why the file could not be read as a shard file."""


@dataclasses.dataclass(frozen=True, slots=True)
class ListPage:
    shards: list[ListedShard]
    next_start_after: str
    """The `start_after` of the next page; empty when the listing is complete."""


@dataclasses.dataclass(frozen=True, slots=True)
class PgsPage:
    """One page of `storage.list_pgs`."""

    pgs: list[tuple[int, list[ListedShard]]]
    """(index into the request's PGs, its files in this page), for the PGs with files."""
    next_index: int
    """The `start_index` of the next page; the number of PGs asked for when complete."""
    next_start_after: str


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: int
    path: str
    capacity_bytes: int
    used_bytes: int
    reserved_bytes: int
    shard_files: int
    failed: bool
    failure: str


def parse(cls: type[M], data: bytes, what: str) -> M:
    """`data` as a `cls` message; `InvalidArgument` if it does not parse."""
    try:
        return cls.FromString(data)
    except DecodeError as err:
        raise InvalidArgument(f"{what}: not a {cls.__name__}: {err}") from err


# -- shard ids and infos ---------------------------------------------------------------------


def shard_id_to_proto(shard: ShardId) -> storage_pb2.ShardId:
    return storage_pb2.ShardId(
        pool_id=shard.pool_id,
        pg=shard.pg,
        bucket=shard.bucket,
        key=shard.key,
        version_id=shard.version_id,
        part_number=shard.part_number,
        shard_index=shard.shard_index,
    )


def shard_id_from_proto(pb: storage_pb2.ShardId) -> ShardId:
    return ShardId(
        pb.pool_id, pb.pg, pb.bucket, pb.key, pb.version_id, pb.part_number, pb.shard_index
    )


def shard_info(pool_id: int, pg: int, header: ShardHeader, file_bytes: int, name: str) -> ShardInfo:
    return ShardInfo(
        shard=ShardId(pool_id, pg, *header.identity),
        k=header.k,
        m=header.m,
        block_size=header.block_size,
        data_length=header.data_length,
        shard_bytes=header.layout.shard_data_bytes(header.data_length),
        file_bytes=file_bytes,
        file_name=name,
    )


def info_to_proto(info: ShardInfo) -> storage_pb2.ShardInfo:
    return storage_pb2.ShardInfo(
        shard=shard_id_to_proto(info.shard),
        k=info.k,
        m=info.m,
        block_size=info.block_size,
        data_length=info.data_length,
        shard_bytes=info.shard_bytes,
        file_bytes=info.file_bytes,
        file_name=info.file_name,
    )


def info_from_proto(pb: storage_pb2.ShardInfo) -> ShardInfo:
    return ShardInfo(
        shard=shard_id_from_proto(pb.shard),
        k=pb.k,
        m=pb.m,
        block_size=pb.block_size,
        data_length=pb.data_length,
        shard_bytes=pb.shard_bytes,
        file_bytes=pb.file_bytes,
        file_name=pb.file_name,
    )


def _listed_from_proto(pb: Iterable[storage_pb2.ListedShard]) -> list[ListedShard]:
    return [
        ListedShard(s.file_name, info_from_proto(s.info) if s.HasField("info") else None, s.error)
        for s in pb
    ]


def list_page_from_proto(pb: storage_pb2.ListPgReply) -> ListPage:
    return ListPage(_listed_from_proto(pb.shards), pb.next_start_after)


def pgs_page_from_proto(pb: storage_pb2.ListPgsReply) -> PgsPage:
    return PgsPage(
        [(p.index, _listed_from_proto(p.shards)) for p in pb.pgs],
        pb.next_index,
        pb.next_start_after,
    )


def device_info_to_proto(info: DeviceInfo) -> storage_pb2.DeviceInfo:
    return storage_pb2.DeviceInfo(**dataclasses.asdict(info))


def device_info_from_proto(pb: storage_pb2.DeviceInfo) -> DeviceInfo:
    return DeviceInfo(
        device_id=pb.device_id,
        path=pb.path,
        capacity_bytes=pb.capacity_bytes,
        used_bytes=pb.used_bytes,
        reserved_bytes=pb.reserved_bytes,
        shard_files=pb.shard_files,
        failed=pb.failed,
        failure=pb.failure,
    )


# -- errors ----------------------------------------------------------------------------------


def error_detail(err: StorageError) -> storage_pb2.ErrorDetail:
    detail = storage_pb2.ErrorDetail(message=err.message[:ERROR_MESSAGE_CHARS_MAX])
    if err.device_id is not None:
        detail.device_id = err.device_id
    if isinstance(err, StaleEpoch):
        detail.epoch = err.epoch
    elif isinstance(err, DeviceFull):
        detail.needed_bytes = err.needed_bytes
        detail.free_bytes = err.free_bytes
    elif isinstance(err, ShardCorrupt):
        detail.file = err.file[:ERROR_MESSAGE_CHARS_MAX]
        for field, value in (
            ("block", err.block),
            ("offset", err.offset),
            ("expected_crc32c", err.expected),
            ("actual_crc32c", err.actual),
        ):
            if value is not None:
                setattr(detail, field, value)
    return detail


def handler_error(err: StorageError) -> HandlerError:
    """The atoll.rpc application error the service answers `err` with."""
    return HandlerError(err.code, error_detail(err).SerializeToString())


def error_from_wire(code: str, detail: bytes) -> StorageError | None:
    """The error an application error frame stands for; None for a code this service
    does not send (a transport error, which the caller re-raises as it is)."""
    cls = ERROR_TYPES.get(code)
    if cls is None:
        return None
    try:
        pb = storage_pb2.ErrorDetail.FromString(detail)
    except DecodeError:
        pb = storage_pb2.ErrorDetail(message=detail.decode("utf-8", "replace"))
    device_id = pb.device_id if pb.HasField("device_id") else None
    message = f"remote: {pb.message}"
    if cls is StaleEpoch:
        return StaleEpoch(message, epoch=pb.epoch, device_id=device_id)
    if cls is DeviceFull:
        return DeviceFull(
            message, needed_bytes=pb.needed_bytes, free_bytes=pb.free_bytes, device_id=device_id
        )
    if cls is ShardCorrupt:
        return ShardCorrupt(
            message,
            file=pb.file,
            block=pb.block if pb.HasField("block") else None,
            offset=pb.offset if pb.HasField("offset") else None,
            expected=pb.expected_crc32c if pb.HasField("expected_crc32c") else None,
            actual=pb.actual_crc32c if pb.HasField("actual_crc32c") else None,
            device_id=device_id,
        )
    return cls(message, device_id=device_id)
