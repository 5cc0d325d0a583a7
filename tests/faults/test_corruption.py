"""Damaged files of the LSM engine: a torn or garbage WAL tail recovers; a flipped byte
anywhere else is a `CorruptionError` naming the file, never silently wrong or missing
data (shared/STYLE.md §9, tests/faults/).

Each test writes through the engine, closes it, damages one file on disk and reopens.
Compaction is kept out of the way (a high level-0 trigger, background "thread") so that
the damage is found by the read or the open under test, not by a background job,
except in the tests about compaction itself.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from atoll.engine import BackgroundError, CorruptionError, Engine, WriteBatch, open_engine
from atoll.engine.log_format import (
    FILE_HEADER_SIZE,
    FILE_KIND_MANIFEST,
    FILE_KIND_WAL,
    MANIFEST_MAGIC,
    RECORD_HEADER_SIZE,
    WAL_MAGIC,
    frame,
    parse_log,
)
from atoll.engine.lsm import LsmEngine
from atoll.engine.sstable_format import FOOTER, FOOTER_SIZE

QUIET: dict[str, Any] = {
    "background": "thread",
    "level0_compaction_trigger": 8,
    "block_size_bytes": 1024,
}
BATCHES = 10
KEYS_PER_BATCH = 5


def batch_items(i: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"w%03d/%d" % (i, j), b"value %d of batch %d;" % (j, i) * (1 + j))
        for j in range(KEYS_PER_BATCH)
    ]


def open_quiet(path: Path, **options: Any) -> Engine:
    return open_engine(str(path), kind="lsm", **{**QUIET, **options})


def write_batches(engine: Engine, batches: range) -> None:
    for i in batches:
        batch = WriteBatch()
        for key, value in batch_items(i):
            batch.put(key, value)
        engine.write(batch, sync=True)


def contents(engine: Engine) -> dict[bytes, bytes]:
    return dict(engine.scan())


def expected(batches: range) -> dict[bytes, bytes]:
    return {k: v for i in batches for k, v in batch_items(i)}


def only_file(path: Path, pattern: str) -> Path:
    found = sorted(path.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {path}, found {found}"
    return found[0]


def records(path: Path, magic: bytes, kind: int) -> list[tuple[int, int]]:
    """(offset, payload length) of every record of an undamaged log file."""
    parsed = parse_log(path.read_bytes(), magic, kind, str(path))
    assert not parsed.torn_tail
    out = []
    offset = FILE_HEADER_SIZE
    for payload in parsed.records:
        out.append((offset, len(payload)))
        offset += RECORD_HEADER_SIZE + len(payload)
    return out


def flip(path: Path, offset: int, mask: int = 0x10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def assert_names(err: CorruptionError, path: Path) -> None:
    assert err.file == str(path)
    assert str(path) in str(err)


# ------------------------------------------------------------------ WAL


@pytest.fixture
def wal_only(tmp_path: Path) -> tuple[Path, Path]:
    """A directory whose data is all in one WAL segment (the memtable never filled)."""
    db = tmp_path / "db"
    engine = open_quiet(db)
    write_batches(engine, range(BATCHES))
    engine.close()
    return db, only_file(db, "*.log")


def torn(data: bytes, last: tuple[int, int], how: str) -> bytes:
    """`data` with its last record (at offset, of payload length) torn as `how` says."""
    offset, length = last
    body = offset + RECORD_HEADER_SIZE
    if how == "last byte cut":
        return data[:-1]
    if how == "half the last payload cut":
        return data[: body + length // 2]
    if how == "only the last header left":
        return data[:body]
    if how == "3 bytes of the last header left":
        return data[: offset + 3]
    assert how == "last payload zeroed"
    return data[:body] + bytes(length)


TORN_TAILS = [
    "last byte cut",
    "half the last payload cut",
    "only the last header left",
    "3 bytes of the last header left",
    "last payload zeroed",
]

GARBAGE_TAILS: dict[str, bytes] = {
    "zero-filled": bytes(4096),
    "random bytes": random.Random(7).randbytes(333),
    "a header promising more than the file holds": frame(b"x" * 1000)[:20],
    "one stray byte": b"\x00",
}


@pytest.mark.parametrize("how", TORN_TAILS)
def test_wal_torn_last_record_is_dropped_and_the_rest_recovers(
    wal_only: tuple[Path, Path], how: str
) -> None:
    db, wal = wal_only
    last = records(wal, WAL_MAGIC, FILE_KIND_WAL)[-1]
    wal.write_bytes(torn(wal.read_bytes(), last, how))

    engine = open_quiet(db)
    assert contents(engine) == expected(range(BATCHES - 1))
    # The engine goes on from the recovered state, across another reopen.
    write_batches(engine, range(BATCHES, BATCHES + 2))
    engine.close()
    engine = open_quiet(db)
    assert contents(engine) == expected(range(BATCHES - 1)) | expected(range(BATCHES, BATCHES + 2))
    engine.close()


@pytest.mark.parametrize("garbage", list(GARBAGE_TAILS), ids=list(GARBAGE_TAILS))
def test_wal_garbage_after_the_last_record_recovers_everything(
    wal_only: tuple[Path, Path], garbage: str
) -> None:
    db, wal = wal_only
    with open(wal, "ab") as f:
        f.write(GARBAGE_TAILS[garbage])

    engine = open_quiet(db)
    assert contents(engine) == expected(range(BATCHES))
    write_batches(engine, range(BATCHES, BATCHES + 1))
    engine.close()
    engine = open_quiet(db)
    assert contents(engine) == expected(range(BATCHES + 1))
    engine.close()


@pytest.mark.parametrize("where", ["payload", "checksum"])
def test_wal_damaged_record_before_good_ones_is_corruption_at_open(
    wal_only: tuple[Path, Path], where: str
) -> None:
    db, wal = wal_only
    offset, length = records(wal, WAL_MAGIC, FILE_KIND_WAL)[2]
    flip(wal, offset + (RECORD_HEADER_SIZE + length // 2 if where == "payload" else 5))
    damaged = wal.read_bytes()

    for _ in range(2):  # the failed open released the directory and changed nothing
        with pytest.raises(CorruptionError) as info:
            open_quiet(db)
        assert_names(info.value, wal)
        assert info.value.offset == offset
        assert f"offset {offset}" in str(info.value)
        assert wal.read_bytes() == damaged


@pytest.mark.parametrize("byte", [0, 3], ids=["low length byte", "high length byte"])
def test_wal_damaged_length_of_a_middle_record_is_corruption_not_a_torn_tail(
    wal_only: tuple[Path, Path], byte: int
) -> None:
    # The damaged length no longer leads to the next record; recovery must not take the
    # rest of the file (acknowledged batches) for a torn tail and cut it off.
    db, wal = wal_only
    offset, _ = records(wal, WAL_MAGIC, FILE_KIND_WAL)[2]
    flip(wal, offset + byte, 0x40)
    damaged = wal.read_bytes()

    with pytest.raises(CorruptionError) as info:
        open_quiet(db)
    assert_names(info.value, wal)
    assert info.value.offset == offset
    assert wal.read_bytes() == damaged


class HeldRunner:
    """A background job runner that holds every job until released, then fails it, so
    that sealed WAL segments are never flushed (a crash before the flush finished)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, job: str, spec: object, inputs: list[Any]) -> Any:
        self.release.wait(30)
        raise RuntimeError(f"{job} held back by the test")


@pytest.fixture
def two_segments(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A directory whose data is in several WAL segments: sealed ones (their memtables
    were never flushed) and the newest."""
    db = tmp_path / "db"
    runner = HeldRunner()
    options = {**QUIET, "memtable_size_bytes": 1024, "max_immutable_memtables": 16}
    engine = LsmEngine.open(str(db), runner=runner, **options)
    try:
        write_batches(engine, range(BATCHES))
    finally:
        runner.release.set()
        engine.close()
    segments = sorted(db.glob("*.log"))
    assert len(segments) >= 2
    return db, segments


def test_wal_segments_replay_in_order(two_segments: tuple[Path, list[Path]]) -> None:
    db, _ = two_segments
    engine = open_quiet(db)
    assert contents(engine) == expected(range(BATCHES))
    engine.close()


def test_wal_torn_tail_of_the_newest_segment_recovers(
    two_segments: tuple[Path, list[Path]],
) -> None:
    db, segments = two_segments
    newest = segments[-1]
    newest.write_bytes(newest.read_bytes()[:-1])
    engine = open_quiet(db)
    assert contents(engine) == expected(range(BATCHES - 1))
    engine.close()


def test_wal_torn_tail_of_a_sealed_segment_is_corruption(
    two_segments: tuple[Path, list[Path]],
) -> None:
    # A sealed segment was fsynced before the next one took writes: a tail missing from
    # it lost acknowledged batches, while later ones survive. Never a torn tail.
    db, segments = two_segments
    sealed = segments[0]
    last_offset, _ = records(sealed, WAL_MAGIC, FILE_KIND_WAL)[-1]
    sealed.write_bytes(sealed.read_bytes()[:-1])
    with pytest.raises(CorruptionError) as info:
        open_quiet(db)
    assert_names(info.value, sealed)
    assert info.value.offset == last_offset


# ------------------------------------------------------------------ SSTables


@pytest.fixture
def one_table(tmp_path: Path) -> tuple[Path, Path, dict[bytes, bytes]]:
    """A directory whose data is all in one level-0 SSTable of many blocks."""
    db = tmp_path / "db"
    engine = open_quiet(db)
    write_batches(engine, range(60))
    engine.flush()
    engine.close()
    return db, only_file(db, "*.sst"), expected(range(60))


def table_regions(sst: Path) -> dict[str, tuple[int, int]]:
    """(offset, size) of the parts of an SSTable, from its footer."""
    data = sst.read_bytes()
    io, isz, bo, bsz, *_ = FOOTER.unpack(data[-FOOTER_SIZE:])
    return {
        "header": (0, 16),
        "data": (16, bo - 16),
        "bloom": (bo, bsz),
        "index": (io, isz),
        "footer": (len(data) - FOOTER_SIZE, FOOTER_SIZE),
    }


@pytest.mark.parametrize("where", ["first block", "middle of the data", "last data byte"])
def test_sstable_flipped_data_byte_never_reads_wrong(
    one_table: tuple[Path, Path, dict[bytes, bytes]], where: str
) -> None:
    db, sst, want = one_table
    start, size = table_regions(sst)["data"]
    offset = {"first block": start + 40, "middle of the data": start + size // 2}.get(
        where, start + size - 1
    )
    flip(sst, offset)

    engine = open_quiet(db)  # footer, index and bloom are intact: the open succeeds
    try:
        failed = 0
        for key, value in sorted(want.items()):
            try:
                got = engine.get(key)
            except CorruptionError as err:
                assert_names(err, sst)
                assert err.offset is not None and start <= err.offset <= offset
                failed += 1
            else:
                assert got == value, f"{key!r} read {got!r}"
        assert 0 < failed < len(want)
        for reverse in (False, True):
            with pytest.raises(CorruptionError) as info:
                list(engine.scan(reverse=reverse))
            assert_names(info.value, sst)
        # A bad block is not cached as good: reading it again fails again.
        bad_key = next(k for k in sorted(want) if _raises(engine, k))
        with pytest.raises(CorruptionError):
            engine.get(bad_key)
    finally:
        engine.close()


def _raises(engine: Engine, key: bytes) -> bool:
    try:
        engine.get(key)
    except CorruptionError:
        return True
    return False


@pytest.mark.parametrize(
    ("region", "at"),
    [
        ("header", 3),
        ("bloom", 0.5),
        ("index", 0.5),
        ("index", -1),  # its checksum
        ("footer", 2),  # the index offset
        ("footer", 30),  # the version
        ("footer", 40),  # the magic
        ("footer", -1),  # its checksum
    ],
)
def test_sstable_flipped_metadata_byte_is_corruption_at_open(
    one_table: tuple[Path, Path, dict[bytes, bytes]], region: str, at: float
) -> None:
    db, sst, _ = one_table
    start, size = table_regions(sst)[region]
    offset = start + (int(size * at) if isinstance(at, float) else at % size)
    flip(sst, offset)

    with pytest.raises(CorruptionError) as info:
        open_quiet(db)
    assert_names(info.value, sst)


@pytest.mark.parametrize("background", ["thread", "process"])
def test_compaction_over_a_damaged_table_fails_loudly_and_keeps_the_data(
    tmp_path: Path, background: str
) -> None:
    db = tmp_path / "db"
    engine = open_quiet(db)
    write_batches(engine, range(30))
    engine.flush()
    first = only_file(db, "*.sst")
    write_batches(engine, range(30, 60))
    engine.flush()
    engine.close()
    start, size = table_regions(first)["data"]
    flip(first, start + size // 2)

    engine = open_quiet(db, background=background)
    try:
        with pytest.raises(CorruptionError) as info:
            engine.compact_range()
        assert_names(info.value, first)
        # Nothing was installed: the intact table still answers, the damaged one fails.
        assert {p.name for p in db.glob("*.sst")} >= {first.name}
        for key, value in expected(range(30, 60)).items():
            assert engine.get(key) == value
    finally:
        engine.close()


def test_background_compaction_over_a_damaged_table_stops_writes(tmp_path: Path) -> None:
    db = tmp_path / "db"
    engine = open_quiet(db)
    write_batches(engine, range(30))
    engine.flush()
    engine.close()
    sst = only_file(db, "*.sst")
    start, size = table_regions(sst)["data"]
    flip(sst, start + size // 2)

    # Two level-0 tables trigger a compaction, which reads the damaged block.
    engine = open_quiet(db, level0_compaction_trigger=2)
    try:
        deadline = time.monotonic() + 30
        with pytest.raises(BackgroundError) as info:
            next_batch = 30
            while time.monotonic() < deadline:
                write_batches(engine, range(next_batch, next_batch + 1))
                next_batch += 1
                engine.flush()
        cause = info.value.__cause__
        assert isinstance(cause, CorruptionError), repr(cause)
        assert_names(cause, sst)
    finally:
        engine.close()


# ------------------------------------------------------------------ MANIFEST


@pytest.fixture
def flushed(tmp_path: Path) -> tuple[Path, Path]:
    """A directory whose MANIFEST holds its opening snapshot and a flush edit, and
    whose data is only in SSTables (the WAL segments were deleted after the flush)."""
    db = tmp_path / "db"
    engine = open_quiet(db)
    write_batches(engine, range(BATCHES))
    engine.flush()
    engine.close()
    manifest = only_file(db, "MANIFEST-*")
    assert len(records(manifest, MANIFEST_MAGIC, FILE_KIND_MANIFEST)) >= 2
    return db, manifest


@pytest.mark.parametrize(
    "where", ["file header", "first record length", "first record payload", "first record checksum"]
)
def test_manifest_flipped_byte_is_corruption_at_open(
    flushed: tuple[Path, Path], where: str
) -> None:
    db, manifest = flushed
    offset, length = records(manifest, MANIFEST_MAGIC, FILE_KIND_MANIFEST)[0]
    flip(
        manifest,
        {
            "file header": 2,
            "first record length": offset,
            "first record payload": offset + RECORD_HEADER_SIZE + length // 2,
            "first record checksum": offset + 6,
        }[where],
    )
    before = sorted(os.listdir(db))

    with pytest.raises(CorruptionError) as info:
        open_quiet(db)
    assert_names(info.value, manifest)
    assert sorted(os.listdir(db)) == before  # nothing was deleted as an "orphan"


def test_manifest_flipped_byte_in_the_last_edit_never_silently_loses_data(
    flushed: tuple[Path, Path],
) -> None:
    db, manifest = flushed
    offset, length = records(manifest, MANIFEST_MAGIC, FILE_KIND_MANIFEST)[-1]
    flip(manifest, offset + RECORD_HEADER_SIZE + length // 2)
    try:
        engine = open_quiet(db)
    except CorruptionError as err:
        assert_names(err, manifest)
        return
    try:
        assert contents(engine) == expected(range(BATCHES))
    finally:
        engine.close()
