"""Behaviour specific to the LSM kind: versions across flushes and compactions,
file lifetime, background workers. Real files in tmp dirs; the background runs inline
(background="thread") except where the worker processes are the subject."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atoll.engine import WriteBatch, open_engine
from atoll.engine.lsm import LsmEngine

SMALL = {"memtable_size_bytes": 4096, "background": "thread", "level0_compaction_trigger": 2}


def lsm(path: Path, **options: object) -> LsmEngine:
    engine = open_engine(str(path), kind="lsm", **{**SMALL, **options})
    assert isinstance(engine, LsmEngine)
    return engine


def sst_files(path: Path) -> set[str]:
    return {n for n in os.listdir(path) if n.endswith(".sst")}


def test_reverse_scan_returns_newest_version_held_in_one_table(tmp_path: Path) -> None:
    db = lsm(tmp_path / "db")
    db.put(b"a", b"old")
    with db.snapshot() as snap:
        db.put(b"a", b"new")
        db.flush()  # the table keeps both versions: the snapshot needs the old one
        assert list(db.scan(reverse=True)) == [(b"a", b"new")]
        assert list(db.scan()) == [(b"a", b"new")]
        assert list(snap.scan(reverse=True)) == [(b"a", b"old")]
        assert snap.get(b"a") == b"old"
    db.close()


def test_snapshot_survives_flushes_and_compactions(tmp_path: Path) -> None:
    db = lsm(tmp_path / "db")
    for i in range(300):
        db.put(b"k%04d" % i, b"v1-%d" % i)
    snap = db.snapshot()
    for i in range(300):
        if i % 3 == 0:
            db.delete(b"k%04d" % i)
        else:
            db.put(b"k%04d" % i, b"v2-%d" % i)
    db.write(WriteBatch().delete_range(b"k0100", b"k0200"))
    db.compact_range()
    assert db.stats()["levels"][0]["files"] == 0
    for i in range(300):
        assert snap.get(b"k%04d" % i) == b"v1-%d" % i
    expected_now = {b"k%04d" % i: b"v2-%d" % i for i in range(300) if i % 3 and not 100 <= i < 200}
    assert dict(db.scan()) == expected_now
    assert list(snap.scan(b"k0010", b"k0013", reverse=True)) == [
        (b"k%04d" % i, b"v1-%d" % i) for i in (12, 11, 10)
    ]
    snap.close()
    db.compact_range()  # now the old versions and the tombstones may go
    assert dict(db.scan()) == expected_now
    assert db.stats()["live_snapshots"] == 0
    db.close()


def test_tables_read_by_an_iterator_outlive_the_compaction_that_replaces_them(
    tmp_path: Path,
) -> None:
    db = lsm(
        tmp_path / "db",
        level0_compaction_trigger=100,
        level0_slowdown_trigger=200,
        level0_stop_trigger=200,
    )
    for i in range(400):
        db.put(b"k%04d" % i, b"x" * 50)
    db.flush()
    before = sst_files(tmp_path / "db")
    iterator = db.scan()
    first = next(iterator)
    db.compact_range()
    assert before <= sst_files(tmp_path / "db"), "pinned tables were deleted"
    rest = list(iterator)
    assert [first, *rest] == [(b"k%04d" % i, b"x" * 50) for i in range(400)]
    assert not before & sst_files(tmp_path / "db"), "obsolete tables were kept"
    db.close()


def test_stats_and_phase(tmp_path: Path) -> None:
    db = lsm(tmp_path / "db")
    assert db.phase() == "idle"
    for i in range(2000):
        db.put(b"%06d" % i, b"y" * 100)
    db.compact_range()
    stats = db.stats()
    assert stats["user_bytes_written"] == 2000 * 106
    assert stats["flushes"] >= 1 and stats["compactions"] + stats["trivial_moves"] >= 1
    assert stats["write_amplification"] > 1.0
    assert stats["files"] == sum(level["files"] for level in stats["levels"])
    db.close()


def test_process_workers_serve_engine_after_engine(tmp_path: Path) -> None:
    # Workers are shared by the process; closing one engine must not kill them
    # (PR_SET_PDEATHSIG fires when the spawning *thread* exits).
    for round_ in range(3):
        db = lsm(tmp_path / f"db{round_}", background="process")
        for i in range(1500):
            db.put(b"%06d" % i, b"z" * 100)
        db.compact_range()
        assert db.get(b"000042") == b"z" * 100
        db.close()


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="memtable_sise"):
        open_engine(str(tmp_path / "db"), kind="lsm", memtable_sise=1)


def test_hand_edited_bad_batch_is_refused_whole(tmp_path: Path) -> None:
    db = lsm(tmp_path / "db")
    batch = WriteBatch().put(b"a", b"1")
    batch.codes.append(9)
    batch.keys.append(b"b")
    batch.values.append(b"")
    with pytest.raises(ValueError, match="unknown"):
        db.write(batch)
    assert db.get(b"a") is None
    db.close()
    db = lsm(tmp_path / "db")  # nothing unreadable reached the WAL
    assert db.get(b"a") is None
    db.close()
