"""The chunks a region snapshot is shipped in, and their encoding.

Pure: no I/O. Owns `SnapshotChunk`, `cut_chunks` (records in, encoded chunks out)
and `decode_chunk`. Specified in docs/formats/kv.md §5, kept in step with the
constants here. Every chunk is self-describing and checksummed:

    magic u8 | version u8 | flags u8 | reserved u8 | region_id u64 | applied_index u64
    | revision u64 | chunk_index u32 | record_count u32 | body_len u32 | body | crc32c u32

all little-endian; the CRC-32C covers every byte before it. The body is
`record_count` entries `key_len u16 | record_len u32 | user key | key record` in
ascending key order, the key record exactly as stored (§3). Chunks are numbered from
0; the last has FLAG_LAST. Every chunk of one snapshot repeats its region id,
applied index and revision, so a chunk of another snapshot is caught.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from crc32c import crc32c

from atoll.kv.command import KEY_BYTES_MAX, VALUE_BYTES_MAX
from atoll.kv.errors import SnapshotChecksumError, SnapshotError
from atoll.kv.layout import KEY_RECORD_HEADER_BYTES

CHUNK_MAGIC = 0xA9
CHUNK_VERSION = 1
CHUNK_HEADER_BYTES = 40
CHUNK_TRAILER_BYTES = 4  # the crc32c

# Flag bits. A reader rejects a bit it does not know.
FLAG_LAST = 0x01
_FLAGS_KNOWN = FLAG_LAST

# A chunk's body holds records until adding one would pass the sender's chunk_bytes
# (a record larger than that gets a chunk of its own), so no body exceeds this.
CHUNK_BYTES_MAX = 16 * 1024 * 1024
ENTRY_HEADER_BYTES = 6  # key_len u16, record_len u32
RECORD_BYTES_MAX = KEY_RECORD_HEADER_BYTES + VALUE_BYTES_MAX
ENTRY_BYTES_MAX = ENTRY_HEADER_BYTES + KEY_BYTES_MAX + RECORD_BYTES_MAX

_HEADER = struct.Struct("<BBBxQQQIII")
_BODY_SIZE = struct.Struct("<I")
_BODY_SIZE_OFFSET = 36
_ENTRY = struct.Struct("<HI")
_CRC = struct.Struct("<I")


class SnapshotChunk(NamedTuple):
    region_id: int
    applied_index: int
    revision: int
    chunk_index: int
    last: bool
    records: list[tuple[bytes, bytes]]  # (user key, key record), ascending by key


def encode_chunk(chunk: SnapshotChunk) -> bytes:
    parts = [b""]
    for key, record in chunk.records:
        parts += (_ENTRY.pack(len(key), len(record)), key, record)
    body_size = sum(map(len, parts))
    parts[0] = _HEADER.pack(
        CHUNK_MAGIC,
        CHUNK_VERSION,
        FLAG_LAST if chunk.last else 0,
        chunk.region_id,
        chunk.applied_index,
        chunk.revision,
        chunk.chunk_index,
        len(chunk.records),
        body_size,
    )
    data = b"".join(parts)
    return data + _CRC.pack(crc32c(data))


def cut_chunks(
    region_id: int,
    applied_index: int,
    revision: int,
    records: Iterable[tuple[bytes, bytes]],
    chunk_bytes: int,
) -> Iterator[bytes]:
    """Encode `records` (user key, key record; ascending) as chunks whose bodies hold
    at most `chunk_bytes` bytes, or one record if that record alone is larger. Always
    yields at least one chunk; the last carries FLAG_LAST."""
    if type(chunk_bytes) is not int or not 1 <= chunk_bytes <= CHUNK_BYTES_MAX:
        raise ValueError(
            f"chunk_bytes must be an int in [1, {CHUNK_BYTES_MAX}], not {chunk_bytes!r}"
        )
    index = 0
    pending: list[tuple[bytes, bytes]] = []
    pending_bytes = 0
    for key, record in records:
        size = ENTRY_HEADER_BYTES + len(key) + len(record)
        if pending and pending_bytes + size > chunk_bytes:
            yield encode_chunk(
                SnapshotChunk(region_id, applied_index, revision, index, False, pending)
            )
            index += 1
            pending, pending_bytes = [], 0
        pending.append((key, record))
        pending_bytes += size
    yield encode_chunk(SnapshotChunk(region_id, applied_index, revision, index, True, pending))


def decode_chunk(data: bytes | bytearray | memoryview, position: int) -> SnapshotChunk:
    """The chunk in `data`, which arrived `position`-th in its stream (for messages);
    raises `SnapshotError` for anything that is not exactly one valid v1 chunk."""
    data = bytes(data)
    if len(data) < CHUNK_HEADER_BYTES + CHUNK_TRAILER_BYTES:
        raise SnapshotError(f"{len(data)} bytes, shorter than a chunk", chunk_index=position)
    fields = _HEADER.unpack_from(data)
    magic, version, flags, region_id, applied, revision, index, count, body_size = fields
    if magic != CHUNK_MAGIC:
        raise SnapshotError(
            f"magic {magic:#04x}, expected {CHUNK_MAGIC:#04x}", chunk_index=position
        )
    if version != CHUNK_VERSION:
        raise SnapshotError(f"unsupported chunk format version {version}", chunk_index=position)
    if len(data) != CHUNK_HEADER_BYTES + body_size + CHUNK_TRAILER_BYTES:
        raise SnapshotError(
            f"{len(data)} bytes, header says body of {body_size}", chunk_index=position
        )
    (expected,) = _CRC.unpack_from(data, len(data) - CHUNK_TRAILER_BYTES)
    actual = crc32c(memoryview(data)[: len(data) - CHUNK_TRAILER_BYTES])
    if actual != expected:
        raise SnapshotChecksumError(expected=expected, actual=actual, chunk_index=position)
    if flags & ~_FLAGS_KNOWN:
        raise SnapshotError(f"unknown chunk flags {flags:#04x}", chunk_index=position)
    if body_size > CHUNK_BYTES_MAX:
        raise SnapshotError(
            f"body of {body_size} bytes, over {CHUNK_BYTES_MAX}", chunk_index=position
        )
    records = _decode_body(data, count, position)
    return SnapshotChunk(region_id, applied, revision, index, bool(flags & FLAG_LAST), records)


def split_chunks(data: bytes | bytearray | memoryview) -> Iterator[bytes]:
    """The chunks of a stream stored as one byte string (their concatenation), cut at
    the lengths their headers give; each is checked only by `decode_chunk`. A tail too
    short for a header, or shorter than its header says, is yielded as is, so that
    `decode_chunk` reports it."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        size = CHUNK_HEADER_BYTES + CHUNK_TRAILER_BYTES
        if pos + CHUNK_HEADER_BYTES <= len(view):
            (body_size,) = _BODY_SIZE.unpack_from(view, pos + _BODY_SIZE_OFFSET)
            size += body_size
        yield bytes(view[pos : pos + size])
        pos += size


def _decode_body(data: bytes, count: int, position: int) -> list[tuple[bytes, bytes]]:
    end = len(data) - CHUNK_TRAILER_BYTES
    pos = CHUNK_HEADER_BYTES
    records = []
    for _ in range(count):
        if pos + ENTRY_HEADER_BYTES > end:
            raise SnapshotError("truncated record header", chunk_index=position)
        key_size, record_size = _ENTRY.unpack_from(data, pos)
        pos += ENTRY_HEADER_BYTES
        if key_size > KEY_BYTES_MAX or record_size > RECORD_BYTES_MAX:
            raise SnapshotError(
                f"record with key of {key_size} and record of {record_size} bytes over the limits",
                chunk_index=position,
            )
        if pos + key_size + record_size > end:
            raise SnapshotError("truncated record", chunk_index=position)
        key = data[pos : pos + key_size]
        pos += key_size
        records.append((key, data[pos : pos + record_size]))
        pos += record_size
    if pos != end:
        raise SnapshotError(f"{end - pos} bytes after the last record", chunk_index=position)
    return records


__all__ = [
    "CHUNK_BYTES_MAX",
    "CHUNK_MAGIC",
    "CHUNK_VERSION",
    "FLAG_LAST",
    "SnapshotChunk",
    "cut_chunks",
    "decode_chunk",
    "split_chunks",
]
