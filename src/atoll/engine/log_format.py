"""Record framing shared by WAL segments and the MANIFEST (docs/formats.md §1). Pure.

A log file is a 16-byte file header followed by records:

    file header: magic (8) | version u8 | file kind u8 | reserved (6, zero)
    record:      length u32 LE | crc32c u32 LE | payload (length bytes)

The CRC covers the 4 length bytes and the payload. A reader tells a torn tail (an
incomplete or garbled end of the newest file: normal after a crash) from corruption
(a bad record in a sealed file, or one followed by any valid record: never normal) and
reports the latter as `CorruptionError` with the file and offset.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from crc32c import crc32c

from atoll.base.errors import CorruptionError

WAL_MAGIC = b"ATOLLWAL"
MANIFEST_MAGIC = b"ATOLLMAN"
LOG_FORMAT_VERSION = 1
FILE_KIND_WAL = 1
FILE_KIND_MANIFEST = 2
FILE_HEADER_SIZE = 16
RECORD_HEADER_SIZE = 8
# A single record may not exceed this (the engine refuses larger write batches); it
# bounds what a garbled length field can make a reader allocate.
MAX_RECORD_BYTES = 1 << 30

_HEADER = struct.Struct("<8sBB6x")
_REC = struct.Struct("<II")


def file_header(magic: bytes, kind: int) -> bytes:
    return _HEADER.pack(magic, LOG_FORMAT_VERSION, kind)


def frame(payload: bytes) -> bytes:
    """One record: length, CRC over (length bytes + payload), payload."""
    length = len(payload).to_bytes(4, "little")
    crc = crc32c(payload, crc32c(length))
    return length + crc.to_bytes(4, "little") + payload


@dataclass(frozen=True)
class LogContents:
    records: list[bytes]
    valid_end: int  # offset just past the last good record
    torn_tail: bool  # bytes after valid_end were dropped as an incomplete tail


def check_file_header(data: bytes, magic: bytes, kind: int, path: str) -> None:
    if len(data) < FILE_HEADER_SIZE:
        raise CorruptionError("log file shorter than its header", file=path, offset=0)
    got_magic, version, got_kind = _HEADER.unpack_from(data, 0)
    if got_magic != magic or got_kind != kind:
        raise CorruptionError(f"bad log file magic {got_magic!r}", file=path, offset=0)
    if version != LOG_FORMAT_VERSION:
        raise CorruptionError(f"unsupported log format version {version}", file=path, offset=8)


def _record_at(data: bytes, offset: int) -> tuple[bytes | None, int]:
    """(payload or None if torn/garbled, declared end offset) of the record at `offset`."""
    size = len(data)
    if offset + RECORD_HEADER_SIZE > size:
        return None, size
    length, crc = _REC.unpack_from(data, offset)
    end = offset + RECORD_HEADER_SIZE + length
    if length == 0 or length > MAX_RECORD_BYTES or end > size:
        return None, end
    payload = data[offset + RECORD_HEADER_SIZE : end]
    if crc32c(payload, crc32c(data[offset : offset + 4])) != crc:
        return None, end
    return payload, end


def parse_log(
    data: bytes,
    magic: bytes,
    kind: int,
    path: str,
    *,
    tail_may_tear: bool = True,
    only_incomplete_tail: bool = False,
) -> LogContents:
    """Split a whole log file into record payloads.

    A bad record (short header, zero or past-the-end length, CRC mismatch) ends the
    log as a torn tail only if `tail_may_tear` (the file is the newest WAL segment or
    the MANIFEST, which a crash can leave half-written) and no valid record can be
    found anywhere after it; otherwise it is corruption. With `only_incomplete_tail`
    (the MANIFEST, whose every edit is fsynced before anything relies on it) a tail
    record that is complete but fails its CRC is corruption too: dropping it would
    forget tables that hold acknowledged data. A file cut inside its header (a crash
    right after creation) is an empty log.
    """
    if len(data) < FILE_HEADER_SIZE:
        if data and not tail_may_tear:
            raise CorruptionError("log file shorter than its header", file=path, offset=0)
        return LogContents([], 0, bool(data))
    check_file_header(data, magic, kind, path)
    records: list[bytes] = []
    offset = FILE_HEADER_SIZE
    size = len(data)
    while offset < size:
        payload, end = _record_at(data, offset)
        if payload is None:
            incomplete = end > size or offset + RECORD_HEADER_SIZE > size or end == offset + 8
            if tail_may_tear and only_incomplete_tail and not incomplete:
                message = "complete record with a bad checksum at the end of a fsynced log"
            elif tail_may_tear:
                later = _find_valid_record(data, offset + 1)
                if later is None:
                    return LogContents(records, offset, True)
                message = f"corrupt log record before a valid record at offset {later}"
            else:
                message = "corrupt record in a sealed log file"
            raise CorruptionError(message, file=path, offset=offset, **_crc_fields(data, offset))
        records.append(payload)
        offset = end
    return LogContents(records, offset, False)


# Bytes a resync scan may hash before it gives up and reports corruption rather than
# guess that the damage is a torn tail.
RESYNC_BUDGET_BYTES = 256 << 20
_NONZERO = re.compile(rb"[^\x00]")


def _find_valid_record(data: bytes, start: int) -> int | None:
    """Offset of the first well-formed record starting at or after `start` (None if
    none). Runs of zero bytes, as a preallocated or unwritten tail holds, are skipped."""
    size = len(data)
    budget = RESYNC_BUDGET_BYTES
    pos = start
    while pos + RECORD_HEADER_SIZE < size:
        length = int.from_bytes(data[pos : pos + 4], "little")
        if length == 0:
            match = _NONZERO.search(data, pos)
            if match is None:
                return None
            pos = max(pos + 1, match.start() - 3)
            continue
        if length <= size - pos - RECORD_HEADER_SIZE:
            budget -= length
            if budget < 0:
                return pos  # cannot rule out a valid record: assume the worst
            payload, _ = _record_at(data, pos)
            if payload is not None:
                return pos
        pos += 1
    return None


def _crc_fields(data: bytes, offset: int) -> dict[str, int]:
    if offset + RECORD_HEADER_SIZE > len(data):
        return {}
    length, crc = _REC.unpack_from(data, offset)
    end = min(len(data), offset + RECORD_HEADER_SIZE + length)
    actual = crc32c(data[offset + RECORD_HEADER_SIZE : end], crc32c(data[offset : offset + 4]))
    return {"expected": crc, "actual": actual}
