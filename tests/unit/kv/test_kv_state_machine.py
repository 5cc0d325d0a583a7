"""KvStateMachine on every engine kind: apply results and key meta, transactions,
batches of applies, reads, the event history and its compaction, idempotent replay
after a crash, and the engine layout it writes (docs/formats/kv.md §2-§4)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atoll.base.errors import CorruptionError, InvariantError
from atoll.engine import Engine, WriteBatch
from atoll.kv import (
    CommandError,
    Compacted,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteRange,
    DeleteRangeResult,
    DeleteResult,
    Event,
    EventKind,
    Get,
    GetResult,
    KeyMeta,
    KeyValue,
    KvStateMachine,
    Noop,
    NoopResult,
    Put,
    PutResult,
    Skipped,
    Txn,
    TxnResult,
    compare_and_set,
    encode,
)
from atoll.kv.command import Command
from atoll.kv.layout import RegionKeys
from atoll.kv.results import ApplyResult

KvEngineOpener = Callable[[str], Engine]  # the `open_kv` fixture (conftest.py)

REGION = 1


class Host:
    """The smallest host: applies commands at consecutive indexes, one batch per call."""

    def __init__(self, engine: Engine, region_id: int = REGION) -> None:
        self.engine = engine
        self.sm = KvStateMachine(engine, region_id)
        self.next_index = self.sm.applied_index() + 1

    def run(self, *commands: Command | bytes, write: bool = True) -> list[ApplyResult]:
        batch = WriteBatch()
        results = []
        for command in commands:
            data = command if isinstance(command, bytes) else encode(command)
            results.append(self.sm.apply(self.next_index, data, batch))
            self.next_index += 1
        if write:
            self.engine.write(batch)
            self.sm.batch_written()
        return results

    def one(self, command: Command) -> ApplyResult:
        return self.run(command)[0]


@pytest.fixture
def host(open_kv: KvEngineOpener) -> Host:
    return Host(open_kv("db"))


# ------------------------------------------------------------------ single writes


def test_put_tracks_revisions_and_version(host: Host) -> None:
    assert host.one(Put(b"k", b"a")) == PutResult(prev_revision=0)
    assert host.sm.get(b"k") == (b"a", KeyMeta(create_revision=1, mod_revision=1, version=1))
    host.one(Put(b"other", b"x"))
    # The replaced value comes back too (for prev_kv).
    assert host.one(Put(b"k", b"b")) == PutResult(1, (b"a", KeyMeta(1, 1, 1)))
    assert host.sm.get(b"k") == (b"b", KeyMeta(1, 3, 2))
    assert host.sm.revision() == 3
    assert host.sm.applied_index() == 3


def test_empty_value_is_not_a_missing_key(host: Host) -> None:
    host.one(Put(b"k", b""))
    assert host.sm.get(b"k") == (b"", KeyMeta(1, 1, 1))
    assert host.sm.get(b"missing") is None
    assert host.one(Delete(b"k")) == DeleteResult(True, (b"", KeyMeta(1, 1, 1)))
    assert host.sm.get(b"k") is None


def test_empty_key_is_a_key(host: Host) -> None:
    host.one(Put(b"", b"root"))
    assert host.sm.get(b"") == (b"root", KeyMeta(1, 1, 1))
    assert host.sm.scan() == [KeyValue(b"", b"root", KeyMeta(1, 1, 1))]


def test_delete_of_a_missing_key_changes_nothing(host: Host) -> None:
    host.one(Put(b"k", b"v"))
    assert host.one(Delete(b"missing")) == DeleteResult(False)
    assert host.sm.revision() == 1
    assert host.sm.applied_index() == 2
    assert [e.revision for e in host.sm.events(1)] == [1]


def test_recreated_key_starts_a_new_life(host: Host) -> None:
    host.run(Put(b"k", b"1"), Put(b"k", b"2"), Delete(b"k"), Put(b"k", b"3"))
    assert host.sm.get(b"k") == (b"3", KeyMeta(4, 4, 1))


def test_noop_and_empty_entry_advance_only_the_applied_index(host: Host) -> None:
    assert host.run(Noop(), b"") == [NoopResult(), NoopResult()]
    assert host.sm.applied_index() == 2
    assert host.sm.revision() == 0
    assert host.sm.events(1) == []


def test_delete_range(host: Host) -> None:
    host.run(*(Put(k, b"v") for k in [b"a", b"b", b"ba", b"c", b"d"]))
    assert host.one(DeleteRange(b"b", b"c")) == DeleteRangeResult(2)
    assert [kv.key for kv in host.sm.scan()] == [b"a", b"c", b"d"]
    assert host.one(DeleteRange(b"c", b"a")) == DeleteRangeResult(0)  # inverted
    assert host.one(DeleteRange(b"c", None)) == DeleteRangeResult(2)
    assert [kv.key for kv in host.sm.scan()] == [b"a"]
    events = host.sm.events(6)
    assert [(e.revision, e.sequence, e.kind, e.key) for e in events] == [
        (6, 0, EventKind.DELETE, b"b"),
        (6, 1, EventKind.DELETE, b"ba"),
        (8, 0, EventKind.DELETE, b"c"),
        (8, 1, EventKind.DELETE, b"d"),
    ]


# ------------------------------------------------------------------ transactions


def test_compare_and_set(host: Host) -> None:
    assert host.one(compare_and_set(b"k", None, b"1")) == TxnResult(True, (PutResult(0),))
    lost = host.one(compare_and_set(b"k", None, b"2"))
    assert lost == TxnResult(False, (GetResult(b"1", KeyMeta(1, 1, 1)),))
    assert host.one(compare_and_set(b"k", b"1", b"2")) == TxnResult(
        True, (PutResult(1, (b"1", KeyMeta(1, 1, 1))),)
    )
    assert host.one(compare_and_set(b"k", b"2", None)) == TxnResult(
        True, (DeleteResult(True, (b"2", KeyMeta(1, 3, 2))),)
    )
    assert host.one(compare_and_set(b"k", b"2", None)) == TxnResult(False, (GetResult(None, None),))
    assert host.sm.get(b"k") is None


EQ, NE, GT, LT = CompareOp.EQUAL, CompareOp.NOT_EQUAL, CompareOp.GREATER, CompareOp.LESS


@pytest.mark.parametrize(
    ("compare", "holds"),
    [
        # b"k" holds b"v2": created at 1, changed at 2, version 2. b"gone" is missing.
        (Compare.value(b"k", EQ, b"v2"), True),
        (Compare.value(b"k", NE, b"v2"), False),
        (Compare.value(b"k", EQ, b""), False),
        (Compare.value(b"gone", EQ, b""), False),  # missing equals no value, not even b""
        (Compare.value(b"gone", NE, b""), True),
        (Compare.version(b"k", EQ, 2), True),
        (Compare.version(b"k", GT, 1), True),
        (Compare.version(b"k", LT, 2), False),
        (Compare.version(b"k", NE, 2), False),
        (Compare.version(b"gone", EQ, 0), True),
        (Compare.mod_revision(b"k", EQ, 2), True),
        (Compare.mod_revision(b"k", GT, 2), False),
        (Compare.mod_revision(b"k", LT, 3), True),
        (Compare.mod_revision(b"gone", EQ, 0), True),
        (Compare.exists(b"k"), True),
        (Compare.exists(b"k", False), False),
        (Compare.exists(b"gone"), False),
        (Compare.exists(b"gone", False), True),
        (Compare(b"gone", CompareTarget.EXISTS, NE, True), True),
    ],
)
def test_compare(host: Host, compare: Compare, holds: bool) -> None:
    host.run(Put(b"k", b"v1"), Put(b"k", b"v2"))
    result = host.one(Txn([compare], [Get(b"k")], []))
    assert isinstance(result, TxnResult)
    assert result.succeeded is holds


def test_txn_is_all_compares_then_one_branch_in_order(host: Host) -> None:
    host.one(Put(b"a", b"1"))
    txn = Txn(
        [Compare.exists(b"a"), Compare.version(b"a", EQ, 1)],
        [Put(b"b", b"2"), Get(b"b"), Delete(b"a"), Get(b"a"), Put(b"b", b"3")],
        [Put(b"failed", b"")],
    )
    result = host.one(txn)
    assert result == TxnResult(
        True,
        (
            PutResult(0),
            GetResult(b"2", KeyMeta(2, 2, 1)),
            DeleteResult(True, (b"1", KeyMeta(1, 1, 1))),
            GetResult(None, None),
            PutResult(2, (b"2", KeyMeta(2, 2, 1))),
        ),
    )
    assert host.sm.get(b"b") == (b"3", KeyMeta(2, 2, 2))
    assert [(e.sequence, e.kind, e.key) for e in host.sm.events(2)] == [
        (0, EventKind.PUT, b"b"),
        (1, EventKind.DELETE, b"a"),
        (2, EventKind.PUT, b"b"),
    ]
    assert host.one(txn) == TxnResult(False, (PutResult(0),))
    assert host.sm.get(b"failed") is not None


def test_txn_without_compares_takes_the_success_branch(host: Host) -> None:
    assert host.one(Txn([], [Put(b"a", b"")], [Delete(b"a")])) == TxnResult(True, (PutResult(0),))


def test_read_only_txn_does_not_move_the_revision(host: Host) -> None:
    host.one(Put(b"a", b"1"))
    host.one(Txn([], [Get(b"a")]))
    assert host.sm.revision() == 1
    assert host.sm.applied_index() == 2


# --------------------------------------------------------------- batches, replay


def test_applies_in_one_batch_see_each_other_and_reads_see_written_state(host: Host) -> None:
    batch = WriteBatch()
    sm = host.sm
    assert sm.apply(1, encode(Put(b"k", b"1")), batch) == PutResult(0)
    assert sm.apply(2, encode(Put(b"k", b"2")), batch) == PutResult(1, (b"1", KeyMeta(1, 1, 1)))
    assert sm.apply(3, encode(DeleteRange(b"", None)), batch) == DeleteRangeResult(1)
    assert sm.apply(4, encode(compare_and_set(b"k", None, b"3")), batch) == TxnResult(
        True, (PutResult(0),)
    )
    assert sm.apply(4, encode(Put(b"ignored", b"")), batch) == Skipped(4)
    # Nothing is written yet: reads and the stored applied index show the old state.
    assert sm.get(b"k") is None
    assert sm.applied_index() == 0
    host.engine.write(batch)
    sm.batch_written()
    assert sm.get(b"k") == (b"3", KeyMeta(4, 4, 1))
    assert sm.applied_index() == 4
    assert sm.revision() == 4


def test_replay_after_a_crash_skips_what_was_written(open_kv: KvEngineOpener, kv_kind: str) -> None:
    engine = open_kv("db")
    commands: list[Command] = [Put(b"a", b"1"), Put(b"b", b"2"), Delete(b"a"), Put(b"b", b"3")]
    log = [encode(c) for c in commands]
    sm = KvStateMachine(engine, REGION)
    first = WriteBatch()
    results = [sm.apply(i, log[i - 1], first) for i in (1, 2)]
    engine.write(first)
    sm.batch_written()
    second = WriteBatch()
    results += [sm.apply(i, log[i - 1], second) for i in (3, 4)]
    # Crash: the second batch is lost, and the process starts again.
    if kv_kind != "memory":
        engine.close()
        engine = open_kv("db")
    sm = KvStateMachine(engine, REGION)
    assert sm.applied_index() == 2
    replay = WriteBatch()
    replayed = [sm.apply(i, data, replay) for i, data in enumerate(log, start=1)]
    assert replayed == [Skipped(1), Skipped(2), *results[2:]]
    engine.write(replay)
    sm.batch_written()
    assert sm.get(b"a") is None
    assert sm.get(b"b") == (b"3", KeyMeta(2, 4, 2))
    assert [e.revision for e in sm.events(1)] == [1, 2, 3, 4]
    # And a replay of everything after the write stages nothing at all.
    again = WriteBatch()
    assert [sm.apply(i, data, again) for i, data in enumerate(log, start=1)] == [
        Skipped(i) for i in range(1, 5)
    ]
    assert len(again) == 0


def test_batch_discarded_forgets_the_pending_applies(host: Host) -> None:
    host.one(Put(b"a", b"1"))
    batch = WriteBatch()
    first = PutResult(1, (b"1", KeyMeta(1, 1, 1)))
    assert host.sm.apply(2, encode(Put(b"a", b"2")), batch) == first
    host.sm.batch_discarded()
    retry = WriteBatch()
    assert host.sm.apply(2, encode(Put(b"a", b"3")), retry) == first
    host.engine.write(retry)
    host.sm.batch_written()
    assert host.sm.get(b"a") == (b"3", KeyMeta(1, 2, 2))


def test_a_gap_in_indexes_is_a_bug(host: Host) -> None:
    with pytest.raises(InvariantError, match="applied index 0, asked to apply 2"):
        host.sm.apply(2, b"", WriteBatch())


def test_an_undecodable_entry_raises_and_stages_nothing(host: Host) -> None:
    data = bytearray(encode(Put(b"k", b"v")))
    data[-1] ^= 1
    batch = WriteBatch()
    with pytest.raises(CommandError):
        host.sm.apply(1, bytes(data), batch)
    assert len(batch) == 0
    assert host.sm.apply(1, encode(Put(b"k", b"v")), batch) == PutResult(0)


# ------------------------------------------------------------------------ reads


def test_scan_bounds_limit_and_reverse(host: Host) -> None:
    keys = [b"", b"a", b"ab", b"b", b"c", b"\xff", b"\xff\xff"]
    host.run(*(Put(k, k.upper()) for k in keys))
    assert [kv.key for kv in host.sm.scan()] == keys
    assert [kv.key for kv in host.sm.scan(b"a", b"c")] == [b"a", b"ab", b"b"]
    assert [kv.key for kv in host.sm.scan(b"a", b"c", reverse=True)] == [b"b", b"ab", b"a"]
    assert [kv.key for kv in host.sm.scan(b"a", limit=2)] == [b"a", b"ab"]
    assert [kv.key for kv in host.sm.scan(limit=2, reverse=True)] == [b"\xff\xff", b"\xff"]
    assert host.sm.scan(b"c", b"a") == []
    assert host.sm.scan(b"b", b"b") == []
    assert host.sm.scan(b"ab", b"ab\x00") == [KeyValue(b"ab", b"AB", KeyMeta(3, 3, 1))]
    with pytest.raises(ValueError):
        host.sm.scan(limit=0)


def test_regions_in_one_engine_are_isolated(open_kv: KvEngineOpener) -> None:
    engine = open_kv("db")
    one, two = Host(engine, 1), Host(engine, 2)
    one.run(Put(b"k", b"one"), Put(b"only-one", b""))
    two.run(Put(b"k", b"two"))
    two.run(DeleteRange(b"", None))
    assert one.sm.scan() == [
        KeyValue(b"k", b"one", KeyMeta(1, 1, 1)),
        KeyValue(b"only-one", b"", KeyMeta(2, 2, 1)),
    ]
    assert two.sm.scan() == []
    assert (one.sm.applied_index(), two.sm.applied_index()) == (2, 2)
    assert [e.key for e in one.sm.events(1)] == [b"k", b"only-one"]


def test_engine_keys_follow_the_layout(host: Host) -> None:
    host.run(Put(b"k", b"v"), Delete(b"k"), Put(b"j", b""))
    keys = [k for k, _ in host.engine.scan()]
    tags = {k[:9] for k in keys}
    assert tags == {b"\x02" + REGION.to_bytes(8, "big"), b"\x03" + REGION.to_bytes(8, "big")}
    assert b"\x02\x00\x00\x00\x00\x00\x00\x00\x01\x01j" in keys
    assert b"\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00applied_index" in keys
    assert b"\x03\x00\x00\x00\x00\x00\x00\x00\x01" + (2).to_bytes(8, "big") + bytes(4) in keys


def test_a_damaged_stored_record_is_corruption(host: Host) -> None:
    host.one(Put(b"k", b"v"))
    data_key = RegionKeys(REGION).data_key(b"k")
    host.engine.put(data_key, b"\x07junk")
    with pytest.raises(CorruptionError, match=data_key.hex()):
        host.sm.get(b"k")
    with pytest.raises(CorruptionError):
        host.sm.apply(2, encode(Put(b"k", b"w")), WriteBatch())


# --------------------------------------------------------------- event history


def test_events_from_a_revision_sequence_and_prefix(host: Host) -> None:
    host.run(
        Put(b"a/1", b"x"),
        Txn([], [Put(b"b/1", b"y"), Put(b"a/2", b"z"), Delete(b"a/1")]),
        Put(b"a/2", b""),
    )
    put = EventKind.PUT
    everything = [
        Event(1, 0, put, b"a/1", b"x", KeyMeta(1, 1, 1)),
        Event(2, 0, put, b"b/1", b"y", KeyMeta(2, 2, 1)),
        Event(2, 1, put, b"a/2", b"z", KeyMeta(2, 2, 1)),
        Event(2, 2, EventKind.DELETE, b"a/1", b"", KeyMeta(0, 2, 0)),
        Event(3, 0, put, b"a/2", b"", KeyMeta(2, 3, 2)),
    ]
    assert host.sm.events(1) == everything
    assert host.sm.events(2, from_sequence=1) == everything[2:]
    assert host.sm.events(1, prefix=b"a/") == [everything[i] for i in (0, 2, 3, 4)]
    assert host.sm.events(1, prefix=b"a/", limit=2) == [everything[0], everything[2]]
    assert host.sm.events(4) == []
    with pytest.raises(ValueError):
        host.sm.events(0)


def test_compacted_history_raises_with_the_compact_revision(host: Host) -> None:
    host.run(*(Put(b"k", b"%d" % i) for i in range(5)))
    assert host.sm.compact_revision() == 0
    host.sm.compact_history(3)
    assert host.sm.compact_revision() == 3
    assert [e.revision for e in host.sm.events(3)] == [3, 4, 5]
    with pytest.raises(Compacted) as caught:
        host.sm.events(2)
    assert (caught.value.compact_revision, caught.value.requested_revision) == (3, 2)
    host.sm.compact_history(2)  # older: nothing happens
    assert host.sm.compact_revision() == 3
    host.sm.compact_history(6)  # everything up to the applied index
    assert host.sm.events(6) == []
    with pytest.raises(ValueError):
        host.sm.compact_history(7)
    host.one(Put(b"k", b"next"))
    assert [e.revision for e in host.sm.events(6)] == [6]


def test_compaction_survives_reopen(open_durable_kv: KvEngineOpener) -> None:
    open_kv = open_durable_kv
    engine = open_kv("db")
    Host(engine).run(*(Put(b"k", b"%d" % i) for i in range(4)))
    KvStateMachine(engine, REGION).compact_history(3)
    engine.close()
    sm = KvStateMachine(open_kv("db"), REGION)
    assert sm.compact_revision() == 3
    assert [e.revision for e in sm.events(3)] == [3, 4]
    assert sm.get(b"k") == (b"3", KeyMeta(1, 4, 4))
