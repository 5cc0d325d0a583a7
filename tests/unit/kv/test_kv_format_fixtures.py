"""Bytes written by version 1 of the KV formats stay readable (shared/STYLE.md §8).

tests/fixtures/formats/v1/kv.txt was written once by this module's `write_fixture`
(run `PYTHONPATH=src python tests/unit/kv/test_kv_format_fixtures.py`, which refuses
to overwrite it) and is never regenerated: a format change gets a new version and a
new file, and this test keeps reading v1. Layouts: docs/formats/kv.md.

The file holds one record a line, `name hex [hex]`, after `#` comment lines:

- `command_*`: one encoded command each (§1), the commands of `COMMANDS`;
- `key_record`, `event_put`, `event_delete`: stored records (§3, §4);
- `engine key value`: every engine entry of region 1 after `SCRIPT` and a history
  compaction at revision 3, in key order (§2);
- `snapshot_chunk`: that region's snapshot, cut at 32 bytes a chunk (§5).

Each test checks both directions: today's reader decodes the v1 bytes to the
expected records, and today's writer still produces exactly the v1 bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from atoll.engine import Engine, WriteBatch, open_engine
from atoll.kv import (
    Command,
    Compare,
    CompareOp,
    Delete,
    DeleteRange,
    Event,
    EventKind,
    Get,
    KeyMeta,
    KeyValue,
    KvStateMachine,
    Noop,
    Put,
    Txn,
    decode,
    encode,
)
from atoll.kv.layout import (
    decode_event_record,
    decode_key_record,
    encode_event_record,
    encode_key_record,
)
from atoll.kv.snapshot_format import SnapshotChunk, decode_chunk

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "formats" / "v1" / "kv.txt"

COMMANDS: dict[str, Command] = {
    "command_put": Put(b"greeting", b"hello"),
    "command_put_empty_value": Put(b"k", b""),
    "command_delete": Delete(b"greeting"),
    "command_delete_range": DeleteRange(b"a", b"m"),
    "command_delete_range_to_end": DeleteRange(b"m", None),
    "command_noop": Noop(),
    "command_txn": Txn(
        [
            Compare.value(b"k", CompareOp.EQUAL, b"old"),
            Compare.version(b"k", CompareOp.GREATER, 1),
            Compare.mod_revision(b"k", CompareOp.LESS, 0x0102030405060708),
            Compare.exists(b"lock", False),
        ],
        [Put(b"k", b"new"), DeleteRange(b"tmp/", b"tmp0"), Get(b"k")],
        [Get(b"k"), Delete(b"lock")],
    ),
}
KEY_RECORD = (b"hello", KeyMeta(create_revision=3, mod_revision=7, version=2))
EVENT_PUT = Event(7, 1, EventKind.PUT, b"greeting", b"hello", KeyMeta(3, 7, 2))
EVENT_DELETE = Event(8, 0, EventKind.DELETE, b"greeting", b"", KeyMeta(0, 8, 0))

REGION = 1
# Applied at indexes 1..7 (b"" is an entry that is not a KV command), then the history
# is compacted at revision 3.
SCRIPT: list[Command | bytes] = [
    Put(b"a", b"1"),
    Put(b"b", b""),
    Txn([Compare.exists(b"a")], [Put(b"a", b"2"), Delete(b"b")]),
    b"",
    Put(b"c", b"x" * 40),
    DeleteRange(b"c", None),
    Put(b"d", b"4"),
]
COMPACT_AT = 3
CHUNK_BYTES = 32
# What the region holds after SCRIPT, spelled out again independently of it.
EXPECTED_KEYS = [
    KeyValue(b"a", b"2", KeyMeta(1, 3, 2)),
    KeyValue(b"d", b"4", KeyMeta(7, 7, 1)),
]
EXPECTED_EVENTS = [
    Event(3, 0, EventKind.PUT, b"a", b"2", KeyMeta(1, 3, 2)),
    Event(3, 1, EventKind.DELETE, b"b", b"", KeyMeta(0, 3, 0)),
    Event(5, 0, EventKind.PUT, b"c", b"x" * 40, KeyMeta(5, 5, 1)),
    Event(6, 0, EventKind.DELETE, b"c", b"", KeyMeta(0, 6, 0)),
    Event(7, 0, EventKind.PUT, b"d", b"4", KeyMeta(7, 7, 1)),
]


def run_script(engine: Engine) -> KvStateMachine:
    sm = KvStateMachine(engine, REGION)
    batch = WriteBatch()
    for index, entry in enumerate(SCRIPT, start=1):
        sm.apply(index, entry if isinstance(entry, bytes) else encode(entry), batch)
    engine.write(batch)
    sm.batch_written()
    sm.compact_history(COMPACT_AT)
    return sm


def fixture_lines() -> list[tuple[str, list[bytes]]]:
    """The records of the fixture, as today's code writes them."""
    lines: list[tuple[str, list[bytes]]] = [
        (name, [encode(command)]) for name, command in COMMANDS.items()
    ]
    lines.append(("key_record", [encode_key_record(*KEY_RECORD)]))
    for name, event in (("event_put", EVENT_PUT), ("event_delete", EVENT_DELETE)):
        lines.append((name, [encode_event_record(event.kind, event.key, event.value, event.meta)]))
    engine = open_engine("", kind="memory")
    try:
        sm = run_script(engine)
        lines += [("engine", [key, value]) for key, value in engine.scan()]
        with engine.snapshot() as snapshot:
            lines += [("snapshot_chunk", [c]) for c in sm.snapshot_chunks(snapshot, CHUNK_BYTES)]
    finally:
        engine.close()
    return lines


def read_fixture() -> list[tuple[str, list[bytes]]]:
    lines = []
    for line in FIXTURE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, *fields = line.split(" ")
        lines.append((name, [bytes.fromhex(f) for f in fields]))
    return lines


def records(name: str) -> list[list[bytes]]:
    return [fields for n, fields in read_fixture() if n == name]


def write_fixture(path: Path) -> None:
    header = [
        "# KV formats, version 1 (docs/formats/kv.md).",
        "# Written once by tests/unit/kv/test_kv_format_fixtures.py; never regenerated.",
        "# name hex [hex]",
    ]
    body = [" ".join([name, *(f.hex() for f in fields)]) for name, fields in fixture_lines()]
    with open(path, "x") as f:
        f.write("\n".join(header + body) + "\n")


# ------------------------------------------------------------------------ tests


def test_fixture_holds_every_kind_of_record() -> None:
    names = {name for name, _ in read_fixture()}
    assert names == {
        *COMMANDS,
        "key_record",
        "event_put",
        "event_delete",
        "engine",
        "snapshot_chunk",
    }


@pytest.mark.parametrize("name", list(COMMANDS))
def test_v1_commands_decode_and_encode_the_same(name: str) -> None:
    ((data,),) = records(name)
    assert decode(data) == COMMANDS[name]
    assert encode(COMMANDS[name]) == data


def test_v1_records_decode_and_encode_the_same() -> None:
    ((key_record,),) = records("key_record")
    assert decode_key_record(key_record) == KEY_RECORD
    assert encode_key_record(*KEY_RECORD) == key_record
    for name, event in (("event_put", EVENT_PUT), ("event_delete", EVENT_DELETE)):
        ((record,),) = records(name)
        assert decode_event_record(event.revision, event.sequence, record) == event
        assert encode_event_record(event.kind, event.key, event.value, event.meta) == record


def test_v1_engine_contents_read_as_the_region() -> None:
    engine = open_engine("", kind="memory")
    try:
        for key, value in records("engine"):
            engine.put(key, value)
        sm = KvStateMachine(engine, REGION)
        assert sm.scan() == EXPECTED_KEYS
        assert sm.get(b"b") is None
        assert (sm.applied_index(), sm.revision(), sm.compact_revision()) == (7, 7, COMPACT_AT)
        assert sm.events(COMPACT_AT) == EXPECTED_EVENTS
    finally:
        engine.close()


def test_v1_engine_contents_are_what_the_script_writes_today() -> None:
    assert [(n, f) for n, f in fixture_lines() if n == "engine"] == [
        ("engine", f) for f in records("engine")
    ]


def test_v1_snapshot_restores_and_is_cut_the_same_today() -> None:
    chunks = [data for (data,) in records("snapshot_chunk")]
    assert [decode_chunk(c, i) for i, c in enumerate(chunks)] == [
        SnapshotChunk(REGION, 7, 7, 0, False, [(b"a", encode_key_record(b"2", KeyMeta(1, 3, 2)))]),
        SnapshotChunk(REGION, 7, 7, 1, True, [(b"d", encode_key_record(b"4", KeyMeta(7, 7, 1)))]),
    ]
    engine = open_engine("", kind="memory")
    try:
        sm = KvStateMachine(engine, REGION)
        sm.restore(chunks)
        assert sm.scan() == EXPECTED_KEYS
        assert (sm.applied_index(), sm.revision(), sm.compact_revision()) == (7, 7, 8)
    finally:
        engine.close()
    assert [f for n, (f, *_) in fixture_lines() if n == "snapshot_chunk"] == chunks


if __name__ == "__main__":
    if FIXTURE.exists():
        print(f"{FIXTURE} exists: released fixtures are never regenerated", file=sys.stderr)
        sys.exit(1)
    os.makedirs(FIXTURE.parent, exist_ok=True)
    write_fixture(FIXTURE)
