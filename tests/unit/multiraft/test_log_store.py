"""The Raft log store (`atoll.multiraft.log_store`) on the memory, LMDB and LSM engines:
round trips, the persist rules of a Ready, log bases, the snapshot records of earlier
versions (deleted by the next base move), groups side by side in one batch, reopening,
and corruption found with a typed error.

The random model test is tests/property/test_log_store_model.py; the v1 fixture test
is test_raft_log_fixtures.py beside this file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atoll.base.errors import CorruptionError, InvariantError
from atoll.engine import Engine, WriteBatch, open_engine
from atoll.multiraft.errors import LogCompacted, LogCorruption
from atoll.multiraft.log_format import (
    U64_MAX,
    RecordKind,
    encode_entry,
    encode_snapshot,
    entry_key,
    record_key,
)
from atoll.multiraft.log_store import LogStore
from atoll.raft.types import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryType,
    HardState,
    PersistedState,
    Ready,
    Snapshot,
    SnapshotMeta,
)

KINDS = ("memory", "lmdb", "lsm")
DURABLE_KINDS = ("lmdb", "lsm")
# Small enough that the LSM flushes along the way; the other kinds ignore it.
OPTIONS: dict[str, Any] = {"memtable_size_bytes": 4096, "background": "thread"}

Opener = Callable[[], Engine]


def engine_options(kind: str) -> dict[str, Any]:
    return OPTIONS if kind == "lsm" else {}


@pytest.fixture
def open_db(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Opener]:
    """Opens (and at teardown closes) the engine of the test's `kind` at tmp_path/db."""
    kind: str = request.param
    opened: list[Engine] = []

    def _open() -> Engine:
        engine = open_engine(str(tmp_path / "db"), kind=kind, **engine_options(kind))
        opened.append(engine)
        return engine

    yield _open
    for engine in opened:
        engine.close()


@pytest.fixture
def db(open_db: Opener) -> Engine:
    return open_db()


all_kinds = pytest.mark.parametrize("open_db", KINDS, indirect=True)
durable_kinds = pytest.mark.parametrize("open_db", DURABLE_KINDS, indirect=True)


def ents(lo: int, hi: int, term: int = 1, tag: bytes = b"e") -> list[Entry]:
    """Entries lo..hi inclusive, each with data naming its index and `tag`."""
    return [Entry(term=term, index=i, data=b"%s%d" % (tag, i)) for i in range(lo, hi + 1)]


def persist(store: LogStore, group_id: int, ready: Ready, sync: bool = False) -> None:
    batch = WriteBatch()
    store.stage(batch, group_id, ready)
    store.write(batch, sync=sync)


def meta(index: int, term: int = 1) -> SnapshotMeta:
    return SnapshotMeta(index, term, ConfState(frozenset({1, 2, 3}), frozenset({9})))


def compact(store: LogStore, group_id: int, to: SnapshotMeta) -> None:
    batch = WriteBatch()
    store.compact(batch, group_id, to)
    store.write(batch, sync=False)


def snapshot_key(group_id: int) -> bytes:
    return record_key(group_id, RecordKind.SNAPSHOT)


# -- round trips ----------------------------------------------------------------------


@all_kinds
def test_a_fresh_group_loads_the_empty_state(db: Engine) -> None:
    store = LogStore(db)
    assert store.load(5) == PersistedState()
    assert store.entries(5, 1, 10) == []
    assert store.groups() == []


@all_kinds
def test_entries_and_hard_state_round_trip(db: Engine) -> None:
    store = LogStore(db)
    entries = [
        Entry(term=1, index=1),
        Entry(term=1, index=2, data=b"\x00\xff" * 100),
        Entry(
            term=2,
            index=3,
            type=EntryType.CONF_CHANGE,
            data=ConfChange(ConfChangeOp.ADD_VOTER, 4).encode(),
        ),
    ]
    hard_state = HardState(term=2, vote=3, commit=2)
    persist(store, 1, Ready(entries=entries, hard_state=hard_state, must_sync=True), sync=True)

    assert store.load(1) == PersistedState(hard_state, SnapshotMeta(), tuple(entries))
    assert store.entries(1, 2, 4) == entries[1:]
    assert store.entries(1, 2, 3) == entries[1:2]
    assert store.entries(1, 3, 100) == entries[2:]
    assert store.entries(1, 4, 100) == []
    assert store.entries(1, 3, 3) == []
    assert store.groups() == [1]


@all_kinds
def test_initialize_records_the_first_configuration_of_empty_groups_only(db: Engine) -> None:
    store = LogStore(db)
    first = ConfState(frozenset({1, 2, 3}))
    persist(store, 8, Ready(entries=ents(1, 2)), sync=True)
    store.initialize([7, 8, 9], first)
    for group_id in (7, 9):
        assert store.load(group_id) == PersistedState(snapshot=SnapshotMeta(0, 0, first))
    assert store.load(8).snapshot == SnapshotMeta()  # entries stored: not an empty group
    store.initialize([7], ConfState(frozenset({9})))  # already recorded: kept
    assert store.load(7).snapshot.conf == first
    persist(store, 7, Ready(entries=ents(1, 3)), sync=True)  # the log grows on its base
    assert store.load(7) == PersistedState(
        snapshot=SnapshotMeta(0, 0, first), entries=tuple(ents(1, 3))
    )
    with pytest.raises(InvariantError):
        store.initialize([10], ConfState())


@all_kinds
def test_appends_across_ready_cycles_extend_the_log(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 3)))
    persist(store, 1, Ready(entries=ents(4, 6)))
    persist(store, 1, Ready(hard_state=HardState(1, 1, 6)))
    state = store.load(1)
    assert state.entries == tuple(ents(1, 6))
    assert state.hard_state == HardState(1, 1, 6)


@all_kinds
def test_entries_stop_at_the_size_limit_but_return_at_least_one(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=[Entry(1, i, data=b"x" * 100) for i in range(1, 6)]))
    size = Entry(1, 1, data=b"x" * 100).size_bytes()
    assert [e.index for e in store.entries(1, 1, 6, max_size_bytes=1)] == [1]
    assert [e.index for e in store.entries(1, 1, 6, max_size_bytes=2 * size)] == [1, 2]
    assert [e.index for e in store.entries(1, 2, 6, max_size_bytes=3 * size - 1)] == [2, 3]


# -- the persist rules of a Ready ------------------------------------------------------


@all_kinds
def test_conflicting_entries_replace_the_stored_suffix(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 9, term=1)))
    persist(store, 1, Ready(entries=ents(5, 6, term=2, tag=b"new")))
    expected = ents(1, 4, term=1) + ents(5, 6, term=2, tag=b"new")
    assert store.load(1).entries == tuple(expected)
    assert store.entries(1, 1, 100) == expected
    # The cached last index followed the truncation: 7 fits, 8 would leave a gap.
    persist(store, 1, Ready(entries=ents(7, 7, term=2)))
    assert [e.index for e in store.load(1).entries] == list(range(1, 8))


@all_kinds
def test_a_longer_overlapping_append_overwrites_and_extends(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 5, term=1)))
    persist(store, 1, Ready(entries=ents(3, 8, term=2)))
    assert store.load(1).entries == tuple(ents(1, 2, term=1) + ents(3, 8, term=2))


@all_kinds
def test_replacing_from_the_first_entry_keeps_nothing_old(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 5, term=1)))
    persist(store, 1, Ready(entries=ents(1, 1, term=3)))
    assert store.load(1).entries == tuple(ents(1, 1, term=3))


@all_kinds
def test_entries_that_leave_a_gap_or_jump_are_bugs(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 3)))
    with pytest.raises(InvariantError, match="do not fit"):
        store.stage(WriteBatch(), 1, Ready(entries=ents(5, 6)))
    store = LogStore(db)
    with pytest.raises(InvariantError, match="jump from 4 to 6"):
        store.stage(WriteBatch(), 1, Ready(entries=[Entry(1, 4), Entry(1, 6)]))


@all_kinds
def test_a_snapshot_in_a_ready_replaces_the_whole_log(db: Engine) -> None:
    # The core takes a snapshot only when its log does not match at the snapshot's
    # index, and drops its whole log (RaftLog.restore): entries 6..9 are divergent.
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 9)))
    snapshot = Snapshot(meta(5, term=2), b"image at 5")
    persist(store, 1, Ready(snapshot=snapshot, hard_state=HardState(2, 0, 5)))

    assert store.load(1) == PersistedState(HardState(2, 0, 5), snapshot.meta, ())
    with pytest.raises(LogCompacted) as caught:
        store.entries(1, 5, 7)
    assert (caught.value.group_id, caught.value.index, caught.value.base_index) == (1, 5, 5)
    assert store.entries(1, 6, 8) == []
    # The log goes on from the snapshot.
    persist(store, 1, Ready(entries=ents(6, 7, term=2)))
    assert store.load(1).entries == tuple(ents(6, 7, term=2))


@all_kinds
def test_a_ready_snapshot_writes_no_snapshot_record(db: Engine) -> None:
    # The host restored the data into its state machine before staging: the log store
    # keeps the metadata as the log base, and nothing of the data.
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 4)))
    batch = WriteBatch()
    store.stage(batch, 1, Ready(snapshot=Snapshot(meta(7), b"image at 7"), hard_state=HardState(2)))
    assert all(b"image at 7" not in value for value in batch.values)
    store.write(batch, sync=False)
    assert db.get(snapshot_key(1)) is None
    assert [key for key, _ in db.scan()] == [
        record_key(1, RecordKind.HARD_STATE),
        record_key(1, RecordKind.LOG_BASE),
    ]
    assert store.load(1) == PersistedState(HardState(2), meta(7), ())


@all_kinds
def test_a_snapshot_past_the_last_entry_empties_the_log(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 3)))
    persist(store, 1, Ready(snapshot=Snapshot(meta(10, term=2), b"s"), entries=ents(11, 12, 2)))
    state = store.load(1)
    assert state.snapshot.index == 10
    assert state.entries == tuple(ents(11, 12, 2))
    with pytest.raises(InvariantError):
        store.stage(WriteBatch(), 1, Ready(entries=ents(10, 10)))  # at the base


@all_kinds
def test_an_older_snapshot_than_the_base_is_a_bug(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(snapshot=Snapshot(meta(10), b"s")))
    with pytest.raises(InvariantError, match="older than the log base 10"):
        store.stage(WriteBatch(), 1, Ready(snapshot=Snapshot(meta(9), b"old")))


@all_kinds
def test_compact_moves_the_base_and_keeps_the_later_entries(db: Engine) -> None:
    # The host compacts to an index its state machine has applied: the entries after
    # it are part of the log and stay.
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 9)))
    compact(store, 1, meta(5))

    assert store.load(1) == PersistedState(snapshot=meta(5), entries=tuple(ents(6, 9)))
    with pytest.raises(LogCompacted) as caught:
        store.entries(1, 1, 7)
    assert (caught.value.group_id, caught.value.index, caught.value.base_index) == (1, 1, 5)
    assert store.entries(1, 6, 8) == ents(6, 7)
    persist(store, 1, Ready(entries=ents(10, 10)))
    assert store.load(1).entries == tuple(ents(6, 10))


@all_kinds
def test_compact_moves_a_base_set_by_a_snapshot(db: Engine) -> None:
    store = LogStore(db)
    batch = WriteBatch()
    store.stage(batch, 1, Ready(snapshot=Snapshot(meta(3), b"image at 3")))
    store.stage(batch, 1, Ready(entries=ents(4, 9)))
    store.write(batch, sync=False)
    assert store.load(1) == PersistedState(snapshot=meta(3), entries=tuple(ents(4, 9)))

    compact(store, 1, meta(6, term=2))
    assert store.load(1) == PersistedState(snapshot=meta(6, term=2), entries=tuple(ents(7, 9)))

    batch = WriteBatch()
    store.compact(batch, 1, meta(4))  # at or below the base: nothing to do
    store.compact(batch, 1, meta(6))
    assert len(batch) == 0
    with pytest.raises(InvariantError, match="passes the last stored entry 9"):
        store.compact(batch, 1, meta(10))


@all_kinds
def test_compacting_to_the_last_entry_keeps_appending_possible(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 4)))
    compact(store, 1, meta(4))
    assert store.load(1) == PersistedState(snapshot=meta(4))
    persist(store, 1, Ready(entries=ents(5, 5)))
    assert store.load(1).entries == tuple(ents(5, 5))


# -- snapshot records of earlier versions ------------------------------------------------


def put_old_snapshot(db: Engine, group_id: int, at: SnapshotMeta) -> None:
    """Store a snapshot record (kind 0x03) as earlier versions wrote it."""
    db.put(*encode_snapshot(group_id, Snapshot(at, b"old image of %d" % group_id)))


@all_kinds
def test_an_old_snapshot_record_is_never_read(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 9), hard_state=HardState(1, 1, 9)))
    put_old_snapshot(db, 1, meta(3))
    flip(db, snapshot_key(1), 5)  # not even a corrupt one is noticed
    expected = PersistedState(HardState(1, 1, 9), SnapshotMeta(), tuple(ents(1, 9)))
    assert store.load(1) == expected
    store = LogStore(db)  # the bounds are read again
    persist(store, 1, Ready(entries=ents(10, 10)))
    compact(store, 1, meta(2))
    assert db.get(snapshot_key(1)) is None
    assert store.load(1) == PersistedState(HardState(1, 1, 9), meta(2), tuple(ents(3, 10)))


@all_kinds
def test_compact_deletes_an_old_snapshot_record(db: Engine) -> None:
    store = LogStore(db)
    for g in (1, 2):
        persist(store, g, Ready(entries=ents(1, 9)))
        put_old_snapshot(db, g, meta(3))
    other = db.get(snapshot_key(2))

    compact(store, 1, meta(5))
    assert db.get(snapshot_key(1)) is None
    assert store.load(1) == PersistedState(snapshot=meta(5), entries=tuple(ents(6, 9)))
    assert db.get(snapshot_key(2)) == other  # another group's is not this one's


@all_kinds
def test_a_ready_snapshot_deletes_an_old_snapshot_record(db: Engine) -> None:
    store = LogStore(db)
    for g in (1, 2):
        persist(store, g, Ready(entries=ents(1, 9)))
        put_old_snapshot(db, g, meta(3))
    other = db.get(snapshot_key(2))

    persist(store, 1, Ready(snapshot=Snapshot(meta(12, term=2), b"new image")))
    assert db.get(snapshot_key(1)) is None
    assert store.load(1) == PersistedState(snapshot=meta(12, term=2))
    assert db.get(snapshot_key(2)) == other


# -- many groups -----------------------------------------------------------------------


@all_kinds
def test_groups_in_one_batch_do_not_interfere(db: Engine) -> None:
    store = LogStore(db)
    groups = (0, 1, 2, 256, U64_MAX)
    batch = WriteBatch()
    for g in groups:
        store.stage(batch, g, Ready(entries=ents(1, 6, tag=b"g%d-" % g)))
    store.write(batch, sync=True)

    batch = WriteBatch()
    store.stage(batch, 1, Ready(entries=ents(3, 3, term=2, tag=b"g1-")))  # truncates
    store.stage(batch, 2, Ready(snapshot=Snapshot(meta(4), b"two"), entries=ents(5, 5, 2, b"g2-")))
    store.stage(batch, 256, Ready(hard_state=HardState(7, 256, 2)))
    store.compact(batch, U64_MAX, meta(2))
    store.write(batch, sync=True)

    assert store.groups() == list(groups)
    assert store.load(0).entries == tuple(ents(1, 6, tag=b"g0-"))
    assert store.load(1).entries == tuple(ents(1, 2, tag=b"g1-") + ents(3, 3, 2, b"g1-"))
    assert store.load(2) == PersistedState(snapshot=meta(4), entries=tuple(ents(5, 5, 2, b"g2-")))
    assert store.load(256) == PersistedState(
        HardState(7, 256, 2), entries=tuple(ents(1, 6, tag=b"g256-"))
    )
    assert store.load(U64_MAX).entries == tuple(ents(3, 6, tag=b"g%d-" % U64_MAX))


@all_kinds
def test_destroy_removes_one_group_only(db: Engine) -> None:
    store = LogStore(db)
    batch = WriteBatch()
    for g in (1, 2, 3):
        store.stage(batch, g, Ready(entries=ents(1, 3), hard_state=HardState(1, g, 0)))
    store.compact(batch, 2, meta(1))
    store.write(batch, sync=False)
    put_old_snapshot(db, 2, meta(1))

    batch = WriteBatch()
    store.destroy(batch, 2)
    store.write(batch, sync=False)
    assert store.groups() == [1, 3]
    assert store.load(2) == PersistedState()
    assert db.get(snapshot_key(2)) is None
    for g in (1, 3):
        assert store.load(g) == PersistedState(HardState(1, g, 0), entries=tuple(ents(1, 3)))
    # The destroyed group may start again from index 1.
    persist(store, 2, Ready(entries=ents(1, 1)))
    assert store.load(2).entries == tuple(ents(1, 1))


@all_kinds
def test_other_users_of_the_engine_are_left_alone(db: Engine) -> None:
    others = {
        b"": b"empty key",
        b"\x00zz": b"below",
        b"\x01": b"the tag alone",
        b"\x01\x02" + bytes(9): b"a later key layout",
        b"\x02kv/data": b"kv",
        b"\xff": b"above",
    }
    for key, value in others.items():
        db.put(key, value)
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 2), hard_state=HardState(1, 1, 1)))
    batch = WriteBatch()
    store.destroy(batch, 1)
    batch.put(b"\x02kv/more", b"beside the log")  # one batch may carry both
    store.write(batch, sync=False)
    assert store.groups() == []
    assert dict(db.scan()) == {**others, b"\x02kv/more": b"beside the log"}


# -- durability ------------------------------------------------------------------------


@durable_kinds
def test_everything_loads_back_after_a_reopen(open_db: Opener) -> None:
    db = open_db()
    store = LogStore(db)
    batch = WriteBatch()
    for g in range(1, 6):
        store.stage(batch, g, Ready(entries=ents(1, 40, tag=b"%d-" % g)))
    store.stage(batch, 3, Ready(hard_state=HardState(2, 3, 30)))
    store.compact(batch, 4, meta(20, term=3))
    store.stage(batch, 2, Ready(snapshot=Snapshot(meta(50, term=3), b"image" * 500)))
    store.write(batch, sync=True)
    expected = {g: store.load(g) for g in range(1, 6)}
    db.close()

    db = open_db()
    store = LogStore(db)
    assert store.groups() == [1, 2, 3, 4, 5]
    assert {g: store.load(g) for g in range(1, 6)} == expected
    assert expected[2] == PersistedState(snapshot=meta(50, term=3))
    assert expected[4] == PersistedState(
        snapshot=meta(20, term=3), entries=tuple(ents(21, 40, tag=b"4-"))
    )
    # The bounds are read again from the engine: a conflict still truncates.
    persist(store, 5, Ready(entries=ents(10, 11, term=2)), sync=True)
    assert store.load(5).entries == tuple(ents(1, 9, tag=b"5-") + ents(10, 11, term=2))
    persist(store, 4, Ready(entries=ents(41, 41)), sync=True)
    assert store.load(4).entries == tuple(ents(21, 40, tag=b"4-") + ents(41, 41))
    persist(store, 2, Ready(entries=ents(51, 51, term=3)), sync=True)  # fits base 50 only
    assert store.load(2).entries == tuple(ents(51, 51, term=3))


# -- corruption ------------------------------------------------------------------------


def flip(db: Engine, key: bytes, offset: int) -> None:
    """Flip the bits of one byte of the stored value of `key`, as a disk might."""
    value = bytearray(db.get(key) or b"")
    value[offset] ^= 0xFF
    db.put(key, bytes(value))


@all_kinds
@pytest.mark.parametrize("offset", [0, 1, 9, -1])
def test_a_flipped_byte_in_an_entry_is_reported_with_key_and_crcs(db: Engine, offset: int) -> None:
    store = LogStore(db)
    persist(store, 3, Ready(entries=ents(1, 4)))
    key = entry_key(3, 2)
    flip(db, key, offset)
    for read in (lambda: store.load(3), lambda: store.entries(3, 1, 5)):
        with pytest.raises(LogCorruption) as caught:
            read()
        err = caught.value
        assert isinstance(err, CorruptionError)
        assert (err.group_id, err.key) == (3, key)
        assert key.hex() in str(err)
        if offset != 0:  # byte 0 is the version: caught before the CRC
            assert err.expected is not None and err.actual is not None
            assert err.expected != err.actual
            assert f"{err.expected:#010x}" in str(err)


@all_kinds
@pytest.mark.parametrize("kind", [RecordKind.HARD_STATE, RecordKind.LOG_BASE])
def test_a_flipped_byte_in_a_single_record_is_reported(db: Engine, kind: RecordKind) -> None:
    store = LogStore(db)
    persist(store, 3, Ready(snapshot=Snapshot(meta(2), b"s"), hard_state=HardState(1, 1, 2)))
    key = record_key(3, kind)
    flip(db, key, 5)
    with pytest.raises(LogCorruption, match="CRC-32C mismatch") as caught:
        store.load(3)
    assert caught.value.key == key


@all_kinds
def test_a_value_under_the_wrong_key_is_caught_by_the_crc(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 3, Ready(entries=ents(1, 3)))
    db.put(entry_key(3, 3), db.get(entry_key(3, 2)) or b"")
    with pytest.raises(LogCorruption, match="CRC-32C mismatch"):
        store.load(3)


@all_kinds
@pytest.mark.parametrize("value", [b"", b"\x01\x00\x00\x00", b"\x02" + bytes(20)])
def test_short_values_and_unknown_versions_are_corruption(db: Engine, value: bytes) -> None:
    store = LogStore(db)
    persist(store, 3, Ready(hard_state=HardState(1, 1, 1)))
    db.put(record_key(3, RecordKind.HARD_STATE), value)
    with pytest.raises(LogCorruption):
        store.load(3)


@all_kinds
def test_a_hole_in_the_stored_log_is_corruption(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 3, Ready(entries=ents(1, 6)))
    db.delete(entry_key(3, 4))
    with pytest.raises(LogCorruption, match="entry 5 where entry 4 was expected"):
        store.load(3)
    with pytest.raises(LogCorruption):
        store.entries(3, 2, 7)


@all_kinds
def test_an_entry_left_below_the_base_is_corruption(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 3, Ready(entries=ents(1, 6)))
    batch = WriteBatch()
    store.compact(batch, 3, meta(3))
    store.write(batch, sync=False)
    db.put(*encode_entry(3, Entry(term=1, index=2)))  # well formed, but compacted
    with pytest.raises(LogCorruption, match="entry 2 where entry 4 was expected"):
        store.load(3)

    # A stale last entry is found when the bounds are read for staging.
    persist(store, 4, Ready(snapshot=Snapshot(meta(8), b"s")))
    db.put(*encode_entry(4, Entry(term=1, index=8)))
    with pytest.raises(LogCorruption, match="entry 8 is at or below the log base 8"):
        LogStore(db).stage(WriteBatch(), 4, Ready(entries=ents(9, 9)))


# -- the cycle's bookkeeping -------------------------------------------------------------


class FailingEngine:
    """Wraps an engine; its next `write` raises OSError (a failed fsync) when armed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.armed = False

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        if self.armed:
            self.armed = False
            raise OSError("fsync failed")
        self.engine.write(batch, sync)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


@all_kinds
def test_a_failed_write_forgets_the_staged_bounds(db: Engine) -> None:
    failing = FailingEngine(db)
    store = LogStore(failing)  # satisfies Engine through __getattr__
    persist(store, 1, Ready(entries=ents(1, 9)))
    failing.armed = True
    with pytest.raises(OSError):
        persist(store, 1, Ready(entries=ents(3, 3, term=2)))
    # Had the store kept last_index = 3, this append of 10 would be refused.
    persist(store, 1, Ready(entries=ents(10, 10)))
    assert store.load(1).entries == tuple(ents(1, 10))


@all_kinds
def test_a_discarded_batch_leaves_the_bounds_as_written(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 9)))
    batch = WriteBatch()
    store.stage(batch, 1, Ready(entries=ents(3, 3, term=2)))
    store.discard(batch)
    persist(store, 1, Ready(entries=ents(10, 10)))
    assert store.load(1).entries == tuple(ents(1, 10))


@all_kinds
def test_one_batch_in_flight_at_a_time(db: Engine) -> None:
    store = LogStore(db)
    first = WriteBatch()
    store.stage(first, 1, Ready(entries=ents(1, 1)))
    with pytest.raises(InvariantError, match="second batch"):
        store.stage(WriteBatch(), 2, Ready(entries=ents(1, 1)))
    with pytest.raises(InvariantError, match="other than the one staged"):
        store.write(WriteBatch(), sync=False)
    store.write(first, sync=False)
    persist(store, 2, Ready(entries=ents(1, 1)))
    assert store.groups() == [1, 2]


@all_kinds
def test_stages_of_one_group_in_one_batch_apply_in_order(db: Engine) -> None:
    store = LogStore(db)
    persist(store, 1, Ready(entries=ents(1, 9)))
    batch = WriteBatch()
    store.stage(batch, 1, Ready(entries=ents(5, 7, term=2)))
    store.stage(batch, 1, Ready(entries=ents(6, 6, term=3)))
    store.destroy(batch, 2)
    store.stage(batch, 1, Ready(entries=ents(7, 8, term=3)))
    store.write(batch, sync=False)
    assert store.load(1).entries == tuple(ents(1, 4) + ents(5, 5, term=2) + ents(6, 8, term=3))
