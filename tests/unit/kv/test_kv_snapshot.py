"""Region snapshots (docs/formats/kv.md §5): chunks cut to size, a restore into a fresh
engine reads the same, and damaged, foreign, reordered or cut-short streams are
refused without leaving a region that looks whole."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.engine import Engine, WriteBatch
from atoll.kv import (
    KEY_BYTES_MAX,
    VALUE_BYTES_MAX,
    Compacted,
    Delete,
    KeyMeta,
    KvStateMachine,
    Put,
    PutResult,
    RestorePending,
    SnapshotChecksumError,
    SnapshotError,
    Txn,
    encode,
)
from atoll.kv.command import Command
from atoll.kv.layout import encode_key_record
from atoll.kv.snapshot_format import (
    CHUNK_BYTES_MAX,
    CHUNK_HEADER_BYTES,
    ENTRY_HEADER_BYTES,
    SnapshotChunk,
    cut_chunks,
    decode_chunk,
    encode_chunk,
    split_chunks,
)
from atoll.kv.state_machine import SNAPSHOT_CHUNK_BYTES

KvEngineOpener = Callable[[str], Engine]  # the `open_kv` fixture (conftest.py)
REGION = 7


def fill(engine: Engine, commands: list[Command], region_id: int = REGION) -> KvStateMachine:
    sm = KvStateMachine(engine, region_id)
    batch = WriteBatch()
    index = sm.applied_index()
    for command in commands:
        index += 1
        sm.apply(index, encode(command), batch)
    engine.write(batch)
    sm.batch_written()
    return sm


def chunks_of(engine: Engine, sm: KvStateMachine, chunk_bytes: int) -> list[bytes]:
    with engine.snapshot() as snapshot:
        return list(sm.snapshot_chunks(snapshot, chunk_bytes))


SOURCE: list[Command] = [
    Put(b"", b"empty key"),
    Put(b"a", b""),
    Put(b"b", b"x" * 3000),
    Put(b"c", b"y"),
    Delete(b"c"),
    Txn([], [Put(b"d", b"1"), Put(b"d", b"2")]),
    Put(b"\xff" * 10, b"last"),
]


@pytest.mark.parametrize("chunk_bytes", [1, 64, 4096, CHUNK_BYTES_MAX])
def test_restore_into_a_fresh_engine_reads_the_same(
    open_kv: KvEngineOpener, chunk_bytes: int
) -> None:
    source_engine = open_kv("source")
    source = fill(source_engine, SOURCE)
    chunks = chunks_of(source_engine, source, chunk_bytes)
    if chunk_bytes == 1:
        assert len(chunks) == 5  # one per key
    target_engine = open_kv("target")
    target = KvStateMachine(target_engine, REGION)
    target.restore(iter(chunks))
    assert target.scan() == source.scan()
    assert (target.applied_index(), target.revision()) == (7, 7)
    assert target.get(b"d") == (b"2", KeyMeta(6, 6, 2))
    assert not target.restore_pending()
    # The history is not shipped: the restored replica's starts after the snapshot.
    assert target.compact_revision() == 8
    with pytest.raises(Compacted):
        target.events(7)
    assert target.events(8) == []
    # And it applies the next entries as the source does.
    for sm, engine in ((source, source_engine), (target, target_engine)):
        batch = WriteBatch()
        result = sm.apply(8, encode(Put(b"a", b"again")), batch)
        assert isinstance(result, PutResult) and result.prev_revision == 2
        engine.write(batch)
        sm.batch_written()
    assert target.scan() == source.scan()
    assert target.events(8) == source.events(8)


def test_restore_replaces_what_the_region_held(open_kv: KvEngineOpener) -> None:
    source_engine = open_kv("source")
    source = fill(source_engine, [Put(b"keep", b"1")])
    target_engine = open_kv("target")
    target = fill(target_engine, [Put(b"old-%d" % i, b"v") for i in range(20)])
    neighbour = fill(target_engine, [Put(b"neighbour", b"v")], region_id=REGION + 1)
    target.restore(chunks_of(source_engine, source, 4096))
    assert target.scan() == source.scan()
    assert target.applied_index() == 1
    assert [kv.key for kv in neighbour.scan()] == [b"neighbour"]
    assert neighbour.applied_index() == 1


def test_empty_region_snapshot_is_one_last_chunk(open_kv: KvEngineOpener) -> None:
    engine = open_kv("db")
    sm = KvStateMachine(engine, REGION)
    chunks = chunks_of(engine, sm, 4096)
    assert len(chunks) == 1
    chunk = decode_chunk(chunks[0], 0)
    assert chunk == SnapshotChunk(REGION, 0, 0, 0, True, [])
    target = KvStateMachine(open_kv("target"), REGION)
    target.restore(chunks)
    assert target.applied_index() == 0
    assert target.scan() == []


def test_snapshot_data_is_the_chunks_in_one_piece(open_kv: KvEngineOpener) -> None:
    source_engine = open_kv("source")
    source = fill(source_engine, SOURCE)
    with source_engine.snapshot() as snapshot:
        data = source.snapshot_data(snapshot)
    assert data == b"".join(chunks_of(source_engine, source, SNAPSHOT_CHUNK_BYTES))
    assert list(split_chunks(data)) == chunks_of(source_engine, source, SNAPSHOT_CHUNK_BYTES)
    target = KvStateMachine(open_kv("target"), REGION)
    target.restore(data)
    assert target.scan() == source.scan()
    assert target.applied_index() == 7


def test_split_chunks_hands_a_short_tail_to_the_decoder() -> None:
    chunks = list(cut_chunks(REGION, 1, 1, [(b"a", b"x" * 30), (b"b", b"y" * 30)], 10))
    data = b"".join(chunks)
    assert list(split_chunks(data)) == chunks
    for cut in (len(data) - 1, len(chunks[0]) + 5):
        pieces = list(split_chunks(data[:cut]))
        assert pieces[0] == chunks[0]
        with pytest.raises(SnapshotError):
            decode_chunk(pieces[-1], len(pieces) - 1)


# --------------------------------------------------------------- bad streams


@pytest.fixture
def stream(open_kv: KvEngineOpener) -> list[bytes]:
    engine = open_kv("source")
    sm = fill(engine, [Put(b"k%02d" % i, b"v" * 50) for i in range(10)])
    chunks = chunks_of(engine, sm, 200)
    assert len(chunks) >= 3
    return chunks


@pytest.fixture
def target(open_kv: KvEngineOpener) -> KvStateMachine:
    return fill(open_kv("target"), [Put(b"before", b"v")])


def _assert_untouched(sm: KvStateMachine) -> None:
    assert not sm.restore_pending()
    assert [kv.key for kv in sm.scan()] == [b"before"]


def _assert_pending_then_recoverable(sm: KvStateMachine, stream: list[bytes]) -> None:
    assert sm.restore_pending()
    with pytest.raises(RestorePending):
        sm.apply(2, encode(Put(b"x", b"")), WriteBatch())
    sm.restore(stream)
    assert sm.applied_index() == 10
    assert not sm.restore_pending()
    assert len(sm.scan()) == 10


def test_a_bad_first_chunk_wipes_nothing(target: KvStateMachine, stream: list[bytes]) -> None:
    damaged = bytearray(stream[0])
    damaged[CHUNK_HEADER_BYTES + 3] ^= 0x10
    with pytest.raises(SnapshotChecksumError):
        target.restore([bytes(damaged), *stream[1:]])
    _assert_untouched(target)
    with pytest.raises(SnapshotError, match="ended before its last chunk"):
        target.restore([])
    _assert_untouched(target)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda s: [s[0], s[2], *s[3:]], "chunk numbered 2"),
        (lambda s: s[:-1], "ended before its last chunk"),
        (lambda s: [s[0], s[1][:-1], *s[2:]], "bytes, header says"),
        (lambda s: [s[0], s[1][:-1] + bytes([s[1][-1] ^ 1]), *s[2:]], "crc32c"),
    ],
)
def test_a_bad_later_chunk_leaves_the_region_restore_pending(
    target: KvStateMachine,
    stream: list[bytes],
    mangle: Callable[[list[bytes]], list[bytes]],
    match: str,
) -> None:
    with pytest.raises(SnapshotError, match=match):
        target.restore(mangle(stream))
    _assert_pending_then_recoverable(target, stream)


def test_chunks_of_another_snapshot_or_region_are_refused(
    open_kv: KvEngineOpener, target: KvStateMachine, stream: list[bytes]
) -> None:
    engine = open_kv("other")
    newer = fill(engine, [Put(b"k%02d" % i, b"w" * 50) for i in range(11)])
    mixed = [stream[0], chunks_of(engine, newer, 200)[1]]
    with pytest.raises(SnapshotError, match="snapshot at index 11"):
        target.restore(mixed)
    _assert_pending_then_recoverable(target, stream)
    foreign_engine = open_kv("foreign")
    foreign = fill(foreign_engine, [Put(b"k", b"v")], region_id=REGION + 1)
    foreign_chunks = chunks_of(foreign_engine, foreign, 200)
    with pytest.raises(SnapshotError, match=f"chunk of region {REGION + 1}"):
        target.restore(foreign_chunks)


def test_chunks_with_bad_records_are_refused(target: KvStateMachine) -> None:
    good = encode_key_record(b"v", KeyMeta(1, 1, 1))
    cases = [
        ([(b"b", good), (b"a", good)], "keys out of order"),
        ([(b"a", good), (b"a", good)], "keys out of order"),
        ([(b"a", b"\x01short")], "bad key record"),
        ([(b"a", encode_key_record(b"v", KeyMeta(1, 9, 1)))], "bad key record"),
    ]
    for records, match in cases:
        chunk = encode_chunk(SnapshotChunk(REGION, 5, 5, 0, True, records))
        with pytest.raises(SnapshotError, match=match):
            target.restore([chunk])


def test_a_partial_restore_survives_a_crash(
    open_durable_kv: KvEngineOpener, stream: list[bytes]
) -> None:
    open_kv = open_durable_kv
    engine = open_kv("target")
    with pytest.raises(SnapshotError):
        KvStateMachine(engine, REGION).restore(stream[:-1])
    engine.close()
    sm = KvStateMachine(open_kv("target"), REGION)
    _assert_pending_then_recoverable(sm, stream)


# ------------------------------------------------------------ chunk encoding


RECORDS = st.lists(
    st.tuples(st.binary(max_size=20), st.binary(min_size=25, max_size=300)),
    max_size=30,
    unique_by=lambda r: r[0],
).map(sorted)


@given(RECORDS, st.integers(1, 2000))
def test_cut_chunks_round_trip_within_their_size(
    records: list[tuple[bytes, bytes]], chunk_bytes: int
) -> None:
    chunks = list(cut_chunks(REGION, 9, 8, records, chunk_bytes))
    decoded = [decode_chunk(data, i) for i, data in enumerate(chunks)]
    assert [c.chunk_index for c in decoded] == list(range(len(chunks)))
    assert [c.last for c in decoded] == [False] * (len(chunks) - 1) + [True]
    assert [r for c in decoded for r in c.records] == records
    for chunk in decoded:
        body = sum(ENTRY_HEADER_BYTES + len(k) + len(v) for k, v in chunk.records)
        assert body <= chunk_bytes or len(chunk.records) == 1
        assert (chunk.region_id, chunk.applied_index, chunk.revision) == (REGION, 9, 8)


@given(RECORDS, st.data())
def test_any_flipped_bit_in_a_chunk_is_refused(
    records: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    (chunk,) = cut_chunks(REGION, 1, 1, records, CHUNK_BYTES_MAX)
    damaged = bytearray(chunk)
    bit = data.draw(st.integers(0, len(damaged) * 8 - 1))
    damaged[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SnapshotError):
        decode_chunk(bytes(damaged), 0)


def test_chunk_size_argument_is_bounded() -> None:
    for bad in (0, CHUNK_BYTES_MAX + 1):
        with pytest.raises(ValueError):
            list(cut_chunks(REGION, 1, 1, [], bad))


def test_largest_record_fits_in_a_chunk() -> None:
    record = encode_key_record(b"v" * VALUE_BYTES_MAX, KeyMeta(1, 1, 1))
    (chunk,) = cut_chunks(REGION, 1, 1, [(b"k" * KEY_BYTES_MAX, record)], 1)
    assert decode_chunk(chunk, 0).records == [(b"k" * KEY_BYTES_MAX, record)]
