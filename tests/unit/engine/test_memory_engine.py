"""What the memory engine adds to the contract: ignored options, exact sizes, an empty
checkpoint, and copy-on-write that leaves unpinned tables alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.engine import EngineClosedError, WriteBatch, open_engine
from atoll.engine.memory_engine import MemoryEngine


def test_options_are_ignored() -> None:
    engine = MemoryEngine(memtable_size_bytes=4096, background="thread", anything=1)
    engine.put(b"a", b"1")
    assert engine.get(b"a") == b"1"


def test_open_engine_builds_one(tmp_path: Path) -> None:
    engine = open_engine(str(tmp_path / "db"), kind="memory", memtable_size_bytes=4096)
    assert isinstance(engine, MemoryEngine)
    assert not (tmp_path / "db").exists()  # nothing on disk


def test_approximate_size_and_stats_are_exact() -> None:
    engine = MemoryEngine()
    engine.write(WriteBatch().put(b"a", b"12345").put(b"bb", b"").put(b"c", b"x" * 100))
    engine.put(b"a", b"1")  # overwrite: 4 bytes fewer
    assert engine.approximate_size(b"", b"\xff") == 2 + 2 + 101
    assert engine.approximate_size(b"b", b"c") == 2
    assert engine.approximate_size(b"c", b"a") == 0
    stats = engine.stats()
    assert stats["bytes"] == 105 and stats["keys"] == 3 and stats["files"] == 0
    engine.write(WriteBatch().delete_range(b"a", b"c").delete(b"c"))
    assert engine.stats()["bytes"] == 0


def test_checkpoint_is_an_empty_directory(tmp_path: Path) -> None:
    engine = MemoryEngine()
    engine.put(b"a", b"1")
    engine.checkpoint(str(tmp_path / "cp"))
    assert list((tmp_path / "cp").iterdir()) == []


def test_writes_update_in_place_once_readers_are_done() -> None:
    engine = MemoryEngine()
    engine.put(b"a", b"1")
    table = engine._table
    assert list(engine.scan()) == [(b"a", b"1")]  # exhausted: unpinned
    with engine.snapshot():
        pass
    engine.put(b"b", b"2")
    assert engine._table is table  # no copy was needed

    iterator = engine.scan()
    engine.put(b"c", b"3")
    assert engine._table is not table  # pinned: copied once
    copied = engine._table
    engine.put(b"d", b"4")
    assert engine._table is copied
    assert list(iterator) == [(b"a", b"1"), (b"b", b"2")]


def test_iterator_raises_after_close() -> None:
    engine = MemoryEngine()
    engine.put(b"a", b"1")
    engine.put(b"b", b"2")
    iterator = engine.scan()
    assert next(iterator) == (b"a", b"1")
    engine.close()
    with pytest.raises(EngineClosedError):
        next(iterator)


def test_hand_edited_bad_batch_is_refused_whole() -> None:
    engine = MemoryEngine()
    batch = WriteBatch().put(b"a", b"1")
    batch.codes.append(9)
    batch.keys.append(b"b")
    batch.values.append(b"")
    with pytest.raises(ValueError, match="unknown"):
        engine.write(batch)
    assert engine.get(b"a") is None
    with pytest.raises(TypeError):
        engine.write([(1, b"a", b"1")])  # type: ignore[arg-type]
