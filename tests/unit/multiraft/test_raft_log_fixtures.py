"""Records written by format version 1 of the Raft log store stay readable (STYLE §8).

tests/fixtures/formats/v1/raft_log.txt was written once by
tests/fixtures/formats/make_raft_log_fixtures.py and is never regenerated; the layout
is docs/formats/raft_log.md. What it holds is spelled out here again, independently
of the generator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.engine import WriteBatch, open_engine
from atoll.multiraft.errors import LogCorruption
from atoll.multiraft.log_format import (
    RecordKind,
    decode_entry,
    decode_hard_state,
    decode_log_base,
    decode_snapshot,
    encode_entry,
    encode_hard_state,
    encode_log_base,
    encode_snapshot,
    record_key,
)
from atoll.multiraft.log_store import LogStore
from atoll.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    PersistedState,
    Snapshot,
    SnapshotMeta,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "formats" / "v1" / "raft_log.txt"

META = SnapshotMeta(index=10, term=4, conf=ConfState(frozenset({1, 2, 3}), frozenset({4})))
CONF_CHANGE_ADD_LEARNER_5 = bytes([2]) + (5).to_bytes(8, "big")

# (name, group, decoded record), in the file's order.
EXPECTED: list[tuple[str, int, object]] = [
    ("hard_state", 7, HardState(term=5, vote=2, commit=12)),
    ("log_base", 7, META),
    ("snapshot", 7, Snapshot(META, b"state machine image")),
    ("entry", 7, Entry(term=4, index=11, type=EntryType.NORMAL, data=b"put k v")),
    (
        "entry",
        7,
        Entry(term=5, index=12, type=EntryType.CONF_CHANGE, data=CONF_CHANGE_ADD_LEARNER_5),
    ),
    ("entry", 7, Entry(term=5, index=13, type=EntryType.NORMAL, data=b"")),
    ("entry", 0x0102030405060708, Entry(term=9, index=0x1122334455667788, data=b"byte order")),
]


def read_fixture() -> list[tuple[str, bytes, bytes]]:
    records = []
    for line in FIXTURE.read_text(encoding="ascii").splitlines():
        if line and not line.startswith("#"):
            name, key_hex, value_hex = line.split(" ")
            records.append((name, bytes.fromhex(key_hex), bytes.fromhex(value_hex)))
    return records


def decode(name: str, key: bytes, value: bytes) -> object:
    decoders = {
        "hard_state": decode_hard_state,
        "log_base": decode_log_base,
        "snapshot": decode_snapshot,
        "entry": decode_entry,
    }
    return decoders[name](key, value)


def encode(name: str, group: int, record: object) -> tuple[bytes, bytes]:
    if isinstance(record, HardState):
        return encode_hard_state(group, record)
    if isinstance(record, SnapshotMeta):
        return encode_log_base(group, record)
    if isinstance(record, Snapshot):
        return encode_snapshot(group, record)
    assert isinstance(record, Entry), name
    return encode_entry(group, record)


def test_the_fixture_holds_the_expected_records() -> None:
    records = read_fixture()
    assert [name for name, _, _ in records] == [name for name, _, _ in EXPECTED]
    for (name, key, value), (_, _, record) in zip(records, EXPECTED, strict=True):
        assert decode(name, key, value) == record


def test_the_encoder_still_writes_the_v1_bytes() -> None:
    records = read_fixture()
    for (name, key, value), (_, group, record) in zip(records, EXPECTED, strict=True):
        assert encode(name, group, record) == (key, value)


def test_keys_and_values_start_with_their_version_bytes() -> None:
    for _, key, value in read_fixture():
        assert key[:2] == b"\x01\x01"  # raft log keyspace, key layout 1
        assert value[0] == 1  # value format 1


def test_a_log_of_fixture_records_loads(tmp_path: Path) -> None:
    db = open_engine(str(tmp_path / "db"), kind="memory")
    try:
        for _, key, value in read_fixture():
            db.put(key, value)
        store = LogStore(db)
        assert store.groups() == [7, 0x0102030405060708]
        entries = tuple(r for _, g, r in EXPECTED if g == 7 and isinstance(r, Entry))
        assert store.load(7) == PersistedState(HardState(5, 2, 12), META, entries)
        # The snapshot record is no longer written or read by the store (raft_log.md
        # §2.4), but it stays decodable: data dirs of version 1 hold such records.
        key = record_key(7, RecordKind.SNAPSHOT)
        raw = db.get(key)
        assert raw is not None
        assert decode_snapshot(key, raw) == Snapshot(META, b"state machine image")
        # The lone entry of the other group is not a log: there is no entry 1.
        with pytest.raises(LogCorruption, match="where entry 1 was expected"):
            store.load(0x0102030405060708)
    finally:
        db.close()


def test_compacting_a_fixture_log_deletes_its_snapshot_record(tmp_path: Path) -> None:
    db = open_engine(str(tmp_path / "db"), kind="memory")
    try:
        for _, key, value in read_fixture():
            db.put(key, value)
        store = LogStore(db)
        to = SnapshotMeta(index=12, term=5, conf=META.conf)
        batch = WriteBatch()
        store.compact(batch, 7, to)
        store.write(batch, sync=True)
        assert db.get(record_key(7, RecordKind.SNAPSHOT)) is None
        last = Entry(term=5, index=13, type=EntryType.NORMAL, data=b"")
        assert store.load(7) == PersistedState(HardState(5, 2, 12), to, (last,))
    finally:
        db.close()
