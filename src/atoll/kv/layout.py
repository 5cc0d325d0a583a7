"""Where a KV region lives in the local engine, and the records stored there.

Pure: no I/O. Owns the engine key layout of a region (keyspace tags, data keys,
metadata keys, event keys) and the encodings of the records under them: the key
record (a value and its `KeyMeta`), the event record, and the u64 metadata values.
Specified in docs/formats/kv.md §2 (keys), §3 (key record) and §4 (event record).

Integers inside engine keys are big-endian, so that byte order is numeric order;
integers inside values are little-endian, as everywhere else in Atoll's formats.

    0x02 | region_id u64 BE | 0x00 | name                         metadata (u64 LE)
    0x02 | region_id u64 BE | 0x01 | user key                     key record
    0x03 | region_id u64 BE | revision u64 BE | sequence u32 BE   event record

Tag 0x01 belongs to the Raft log store; the KV layer never writes under it.

The engine checksums every block and WAL record it writes, so these records carry a
format version byte but no checksum of their own; a record that does not parse is
reported as `CorruptionError` naming the region and the engine key.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from atoll.base.errors import CorruptionError

# Keyspace tags: the first byte of every engine key. Numbers are permanent.
TAG_RAFT_LOG = 0x01  # reserved for the Raft log store (atoll.multiraft); never written here
TAG_KV_DATA = 0x02
TAG_KV_EVENTS = 0x03

# The byte after the region id in the data keyspace. Numbers are permanent.
SUBSPACE_META = 0x00
SUBSPACE_KEYS = 0x01

# Metadata record names (the bytes after SUBSPACE_META). Values are u64 LE.
META_APPLIED_INDEX = b"applied_index"
META_REVISION = b"revision"
META_COMPACT_REVISION = b"compact_revision"
META_RESTORE_PENDING = b"restore_pending"

KEY_RECORD_VERSION = 1
EVENT_RECORD_VERSION = 1
KEY_RECORD_HEADER_BYTES = 25  # version u8, create_revision u64, mod_revision u64, version u64

REGION_ID_MAX = 2**64 - 1
SEQUENCE_MAX = 2**32 - 1

_REGION = struct.Struct(">Q")
_EVENT_KEY_SUFFIX = struct.Struct(">QI")
_KEY_RECORD_HEADER = struct.Struct("<BQQQ")
_EVENT_HEADER = struct.Struct("<BBH")
_EVENT_PUT_FIELDS = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")


class KeyMeta(NamedTuple):
    """What the region knows about a key besides its value (etcd's mvccpb.KeyValue).

    `create_revision`: the revision that created the key (since its last delete).
    `mod_revision`: the revision that last changed it. `version`: the number of puts
    since creation (1 after the first). Revisions are Raft log indexes.
    """

    create_revision: int
    mod_revision: int
    version: int


class KeyValue(NamedTuple):
    key: bytes
    value: bytes
    meta: KeyMeta


class EventKind(enum.IntEnum):
    """Numbers are permanent."""

    PUT = 1
    DELETE = 2


class Event(NamedTuple):
    """One change, at `(revision, sequence)`: the `sequence`-th change made by the log
    entry at index `revision`. A PUT carries the new value and meta; a DELETE carries
    an empty value and `KeyMeta(0, revision, 0)` (as etcd's delete events do)."""

    revision: int
    sequence: int
    kind: EventKind
    key: bytes
    value: bytes
    meta: KeyMeta


def prefix_end(prefix: bytes) -> bytes | None:
    """The least key greater than every key that starts with `prefix`; None when there
    is none (`prefix` is empty or all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class RegionKeys:
    """The engine keys of one region. Built once per state machine."""

    __slots__ = (
        "data_end",
        "data_start",
        "event_end",
        "event_start",
        "keys_end",
        "keys_prefix",
        "meta_prefix",
        "region_id",
    )

    def __init__(self, region_id: int) -> None:
        if type(region_id) is not int or not 0 < region_id <= REGION_ID_MAX:
            raise ValueError(f"region id must be an int in [1, 2**64), not {region_id!r}")
        self.region_id = region_id
        self.data_start = bytes([TAG_KV_DATA]) + _REGION.pack(region_id)
        self.data_end = _end_of(self.data_start)
        self.meta_prefix = self.data_start + bytes([SUBSPACE_META])
        self.keys_prefix = self.data_start + bytes([SUBSPACE_KEYS])
        self.keys_end = self.data_start + bytes([SUBSPACE_KEYS + 1])
        self.event_start = bytes([TAG_KV_EVENTS]) + _REGION.pack(region_id)
        self.event_end = _end_of(self.event_start)

    def meta_key(self, name: bytes) -> bytes:
        return self.meta_prefix + name

    def data_key(self, user_key: bytes) -> bytes:
        return self.keys_prefix + user_key

    def user_key(self, data_key: bytes) -> bytes:
        return data_key[len(self.keys_prefix) :]

    def data_range(self, start: bytes, end: bytes | None) -> tuple[bytes, bytes]:
        """Engine bounds `[lo, hi)` of the user keys in `[start, end)`."""
        return self.data_key(start), self.keys_end if end is None else self.data_key(end)

    def event_key(self, revision: int, sequence: int) -> bytes:
        return self.event_start + _EVENT_KEY_SUFFIX.pack(revision, sequence)

    def parse_event_key(self, key: bytes) -> tuple[int, int]:
        if len(key) != len(self.event_start) + _EVENT_KEY_SUFFIX.size or not key.startswith(
            self.event_start
        ):
            raise self.corrupt("malformed event key", key)
        revision, sequence = _EVENT_KEY_SUFFIX.unpack_from(key, len(self.event_start))
        return revision, sequence

    def corrupt(self, what: str, key: bytes) -> CorruptionError:
        return CorruptionError(what, file=f"kv region {self.region_id} engine key {key.hex()}")


def _end_of(prefix: bytes) -> bytes:
    end = prefix_end(prefix)
    if end is None:  # a tag byte below 0xff always has a successor
        raise ValueError(f"prefix {prefix.hex()} has no successor")
    return end


# -------------------------------------------------------------------- key records


def encode_key_record(value: bytes, meta: KeyMeta) -> bytes:
    """docs/formats/kv.md §3: version u8 | create u64 | mod u64 | version u64 | value."""
    return (
        _KEY_RECORD_HEADER.pack(
            KEY_RECORD_VERSION, meta.create_revision, meta.mod_revision, meta.version
        )
        + value
    )


def decode_key_record(record: bytes) -> tuple[bytes, KeyMeta] | None:
    """The value and meta of a key record; None if `record` is not a valid v1 record
    (the caller knows where it came from and reports it)."""
    if len(record) < KEY_RECORD_HEADER_BYTES or record[0] != KEY_RECORD_VERSION:
        return None
    _, create, mod, version = _KEY_RECORD_HEADER.unpack_from(record)
    if not 0 < create <= mod or version < 1:
        return None
    return record[KEY_RECORD_HEADER_BYTES:], KeyMeta(create, mod, version)


# ------------------------------------------------------------------ event records


def encode_event_record(kind: EventKind, key: bytes, value: bytes, meta: KeyMeta) -> bytes:
    """docs/formats/kv.md §4. The revision and sequence are in the engine key."""
    head = _EVENT_HEADER.pack(EVENT_RECORD_VERSION, kind, len(key)) + key
    if kind is EventKind.DELETE:
        return head
    return head + _EVENT_PUT_FIELDS.pack(meta.create_revision, meta.version) + value


def decode_event_record(revision: int, sequence: int, record: bytes) -> Event | None:
    """The event stored at `(revision, sequence)`; None if `record` is not valid v1."""
    if len(record) < _EVENT_HEADER.size:
        return None
    version, kind, key_size = _EVENT_HEADER.unpack_from(record)
    key_end = _EVENT_HEADER.size + key_size
    if version != EVENT_RECORD_VERSION or len(record) < key_end:
        return None
    key = record[_EVENT_HEADER.size : key_end]
    if kind == EventKind.DELETE and len(record) == key_end:
        return Event(revision, sequence, EventKind.DELETE, key, b"", KeyMeta(0, revision, 0))
    if kind != EventKind.PUT or len(record) < key_end + _EVENT_PUT_FIELDS.size:
        return None
    create, version = _EVENT_PUT_FIELDS.unpack_from(record, key_end)
    value = record[key_end + _EVENT_PUT_FIELDS.size :]
    return Event(revision, sequence, EventKind.PUT, key, value, KeyMeta(create, revision, version))


# --------------------------------------------------------------- metadata values


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(record: bytes) -> int | None:
    if len(record) != _U64.size:
        return None
    value: int = _U64.unpack(record)[0]
    return value


__all__ = [
    "KEY_RECORD_HEADER_BYTES",
    "TAG_KV_DATA",
    "TAG_KV_EVENTS",
    "TAG_RAFT_LOG",
    "Event",
    "EventKind",
    "KeyMeta",
    "KeyValue",
    "RegionKeys",
    "decode_event_record",
    "decode_key_record",
    "encode_event_record",
    "encode_key_record",
    "prefix_end",
]
