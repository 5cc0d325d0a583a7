"""What the LMDB engine adds to the contract: its key-size limit, the key prefix that
makes empty keys work, durability options, checkpoint targets and iterator release."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from atoll.engine import EngineClosedError, WriteBatch
from atoll.engine.lmdb_engine import LmdbEngine

MAX_KEY_BYTES = 510  # LMDB's 511 minus the one-byte prefix


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[LmdbEngine]:
    engine = LmdbEngine.open(str(tmp_path / "db"), memtable_size_bytes=4096)
    yield engine
    engine.close()


def test_keys_are_stored_with_a_one_byte_prefix(engine: LmdbEngine, tmp_path: Path) -> None:
    engine.put(b"", b"empty")
    engine.put(b"a", b"1")
    engine.close()
    env = lmdb.open(str(tmp_path / "db"), readonly=True)
    try:
        with env.begin() as txn:
            assert list(txn.cursor()) == [(b"\x00", b"empty"), (b"\x00a", b"1")]
    finally:
        env.close()


def test_longest_key_is_accepted(engine: LmdbEngine) -> None:
    key = b"k" * MAX_KEY_BYTES
    engine.put(key, b"v")
    assert engine.get(key) == b"v"
    assert list(engine.scan()) == [(key, b"v")]


def test_longer_key_is_refused_and_the_batch_is_not_applied(engine: LmdbEngine) -> None:
    too_long = b"k" * (MAX_KEY_BYTES + 1)
    with pytest.raises(ValueError, match="511 bytes"):
        engine.put(too_long, b"v")
    batch = WriteBatch().put(b"a", b"1").put(too_long, b"v").put(b"b", b"2")
    with pytest.raises(ValueError):
        engine.write(batch)
    assert list(engine.scan()) == []
    assert engine.get(too_long) is None  # cannot exist
    engine.delete(too_long)  # and so deleting it is a no-op


def test_bounds_longer_than_a_key_work(engine: LmdbEngine) -> None:
    longest = b"k" * MAX_KEY_BYTES
    for key in [b"a", longest, b"l"]:
        engine.put(key, b"v")
    bound = b"k" * 600  # sorts after `longest`
    assert [k for k, _ in engine.scan(bound)] == [b"l"]
    assert [k for k, _ in engine.scan(b"", bound)] == [b"a", longest]
    assert [k for k, _ in engine.scan(b"", bound, reverse=True)] == [longest, b"a"]
    assert engine.approximate_size(b"", bound) == 1 + 1 + MAX_KEY_BYTES + 1
    engine.write(WriteBatch().delete_range(bound, b"m"))
    assert [k for k, _ in engine.scan()] == [b"a", longest]
    engine.write(WriteBatch().delete_range(b"b", bound))
    assert [k for k, _ in engine.scan()] == [b"a"]


def test_approximate_size_is_exact(engine: LmdbEngine) -> None:
    engine.write(WriteBatch().put(b"a", b"12345").put(b"bb", b"").put(b"c", b"x" * 10_000))
    assert engine.approximate_size(b"", b"\xff") == 6 + 2 + 10_001
    assert engine.approximate_size(b"b", b"c") == 2
    assert engine.approximate_size(b"c", b"b") == 0


def test_stats_report_the_data_file(engine: LmdbEngine, tmp_path: Path) -> None:
    engine.put(b"a", b"1")
    stats = engine.stats()
    assert stats["files"] == 1 and stats["levels"] == []
    assert stats["bytes"] == os.path.getsize(tmp_path / "db" / "data.mdb")
    assert stats["keys"] == 1


@pytest.mark.parametrize("unsafe_nosync", [False, True])
def test_durability_modes_round_trip(tmp_path: Path, unsafe_nosync: bool) -> None:
    path = str(tmp_path / "db")
    engine = LmdbEngine.open(path, unsafe_nosync=unsafe_nosync, map_size_bytes=1 << 30)
    engine.put(b"a", b"1", sync=True)
    engine.put(b"b", b"2")
    engine.flush()
    engine.close()
    engine = LmdbEngine.open(path)
    assert list(engine.scan()) == [(b"a", b"1"), (b"b", b"2")]
    engine.close()


def test_map_full_is_an_engine_error(tmp_path: Path) -> None:
    engine = LmdbEngine.open(str(tmp_path / "db"), map_size_bytes=1 << 20)
    try:
        with pytest.raises(Exception, match="map_size_bytes") as info:
            engine.put(b"big", b"x" * (2 << 20))
        assert not isinstance(info.value, lmdb.Error)
        engine.put(b"small", b"ok")  # the engine is still usable
        assert engine.get(b"small") == b"ok"
    finally:
        engine.close()


def test_checkpoint_into_an_existing_database_is_refused(
    engine: LmdbEngine, tmp_path: Path
) -> None:
    engine.put(b"a", b"1")
    target = str(tmp_path / "cp")
    engine.checkpoint(target)
    with pytest.raises(FileExistsError):
        engine.checkpoint(target)


def test_iterators_release_their_reader_slot(tmp_path: Path) -> None:
    engine = LmdbEngine.open(str(tmp_path / "db"), max_readers=8)
    try:
        for i in range(100):
            engine.put(b"%03d" % i, b"v")
        for _ in range(50):  # exhausted, closed early, and dropped unstarted
            assert len(list(engine.scan())) == 100
            iterator = engine.scan()
            next(iterator)
            iterator.close()  # type: ignore[attr-defined]
            engine.scan()
        with engine.snapshot() as snap:
            assert len(list(snap.scan())) == 100
    finally:
        engine.close()


def test_iterator_chunks_cover_large_scans(engine: LmdbEngine) -> None:
    # More items and bytes than one chunk holds, in both directions.
    batch = WriteBatch()
    for i in range(3000):
        batch.put(b"%05d" % i, b"v" * 1000)
    engine.write(batch)
    assert [k for k, _ in engine.scan()] == [b"%05d" % i for i in range(3000)]
    assert [k for k, _ in engine.scan(reverse=True)] == [b"%05d" % i for i in reversed(range(3000))]


def test_snapshot_iterator_after_snapshot_close(engine: LmdbEngine) -> None:
    engine.put(b"a", b"1")
    snap = engine.snapshot()
    iterator = snap.scan()
    snap.close()
    with pytest.raises(EngineClosedError):
        next(iterator)
    iterator.close()  # type: ignore[attr-defined]


def test_dropped_engine_releases_its_directory(tmp_path: Path) -> None:
    # A test simulating a crash may drop an engine without closing it.
    path = str(tmp_path / "db")
    engine = LmdbEngine.open(path)
    engine.put(b"a", b"1", sync=True)
    del engine
    engine = LmdbEngine.open(path)
    assert engine.get(b"a") == b"1"
    engine.close()
