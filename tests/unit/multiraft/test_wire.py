"""The Raft batch codec (atoll.multiraft.wire): round trips, payload layout, and
typed errors for malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.multiraft.errors import WireError
from atoll.multiraft.wire import decode_batch, encode_batch
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

U64 = st.integers(0, 2**64 - 1)
NODE = st.integers(0, 2**64 - 1)
REMOTE_TYPES = sorted(set(MessageType) - LOCAL_MESSAGES)

entries = st.builds(
    Entry,
    term=U64,
    index=U64,
    type=st.sampled_from(EntryType),
    data=st.binary(max_size=64),
)
conf_states = st.builds(
    ConfState,
    voters=st.frozensets(NODE, max_size=5),
    learners=st.frozensets(NODE, max_size=3),
)
snapshots = st.builds(
    Snapshot,
    meta=st.builds(SnapshotMeta, index=U64, term=U64, conf=conf_states),
    data=st.binary(max_size=200),
)
messages = st.builds(
    Message,
    type=st.sampled_from(REMOTE_TYPES),
    to=NODE,
    frm=NODE,
    term=U64,
    log_term=U64,
    index=U64,
    entries=st.lists(entries, max_size=5).map(tuple),
    commit=U64,
    reject=st.booleans(),
    reject_hint=U64,
    snapshot=st.none() | snapshots,
    context=st.binary(max_size=16),
)
batches = st.lists(st.tuples(U64, messages), max_size=6)


@settings(max_examples=200, deadline=None)
@given(items=batches)
def test_round_trip(items: list[tuple[int, Message]]) -> None:
    message, parts = encode_batch(items)
    decoded = decode_batch(message, b"".join(parts))
    assert decoded == items
    for _, got in decoded:
        assert type(got.type) is MessageType
        assert all(type(e.data) is bytes and type(e.type) is EntryType for e in got.entries)
        if got.snapshot is not None:
            assert type(got.snapshot.data) is bytes


@settings(max_examples=50, deadline=None)
@given(items=batches)
def test_payload_is_the_data_in_message_order(items: list[tuple[int, Message]]) -> None:
    _, parts = encode_batch(items)
    expected = [
        data
        for _, m in items
        for data in [
            *(e.data for e in m.entries),
            m.snapshot.data if m.snapshot is not None else b"",
        ]
        if data
    ]
    assert parts == expected
    assert all(type(part) is bytes for part in parts)


def test_entry_data_is_not_copied_into_the_parts_or_the_protobuf() -> None:
    data = b"x" * 100_000
    message, parts = encode_batch(
        [(7, Message(MessageType.APP, to=2, frm=1, entries=(Entry(1, 1, data=data),)))]
    )
    assert parts[0] is data
    assert len(message) < 100


def test_decodes_from_a_memoryview_payload() -> None:
    items = [(1, Message(MessageType.APP, entries=(Entry(1, 1, data=b"abc"),)))]
    message, parts = encode_batch(items)
    buffer = bytearray(b"".join(parts))
    decoded = decode_batch(message, memoryview(buffer).toreadonly())
    buffer[0] = ord("z")  # decoded data owns its bytes
    assert decoded == items


def test_empty_batch() -> None:
    assert encode_batch([]) == (b"", [])
    assert decode_batch(b"", b"") == []


def _batch(*items: tuple[int, raft_pb2.Message]) -> bytes:
    batch = raft_pb2.RaftBatch()
    for group_id, message in items:
        batch.messages.add(group_id=group_id).message.CopyFrom(message)
    return batch.SerializeToString()


def test_garbage_message_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="do not parse") as info:
        decode_batch(b"\xff\xff\xff", b"")
    assert isinstance(info.value, ValueError)


def test_item_without_message() -> None:
    batch = raft_pb2.RaftBatch()
    batch.messages.add(group_id=9)
    with pytest.raises(WireError, match="group 9: an item without a message"):
        decode_batch(batch.SerializeToString(), b"")


@pytest.mark.parametrize(
    ("pb", "match"),
    [
        (raft_pb2.Message(type=99), "unknown message type 99"),  # type: ignore[arg-type]
        (raft_pb2.Message(type=raft_pb2.MESSAGE_TYPE_HUP), "HUP is a local message"),
        (
            raft_pb2.Message(
                type=raft_pb2.MESSAGE_TYPE_APP,
                entries=[raft_pb2.Entry(index=4, type=7)],  # type: ignore[arg-type]
            ),
            "entry 4 has unknown type 7",
        ),
    ],
)
def test_bad_types_are_wire_errors(pb: raft_pb2.Message, match: str) -> None:
    with pytest.raises(WireError, match=f"group 3: {match}") as info:
        decode_batch(_batch((3, pb)), b"")
    assert info.value.group_id == 3


def test_payload_shorter_than_the_lengths() -> None:
    pb = raft_pb2.Message(
        type=raft_pb2.MESSAGE_TYPE_APP, entries=[raft_pb2.Entry(index=5, data_len=10)]
    )
    with pytest.raises(WireError, match="entry 5 has 10 bytes of data, but the payload has 3"):
        decode_batch(_batch((1, pb)), b"abc")
    snap = raft_pb2.Message(
        type=raft_pb2.MESSAGE_TYPE_SNAP,
        snapshot=raft_pb2.Snapshot(meta=raft_pb2.SnapshotMeta(index=8), data_len=2**40),
    )
    with pytest.raises(WireError, match="snapshot at index 8"):
        decode_batch(_batch((1, snap)), b"abc")


def test_payload_longer_than_the_lengths() -> None:
    message, parts = encode_batch(
        [(1, Message(MessageType.APP, entries=(Entry(1, 1, data=b"a"),)))]
    )
    with pytest.raises(WireError, match="2 payload bytes beyond"):
        decode_batch(message, b"".join(parts) + b"zz")


@pytest.mark.parametrize("kind", sorted(LOCAL_MESSAGES))
def test_local_messages_are_never_encoded(kind: MessageType) -> None:
    with pytest.raises(WireError, match="local message"):
        encode_batch([(1, Message(kind))])


@pytest.mark.parametrize(
    "message",
    [
        Message(MessageType.APP, to=-1),
        Message(MessageType.APP, term=2**64),
        Message(MessageType.APP, entries=(Entry(-1, 1),)),
    ],
)
def test_out_of_range_fields_are_wire_errors(message: Message) -> None:
    with pytest.raises(WireError, match="group 2: cannot encode APP"):
        encode_batch([(2, message)])


def test_docs_example() -> None:
    # docs/rpc.md §7.
    entries = (Entry(3, 8, data=b"put a=1"), Entry(3, 9, data=b"put b=22"))
    message, parts = encode_batch(
        [
            (
                5,
                Message(
                    MessageType.APP,
                    to=2,
                    frm=1,
                    term=3,
                    log_term=3,
                    index=7,
                    commit=7,
                    entries=entries,
                ),
            )
        ]
    )
    assert message.hex(" ") == (
        "0a 22 08 05 12 1e 08 0a 10 02 18 01 20 03 28 03 30 07 3a 06 08 03 10 08 20 07"
        " 3a 06 08 03 10 09 20 08 40 07"
    )
    assert parts == [b"put a=1", b"put b=22"]
