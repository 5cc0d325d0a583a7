"""Keys and values of the Raft log store, version 1. Pure: no I/O.

Implements docs/formats/raft_log.md. Owns the byte layout of every record that
`atoll.multiraft.log_store.LogStore` keeps in the engine:

- keys: keyspace tag, key-layout version, group id, record kind and (for entries) the
  entry index, all big-endian so that a group's records sort together and its
  entries scan in index order;
- values: a format version byte, the body, and a CRC-32C over the key and everything
  before the CRC, so that a flipped byte and a value stored under the wrong key are
  both caught.

Decoders check the version, the CRC and the structure, and raise
`atoll.multiraft.errors.LogCorruption` naming the key and, for a CRC mismatch, the
expected and actual CRC.
"""

from __future__ import annotations

import enum
import itertools
import struct

import crc32c

from atoll.base.errors import invariant
from atoll.multiraft.errors import LogCorruption
from atoll.raft.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta

KEYSPACE_RAFT_LOG = 0x01
"""First byte of every key of this store. Other users of the engine take other tags."""

KEY_LAYOUT_VERSION = 0x01
"""Second byte of every key. A new key layout takes a new number, so that both can be
read side by side while a store is rewritten."""

VALUE_FORMAT_VERSION = 0x01
"""First byte of every value."""

U64_MAX = (1 << 64) - 1


class RecordKind(enum.IntEnum):
    """Byte 10 of a key. The numbers are permanent (they order a group's records)."""

    HARD_STATE = 0x01
    LOG_BASE = 0x02
    SNAPSHOT = 0x03
    ENTRY = 0x04


PREFIX = bytes([KEYSPACE_RAFT_LOG, KEY_LAYOUT_VERSION])
PREFIX_END = bytes([KEYSPACE_RAFT_LOG, KEY_LAYOUT_VERSION + 1])
"""Every key of this store (this key layout) lies in `[PREFIX, PREFIX_END)`."""

GROUP_PREFIX_BYTES = len(PREFIX) + 8
RECORD_KEY_BYTES = GROUP_PREFIX_BYTES + 1
ENTRY_KEY_BYTES = RECORD_KEY_BYTES + 8

VERSION_BYTES = 1
CRC_BYTES = 4
VALUE_OVERHEAD_BYTES = VERSION_BYTES + CRC_BYTES

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_ENTRY_HEAD = struct.Struct(">QB")  # term, type
_HARD_STATE = struct.Struct(">QQQ")  # term, vote, commit
_META_HEAD = struct.Struct(">QQ")  # index, term


# -- keys ------------------------------------------------------------------------


def _check_u64(name: str, value: int) -> None:
    invariant(0 <= value <= U64_MAX, f"{name} {value} does not fit in a u64")


def group_prefix(group_id: int) -> bytes:
    """The first `GROUP_PREFIX_BYTES` of every key of `group_id`."""
    _check_u64("group id", group_id)
    return PREFIX + _U64.pack(group_id)


def group_end(group_id: int) -> bytes:
    """The exclusive end of `group_id`'s key range."""
    return group_prefix(group_id + 1) if group_id < U64_MAX else PREFIX_END


def record_key(group_id: int, kind: RecordKind) -> bytes:
    """The key of one of `group_id`'s single records (not an entry)."""
    return group_prefix(group_id) + bytes([kind])


def entry_key(group_id: int, index: int) -> bytes:
    _check_u64("entry index", index)
    return group_prefix(group_id) + bytes([RecordKind.ENTRY]) + _U64.pack(index)


def entries_start(group_id: int) -> bytes:
    """The inclusive start of `group_id`'s entry keys (sorts before entry 0)."""
    return record_key(group_id, RecordKind.ENTRY)


def entries_end(group_id: int) -> bytes:
    """The exclusive end of `group_id`'s entry keys."""
    return group_prefix(group_id) + bytes([RecordKind.ENTRY + 1])


def entry_range_end(group_id: int, index: int) -> bytes:
    """The exclusive end of the entry keys at index <= `index`."""
    return entry_key(group_id, index + 1) if index < U64_MAX else entries_end(group_id)


def group_of(key: bytes) -> int:
    """The group id of a key in `[PREFIX, PREFIX_END)`; -1 if it is too short to hold
    one (such a key is corrupt; the caller reports it)."""
    if len(key) < GROUP_PREFIX_BYTES:
        return -1
    group_id: int = _U64.unpack_from(key, len(PREFIX))[0]
    return group_id


def index_of(key: bytes) -> int:
    """The entry index of an entry key (checked by the caller to be one)."""
    if len(key) != ENTRY_KEY_BYTES or key[RECORD_KEY_BYTES - 1] != RecordKind.ENTRY:
        raise LogCorruption(
            f"malformed entry key ({len(key)} bytes)", group_id=group_of(key), key=key
        )
    index: int = _U64.unpack_from(key, RECORD_KEY_BYTES)[0]
    return index


# -- value framing -------------------------------------------------------------------


def _seal(key: bytes, body: bytes) -> bytes:
    head = bytes([VALUE_FORMAT_VERSION]) + body
    return head + _U32.pack(crc32c.crc32c(head, crc32c.crc32c(key)))


def _unseal(key: bytes, value: bytes) -> bytes:
    """The body of `value` stored under `key`, after the version and CRC checks."""
    if len(value) < VALUE_OVERHEAD_BYTES:
        raise LogCorruption(
            f"value of {len(value)} bytes is shorter than the {VALUE_OVERHEAD_BYTES}-byte "
            "version and CRC",
            group_id=group_of(key),
            key=key,
        )
    if value[0] != VALUE_FORMAT_VERSION:
        raise LogCorruption(
            f"unknown value format version {value[0]} (this code reads "
            f"{VALUE_FORMAT_VERSION}): corrupt, or written by newer code",
            group_id=group_of(key),
            key=key,
        )
    expected: int = _U32.unpack_from(value, len(value) - CRC_BYTES)[0]
    actual = crc32c.crc32c(memoryview(value)[: len(value) - CRC_BYTES], crc32c.crc32c(key))
    if actual != expected:
        raise LogCorruption(
            "value CRC-32C mismatch",
            group_id=group_of(key),
            key=key,
            expected=expected,
            actual=actual,
        )
    return value[VERSION_BYTES : len(value) - CRC_BYTES]


def _malformed(key: bytes, what: str, body: bytes) -> LogCorruption:
    return LogCorruption(
        f"malformed {what} body ({len(body)} bytes)", group_id=group_of(key), key=key
    )


# -- entries ---------------------------------------------------------------------


def encode_entry(group_id: int, entry: Entry) -> tuple[bytes, bytes]:
    """The key and value that store `entry` of `group_id`."""
    _check_u64("entry term", entry.term)
    key = entry_key(group_id, entry.index)
    return key, _seal(key, _ENTRY_HEAD.pack(entry.term, entry.type) + entry.data)


def decode_entry(key: bytes, value: bytes) -> Entry:
    index = index_of(key)
    body = _unseal(key, value)
    if len(body) < _ENTRY_HEAD.size:
        raise _malformed(key, "entry", body)
    term, type_code = _ENTRY_HEAD.unpack_from(body)
    try:
        entry_type = EntryType(type_code)
    except ValueError as err:
        raise LogCorruption(
            f"entry {index} has unknown type {type_code}", group_id=group_of(key), key=key
        ) from err
    return Entry(term=term, index=index, type=entry_type, data=body[_ENTRY_HEAD.size :])


# -- hard state ------------------------------------------------------------------


def encode_hard_state(group_id: int, hard_state: HardState) -> tuple[bytes, bytes]:
    for name in ("term", "vote", "commit"):
        _check_u64(f"hard state {name}", getattr(hard_state, name))
    key = record_key(group_id, RecordKind.HARD_STATE)
    body = _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit)
    return key, _seal(key, body)


def decode_hard_state(key: bytes, value: bytes) -> HardState:
    body = _unseal(key, value)
    if len(body) != _HARD_STATE.size:
        raise _malformed(key, "hard state", body)
    term, vote, commit = _HARD_STATE.unpack(body)
    return HardState(term=term, vote=vote, commit=commit)


# -- snapshot metadata, log base, snapshot -----------------------------------------


def _encode_ids(ids: frozenset[int]) -> bytes:
    ordered = sorted(ids)
    for node_id in ordered:
        _check_u64("node id", node_id)
    return _U32.pack(len(ordered)) + b"".join(_U64.pack(n) for n in ordered)


def _encode_meta(meta: SnapshotMeta) -> bytes:
    _check_u64("snapshot index", meta.index)
    _check_u64("snapshot term", meta.term)
    return (
        _META_HEAD.pack(meta.index, meta.term)
        + _encode_ids(meta.conf.voters)
        + _encode_ids(meta.conf.learners)
    )


def _decode_ids(key: bytes, body: bytes, offset: int) -> tuple[frozenset[int], int]:
    if len(body) < offset + _U32.size:
        raise _malformed(key, "snapshot metadata", body)
    (count,) = _U32.unpack_from(body, offset)
    offset += _U32.size
    end = offset + count * _U64.size
    if len(body) < end:
        raise _malformed(key, "snapshot metadata", body)
    ids = [_U64.unpack_from(body, at)[0] for at in range(offset, end, _U64.size)]
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise LogCorruption(
            "node ids of snapshot metadata are not strictly ascending",
            group_id=group_of(key),
            key=key,
        )
    return frozenset(ids), end


def _decode_meta(key: bytes, body: bytes) -> tuple[SnapshotMeta, int]:
    """The metadata at the start of `body` and the offset just after it."""
    if len(body) < _META_HEAD.size:
        raise _malformed(key, "snapshot metadata", body)
    index, term = _META_HEAD.unpack_from(body)
    voters, offset = _decode_ids(key, body, _META_HEAD.size)
    learners, offset = _decode_ids(key, body, offset)
    return SnapshotMeta(index=index, term=term, conf=ConfState(voters, learners)), offset


def encode_log_base(group_id: int, meta: SnapshotMeta) -> tuple[bytes, bytes]:
    """The record saying that `group_id`'s log starts after `meta.index`."""
    key = record_key(group_id, RecordKind.LOG_BASE)
    return key, _seal(key, _encode_meta(meta))


def decode_log_base(key: bytes, value: bytes) -> SnapshotMeta:
    body = _unseal(key, value)
    meta, end = _decode_meta(key, body)
    if end != len(body):
        raise _malformed(key, "log base", body)
    return meta


def encode_snapshot(group_id: int, snapshot: Snapshot) -> tuple[bytes, bytes]:
    key = record_key(group_id, RecordKind.SNAPSHOT)
    return key, _seal(key, _encode_meta(snapshot.meta) + snapshot.data)


def decode_snapshot(key: bytes, value: bytes) -> Snapshot:
    body = _unseal(key, value)
    meta, end = _decode_meta(key, body)
    return Snapshot(meta=meta, data=body[end:])
