"""Bytes written by format version 1 of the LSM engine stay readable (STYLE §8).

The fixtures in tests/fixtures/formats/v1/ were written once by
tests/fixtures/formats/make_fixtures.py and are never regenerated; the layouts are in
docs/formats.md. What they must contain is spelled out here again, independently of
the generator.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.engine import open_engine
from atoll.engine.batch_codec import decode_batch, encode_batch
from atoll.engine.block_cache import BlockCache
from atoll.engine.compaction_job import table_path
from atoll.engine.log_format import FILE_KIND_WAL, WAL_MAGIC, file_header, frame, parse_log
from atoll.engine.manifest import load_manifest, read_current
from atoll.engine.sstable_reader import TableReader
from atoll.engine.sstable_writer import write_table

V1 = Path(__file__).resolve().parents[2] / "fixtures" / "formats" / "v1"

PUT, DELETE = 1, 0  # WAL op codes (docs/formats.md §2)
VALUE, TOMBSTONE = 1, 0  # SSTable entry kinds (docs/formats.md §3.2)

# ------------------------------------------------------------------ engine/ contents

# The two batches written after the last flush, so only in the WAL: (op, key, value).
WAL_TAIL = [
    [
        (PUT, b"k001", b"y001"),
        (DELETE, b"k002", b""),
        (PUT, b"t00", b"tail-0"),
        (PUT, b"t01", b"tail-1"),
    ],
    [(DELETE, b"t00", b""), (PUT, b"k199", b"y199")],
]


def expected_engine_contents() -> dict[bytes, bytes]:
    model: dict[bytes, bytes] = {}
    # Phase 1 (flushed, then compacted to level >= 1).
    for i in range(200):
        model[b"k%03d" % i] = (b"v%03d." % i) * (1 + i % 4)
    for i in range(0, 200, 5):
        model[b"k%03d" % i] = b"w%03d" % i
    for i in range(0, 200, 7):
        model.pop(b"k%03d" % i, None)
    # Phase 2 (one batch, flushed to level 0).
    for i in range(3, 200, 11):
        model.pop(b"k%03d" % i, None)
    for i in range(1, 200, 13):
        model[b"k%03d" % i] = b"x%03d" % i
    # Phase 3 (WAL only).
    for batch in WAL_TAIL:
        for op, key, value in batch:
            if op == PUT:
                model[key] = value
            else:
                model.pop(key, None)
    return model


@pytest.fixture
def engine_copy(tmp_path: Path) -> Path:
    """A private copy: opening an engine writes a new MANIFEST and removes the old."""
    dst = tmp_path / "engine"
    shutil.copytree(V1 / "engine", dst)
    return dst


def test_engine_directory_holds_the_v1_file_kinds() -> None:
    names = sorted(os.listdir(V1 / "engine"))
    assert "LOCK" in names
    assert "CURRENT" in names
    assert any(n.startswith("MANIFEST-") for n in names)
    assert any(n.endswith(".sst") for n in names)
    assert any(n.endswith(".log") for n in names)
    assert (V1 / "engine" / "CURRENT").read_bytes() in {
        f"{n}\n".encode() for n in names if n.startswith("MANIFEST-")
    }


def test_manifest_names_readable_tables_at_level_0_and_deeper(engine_copy: Path) -> None:
    number = read_current(str(engine_copy))
    assert number is not None
    state = load_manifest(str(engine_copy), number)
    levels = state.version.levels
    assert levels[0], "the phase-2 flush left a level-0 table"
    assert any(levels[1:]), "compact_range moved phase 1 below level 0"
    cache = BlockCache(1 << 20)
    for table in state.version.tables():
        reader = TableReader(table_path(str(engine_copy), table.number), table.number, cache)
        try:
            assert reader.size == table.size
            assert reader.entries == table.entries
            keys = [k for block in reader.all_columns() for k in block[0]]
            assert keys[0] == table.smallest
            assert keys[-1] == table.largest
            assert keys == sorted(keys)
        finally:
            reader.close()
    # Level-1+ tables were compacted at the bottom: no tombstones are left in them.
    deep = [t for level in levels[1:] for t in level]
    assert sum(t.entries for t in deep) == 171


def test_wal_holds_exactly_the_unflushed_batches(engine_copy: Path) -> None:
    number = read_current(str(engine_copy))
    assert number is not None
    state = load_manifest(str(engine_copy), number)
    live_logs = sorted(
        n for n in os.listdir(engine_copy) if n.endswith(".log") and int(n[:-4]) >= state.log_number
    )
    batches = []
    for name in live_logs:
        path = str(engine_copy / name)
        contents = parse_log((engine_copy / name).read_bytes(), WAL_MAGIC, FILE_KIND_WAL, path)
        assert not contents.torn_tail
        batches += [decode_batch(record, path) for record in contents.records]
    assert [
        list(zip(ops, keys, values, strict=True)) for _, ops, keys, values in batches
    ] == WAL_TAIL
    first, *rest = [b[0] for b in batches]
    assert rest == [first + len(WAL_TAIL[0])]
    newest_in_tables = max(t.largest_seq for t in state.version.tables())
    assert first > newest_in_tables


def test_engine_opens_with_the_expected_contents(engine_copy: Path) -> None:
    expected = expected_engine_contents()
    db = open_engine(str(engine_copy), kind="lsm", background="thread", memtable_size_bytes=4096)
    try:
        assert list(db.scan()) == sorted(expected.items())
        assert list(db.scan(reverse=True)) == sorted(expected.items(), reverse=True)
        for i in range(200):
            key = b"k%03d" % i
            assert db.get(key) == expected.get(key)
        assert db.get(b"t00") is None
        assert db.get(b"t01") == b"tail-1"
    finally:
        db.close()
    # And again after the recovery above rewrote the MANIFEST and flushed the WAL.
    db = open_engine(str(engine_copy), kind="lsm", background="thread", memtable_size_bytes=4096)
    try:
        assert list(db.scan()) == sorted(expected.items())
    finally:
        db.close()


# ------------------------------------------------------------------ wal_record.bin

WAL_RECORD = (42, bytes([PUT, DELETE, PUT]), [b"alpha", b"beta", b""], [b"one", b"", b"empty key"])


def test_wal_record_parses() -> None:
    data = (V1 / "wal_record.bin").read_bytes()
    contents = parse_log(data, WAL_MAGIC, FILE_KIND_WAL, "wal_record.bin")
    assert contents.valid_end == len(data)
    assert not contents.torn_tail
    assert len(contents.records) == 1
    assert decode_batch(contents.records[0], "wal_record.bin") == WAL_RECORD


def test_wal_record_cut_short_is_a_torn_tail() -> None:
    data = (V1 / "wal_record.bin").read_bytes()
    contents = parse_log(data[:-1], WAL_MAGIC, FILE_KIND_WAL, "wal_record.bin")
    assert contents.records == []
    assert contents.torn_tail
    assert contents.valid_end == 16


# ------------------------------------------------------------------ sstable.sst

# (key, seq, value or None for a tombstone), sorted by key asc, seq desc.
SSTABLE_ENTRIES: list[tuple[bytes, int, bytes | None]] = [
    (b"apple", 3, b"red"),
    (b"banana", 9, b"yellow, ripe"),
    (b"banana", 4, b"green"),
    (b"cherry", 10, None),
    (b"date", 5, b"brown"),
    (b"elderberry", 6, b"black" * 8),
    (b"fig", 11, None),
    (b"grape", 7, b"purple"),
    (b"kiwi", 8, b""),
]


@pytest.fixture
def sstable() -> Iterator[TableReader]:
    reader = TableReader(str(V1 / "sstable.sst"), 7, BlockCache(1 << 20))
    yield reader
    reader.close()


def test_sstable_footer_and_index(sstable: TableReader) -> None:
    assert sstable.entries == len(SSTABLE_ENTRIES)
    assert len(sstable.offsets) > 1, "the fixture has several data blocks"
    assert sstable.offsets[0] == 16  # right after the file header
    assert sstable.last_keys == sorted(sstable.last_keys)
    assert sstable.last_keys[-1] == b"kiwi"


def test_sstable_blocks_hold_every_entry(sstable: TableReader) -> None:
    got = []
    for keys, seqs, values in sstable.all_columns():
        got += list(zip(keys, seqs, values, strict=True))
    assert got == SSTABLE_ENTRIES


def test_sstable_point_reads(sstable: TableReader) -> None:
    assert sstable.get(b"apple", 100) == (True, b"red")
    assert sstable.get(b"banana", 100) == (True, b"yellow, ripe")
    assert sstable.get(b"banana", 8) == (True, b"green")
    assert sstable.get(b"banana", 3) == (False, None)
    assert sstable.get(b"cherry", 100) == (True, None)  # tombstone
    assert sstable.get(b"kiwi", 100) == (True, b"")
    assert sstable.get(b"fig", 100) == (True, None)
    for absent in (b"", b"apricot", b"zebra"):
        assert sstable.get(absent, 100) == (False, None)
    for key, _, _ in SSTABLE_ENTRIES:
        assert sstable.bloom.may_contain(key)


def test_sstable_forward_iteration(sstable: TableReader) -> None:
    assert list(sstable.iterate(b"", None, False)) == [(k, -s, v) for k, s, v in SSTABLE_ENTRIES]
    assert list(sstable.iterate(b"banana", b"date", False)) == [
        (k, -s, v) for k, s, v in SSTABLE_ENTRIES[1:4]
    ]


def test_sstable_reverse_iteration(sstable: TableReader) -> None:
    # Entry order going backward (sstable_reader.Entry): user key descending, and a
    # key's versions in stored order reversed (oldest first), with +seq.
    assert list(sstable.iterate(b"", None, True)) == list(reversed(SSTABLE_ENTRIES))


# ------------------------------------------------------------------ the current writer


def test_current_writer_still_emits_v1_bytes(tmp_path: Path) -> None:
    """While format version 1 is current, the writers reproduce the fixtures byte for
    byte (both are deterministic). When a version 2 is introduced, point this test at
    the v2 fixtures; the v1 readers' tests above stay."""
    first_seq, ops, keys, values = WAL_RECORD
    wal = file_header(WAL_MAGIC, FILE_KIND_WAL) + frame(encode_batch(first_seq, ops, keys, values))
    assert wal == (V1 / "wal_record.bin").read_bytes()

    path = tmp_path / "000007.sst"
    write_table(
        str(path),
        7,
        [k for k, _, _ in SSTABLE_ENTRIES],
        [s for _, s, _ in SSTABLE_ENTRIES],
        bytes(TOMBSTONE if v is None else VALUE for _, _, v in SSTABLE_ENTRIES),
        [b"" if v is None else v for _, _, v in SSTABLE_ENTRIES],
        block_size=64,
        bloom_bits_per_key=10,
    )
    assert path.read_bytes() == (V1 / "sstable.sst").read_bytes()
