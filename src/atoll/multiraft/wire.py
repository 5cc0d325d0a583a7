"""The wire form of a batch of Raft messages between two nodes. Pure: no I/O.

Implements proto/atoll/raft.proto and docs/rpc.md §7. A batch is a list of
`(group_id, Message)` pairs. It travels as one atoll.rpc frame: the frame's message is
an `atoll.raft.v1.RaftBatch` holding every field except bulk bytes, and the frame's
raw payload is the entry data and snapshot data, concatenated in message order (for
each message, its entries' data in order, then its snapshot's data). Keeping the
bulk bytes out of protobuf spares a copy on each side: the encoder hands the entry
`bytes` to the transport as they are, and the decoder slices them out of the received
buffer once.

Only messages between nodes are carried: the core's local inputs
(`atoll.raft.types.LOCAL_MESSAGES`, such as HUP) are refused both ways, so a peer
cannot make a node campaign or step down by naming one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from google.protobuf.message import DecodeError

from atoll.multiraft.errors import WireError
from atoll.proto import raft_pb2
from atoll.raft.types import (
    LOCAL_MESSAGES,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

ENTRY_DATA_BYTES_MAX = (1 << 32) - 1  # `Entry.data_len` is a uint32


def encode_batch(items: Sequence[tuple[int, Message]]) -> tuple[bytes, list[bytes]]:
    """The `RaftBatch` bytes for `items` and the payload parts, in order.

    Send the parts as the frame's raw payload without joining them (the transport
    writes large parts as they are). Raises `WireError` for a local message, an id or
    term that does not fit in a u64, or entry data over `ENTRY_DATA_BYTES_MAX`.
    """
    batch = raft_pb2.RaftBatch()
    parts: list[bytes] = []
    for group_id, message in items:
        if message.type in LOCAL_MESSAGES:
            raise WireError(
                f"{message.type.name} is a local message, never sent", group_id=group_id
            )
        try:
            item = batch.messages.add(group_id=group_id)
            _encode_message(item.message, message, parts)
        except (ValueError, TypeError) as err:
            raise WireError(f"cannot encode {message.type.name}: {err}", group_id=group_id) from err
    return batch.SerializeToString(), parts


def _encode_message(out: raft_pb2.Message, message: Message, parts: list[bytes]) -> None:
    out.type = cast(raft_pb2.MessageType, int(message.type))
    out.to = message.to
    out.frm = message.frm
    out.term = message.term
    out.log_term = message.log_term
    out.index = message.index
    out.commit = message.commit
    out.reject = message.reject
    out.reject_hint = message.reject_hint
    out.context = message.context
    for entry in message.entries:
        size = len(entry.data)
        if size > ENTRY_DATA_BYTES_MAX:
            raise ValueError(f"entry {entry.index} has {size} bytes of data, over a uint32")
        out.entries.add(
            term=entry.term,
            index=entry.index,
            type=cast(raft_pb2.EntryType, int(entry.type)),
            data_len=size,
        )
        if size:
            parts.append(entry.data)
    snapshot = message.snapshot
    if snapshot is not None:
        meta = snapshot.meta
        out.snapshot.meta.index = meta.index
        out.snapshot.meta.term = meta.term
        out.snapshot.meta.conf.voters.extend(sorted(meta.conf.voters))
        out.snapshot.meta.conf.learners.extend(sorted(meta.conf.learners))
        out.snapshot.data_len = len(snapshot.data)
        if snapshot.data:
            parts.append(snapshot.data)


def decode_batch(message: bytes, payload: bytes | memoryview) -> list[tuple[int, Message]]:
    """The `(group_id, Message)` pairs of a received batch; entry and snapshot data
    are copied out of `payload` into `bytes` of their own.

    Raises `WireError` if `message` is not a `RaftBatch`, names a local or unknown
    message type or an unknown entry type, lacks a message, or if the data lengths
    do not add up to exactly the payload.
    """
    batch = raft_pb2.RaftBatch()
    try:
        batch.ParseFromString(message)
    except DecodeError as err:
        raise WireError(f"{len(message)} bytes that do not parse: {err}") from err
    data = _Cursor(memoryview(payload).cast("B"))
    out: list[tuple[int, Message]] = []
    for item in batch.messages:
        group_id = item.group_id
        if not item.HasField("message"):
            raise WireError("an item without a message", group_id=group_id)
        out.append((group_id, _decode_message(item.message, data, group_id)))
    if data.remaining:
        raise WireError(f"{data.remaining} payload bytes beyond the data the messages describe")
    return out


class _Cursor:
    """Hands out consecutive slices of the payload as `bytes`."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._at = 0
        self.group_id = 0  # of the message being decoded, for errors

    @property
    def remaining(self) -> int:
        return len(self._view) - self._at

    def take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            raise WireError(
                f"{what} has {size} bytes of data, but the payload has {self.remaining} left",
                group_id=self.group_id,
            )
        start = self._at
        self._at += size
        return bytes(self._view[start : self._at])


def _decode_message(pb: raft_pb2.Message, data: _Cursor, group_id: int) -> Message:
    try:
        kind = MessageType(pb.type)
    except ValueError as err:
        raise WireError(f"unknown message type {pb.type}", group_id=group_id) from err
    if kind in LOCAL_MESSAGES:
        raise WireError(f"{kind.name} is a local message, never sent", group_id=group_id)
    data.group_id = group_id
    entries = tuple(_decode_entry(entry, data) for entry in pb.entries)
    snapshot = None
    if pb.HasField("snapshot"):
        meta = pb.snapshot.meta
        conf = ConfState(frozenset(meta.conf.voters), frozenset(meta.conf.learners))
        snapshot = Snapshot(
            SnapshotMeta(meta.index, meta.term, conf),
            data.take(pb.snapshot.data_len, f"the snapshot at index {meta.index}"),
        )
    return Message(
        type=kind,
        to=pb.to,
        frm=pb.frm,
        term=pb.term,
        log_term=pb.log_term,
        index=pb.index,
        entries=entries,
        commit=pb.commit,
        reject=pb.reject,
        reject_hint=pb.reject_hint,
        snapshot=snapshot,
        context=pb.context,
    )


def _decode_entry(pb: raft_pb2.Entry, data: _Cursor) -> Entry:
    try:
        kind = EntryType(pb.type)
    except ValueError as err:
        raise WireError(
            f"entry {pb.index} has unknown type {pb.type}", group_id=data.group_id
        ) from err
    return Entry(pb.term, pb.index, kind, data.take(pb.data_len, f"entry {pb.index}"))
