"""The contract every engine kind keeps (`atoll.engine.api.Engine`), run against each
kind with a 64 KiB memtable so that the LSM flushes and compacts along the way.

Fixtures `engine_kind`, `open_db` and `db` come from tests/conftest.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atoll.engine import (
    Engine,
    EngineClosedError,
    EngineLockedError,
    WriteBatch,
    open_engine,
)
from atoll.engine.api import ReadView

EngineOpener = Callable[..., Engine]
Model = dict[bytes, bytes]

MiB = 1 << 20


def model_scan(
    model: Model, start: bytes = b"", end: bytes | None = None, reverse: bool = False
) -> list[tuple[bytes, bytes]]:
    items = sorted((k, v) for k, v in model.items() if k >= start and (end is None or k < end))
    return items[::-1] if reverse else items


def assert_matches(view: ReadView, model: Model) -> None:
    assert list(view.scan()) == model_scan(model)
    assert list(view.scan(reverse=True)) == model_scan(model, reverse=True)
    for key, value in model.items():
        assert view.get(key) == value


def fill(db: Engine, model: Model, count: int, prefix: bytes = b"k", size: int = 200) -> None:
    """Put `count` keys of `size`-byte values in a few batches (enough to flush)."""
    batch = WriteBatch()
    for i in range(count):
        key = b"%s%05d" % (prefix, i)
        value = (b"%05d-" % i) * (size // 6 + 1)
        batch.put(key, value[:size])
        model[key] = value[:size]
        if len(batch) == 100:
            db.write(batch)
            batch = WriteBatch()
    db.write(batch)


# -- point operations -----------------------------------------------------------


def test_put_get_delete(db: Engine) -> None:
    assert db.get(b"missing") is None
    db.put(b"k", b"v")
    assert db.get(b"k") == b"v"
    db.delete(b"k")
    assert db.get(b"k") is None
    db.delete(b"k")  # deleting an absent key is fine
    db.delete(b"never-there")
    assert list(db.scan()) == []


def test_overwrite_keeps_the_last_value(db: Engine) -> None:
    for i in range(5):
        db.put(b"k", b"v%d" % i)
    assert db.get(b"k") == b"v4"
    db.delete(b"k")
    db.put(b"k", b"again")
    assert db.get(b"k") == b"again"
    assert list(db.scan()) == [(b"k", b"again")]


def test_sync_writes(db: Engine) -> None:
    db.put(b"a", b"1", sync=True)
    db.write(WriteBatch().put(b"b", b"2"), sync=True)
    db.delete(b"a", sync=True)
    db.write(WriteBatch(), sync=True)  # an empty batch is fine, synced or not
    db.write(WriteBatch())
    assert list(db.scan()) == [(b"b", b"2")]


def test_empty_key_and_empty_value(db: Engine) -> None:
    db.put(b"", b"empty key")
    db.put(b"k", b"")
    db.put(b"\x00", b"")
    assert db.get(b"") == b"empty key"
    assert db.get(b"k") == b""  # present and empty, not None
    assert list(db.scan()) == [(b"", b"empty key"), (b"\x00", b""), (b"k", b"")]
    assert list(db.scan(reverse=True)) == [(b"k", b""), (b"\x00", b""), (b"", b"empty key")]
    assert list(db.scan(b"", b"\x00")) == [(b"", b"empty key")]
    db.delete(b"")
    assert db.get(b"") is None
    assert db.get(b"k") == b""


def test_binary_keys_order_bytewise(db: Engine) -> None:
    keys = [b"\xff", b"\x00\x00", b"a", b"\x7f", b"\x80", b"A", b"\x00", b"aa"]
    for key in keys:
        db.put(key, key)
    assert [k for k, _ in db.scan()] == sorted(keys)


def test_16_mib_value(open_db: EngineOpener, engine_kind: str) -> None:
    db = open_db()
    big = bytes(range(256)) * (16 * MiB // 256)
    db.put(b"big", big)
    db.write(WriteBatch().put(b"big2", big[::-1]).put(b"small", b"s"))
    assert db.get(b"big") == big
    assert list(db.scan()) == [(b"big", big), (b"big2", big[::-1]), (b"small", b"s")]
    db.flush()
    assert db.get(b"big2") == big[::-1]
    if engine_kind == "memory":
        return  # by design it does not persist; see test_close_then_reopen_persists
    db.close()
    db = open_db()
    assert db.get(b"big") == big
    assert db.get(b"big2") == big[::-1]


# -- batches and range deletes -----------------------------------------------------


def test_batch_applies_every_op(db: Engine) -> None:
    db.put(b"old", b"1")
    batch = WriteBatch().put(b"a", b"1").put(b"b", b"2").delete(b"old").put(b"c", b"3")
    db.write(batch)
    assert list(db.scan()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]


def test_later_ops_in_a_batch_override_earlier_ones(db: Engine) -> None:
    db.put(b"r1", b"x")
    batch = (
        WriteBatch()
        .put(b"a", b"1")
        .delete(b"a")
        .delete(b"b")
        .put(b"b", b"2")
        .put(b"c", b"1")
        .put(b"c", b"3")
        .put(b"r2", b"y")
        .delete_range(b"r", b"s")
        .delete_range(b"t", b"u")
        .put(b"t1", b"z")
    )
    db.write(batch)
    assert list(db.scan()) == [(b"b", b"2"), (b"c", b"3"), (b"t1", b"z")]


def test_batches_are_atomic_to_concurrent_readers(db: Engine) -> None:
    """Every read sees a batch entirely or not at all."""
    keys = [b"atomic/%02d" % i for i in range(20)]
    db.write(_generation_batch(keys, 0))
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        try:
            for generation in range(1, 150):
                db.write(_generation_batch(keys, generation))
        except Exception as err:  # reported below; the readers must not spin forever
            errors.append(f"writer failed: {err!r}")
        finally:
            stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not stop.is_set():
            values = {v for _, v in db.scan(b"atomic/", b"atomic0")}
            if len(values) != 1:
                errors.append(f"scan saw {sorted(values)}")
            with db.snapshot() as snap:
                seen = {snap.get(k) for k in keys}
                if len(seen) != 1:
                    errors.append(f"snapshot saw {sorted(map(str, seen))}")
    finally:
        thread.join()
    assert errors == []
    assert {v for _, v in db.scan()} == {b"gen-149"}


def _generation_batch(keys: list[bytes], generation: int) -> WriteBatch:
    batch = WriteBatch()
    for key in keys:
        batch.put(key, b"gen-%d" % generation)
    return batch


def test_concurrent_writers(db: Engine) -> None:
    def worker(n: int) -> None:
        for i in range(200):
            db.put(b"w%d-%04d" % (n, i), b"%d" % i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    items = list(db.scan())
    assert len(items) == 800
    assert items == sorted(items)


def test_delete_range_is_half_open(db: Engine) -> None:
    for key in [b"", b"a", b"b", b"ba", b"bz", b"c", b"d"]:
        db.put(key, b"v")
    db.write(WriteBatch().delete_range(b"b", b"c"))
    assert [k for k, _ in db.scan()] == [b"", b"a", b"c", b"d"]
    db.write(WriteBatch().delete_range(b"", b"a"))  # removes the empty key only
    assert [k for k, _ in db.scan()] == [b"a", b"c", b"d"]
    db.write(WriteBatch().delete_range(b"a", b"\xff"))
    assert list(db.scan()) == []


@pytest.mark.parametrize(
    ("start", "end"), [(b"c", b"c"), (b"d", b"b"), (b"x", b"y"), (b"\xff", b"")]
)
def test_empty_or_inverted_delete_range_is_a_no_op(db: Engine, start: bytes, end: bytes) -> None:
    for key in [b"", b"b", b"c", b"d"]:
        db.put(key, b"v")
    db.write(WriteBatch().delete_range(start, end))
    assert [k for k, _ in db.scan()] == [b"", b"b", b"c", b"d"]


def test_delete_range_over_flushed_data(db: Engine) -> None:
    model: Model = {}
    fill(db, model, 1500)  # ~300 KB: several memtables
    db.flush()
    db.write(WriteBatch().delete_range(b"k00100", b"k01400"))
    model = {k: v for k, v in model.items() if not b"k00100" <= k < b"k01400"}
    db.put(b"k00200", b"back")
    model[b"k00200"] = b"back"
    assert_matches(db, model)
    db.flush()
    db.compact_range()
    assert_matches(db, model)


# -- scans ---------------------------------------------------------------------------


SCAN_KEYS = [b"", b"\x00", b"a", b"a\x00", b"ab", b"b", b"ba", b"c", b"\xff", b"\xff\xff"]
SCAN_BOUNDS = [*SCAN_KEYS, b"0", b"aa", b"bb", b"zz", b"\xff\xff\xff"]


def test_scan_bounds_forward_and_reverse(db: Engine) -> None:
    model = {key: b"v" + key for key in SCAN_KEYS}
    for key, value in model.items():
        db.put(key, value)
    for start in SCAN_BOUNDS:
        for end in [None, *SCAN_BOUNDS]:
            for reverse in (False, True):
                expected = model_scan(model, start, end, reverse)
                assert list(db.scan(start, end, reverse)) == expected, (start, end, reverse)


def test_scan_defaults_cover_everything_ascending(db: Engine) -> None:
    for key in [b"b", b"a", b""]:
        db.put(key, key)
    assert list(db.scan()) == [(b"", b""), (b"a", b"a"), (b"b", b"b")]
    assert list(db.scan(end=b"b")) == [(b"", b""), (b"a", b"a")]
    assert list(db.scan(start=b"a", reverse=True)) == [(b"b", b"b"), (b"a", b"a")]


def test_scan_across_memtable_and_tables(db: Engine) -> None:
    model: Model = {}
    fill(db, model, 1200)
    db.flush()
    for i in range(0, 1200, 3):  # overwrite a third, delete a sixth, in the memtable
        key = b"k%05d" % i
        if i % 2:
            db.delete(key)
            del model[key]
        else:
            db.put(key, b"new")
            model[key] = b"new"
    assert_matches(db, model)
    assert list(db.scan(b"k00500", b"k00600", reverse=True)) == model_scan(
        model, b"k00500", b"k00600", reverse=True
    )


def test_iterator_is_point_in_time_while_writing(db: Engine) -> None:
    model: Model = {}
    fill(db, model, 300)
    before = model_scan(model)
    for reverse in (False, True):
        iterator = db.scan(reverse=reverse)
        head = [next(iterator) for _ in range(10)]
        _churn(db, 300)
        assert head + list(iterator) == (before[::-1] if reverse else before)
        # Reset for the next direction.
        db.write(WriteBatch().delete_range(b"", b"\xff"))
        fill(db, {}, 300)


def test_iterator_state_is_fixed_by_the_scan_call(db: Engine) -> None:
    db.put(b"a", b"1")
    db.put(b"c", b"3")
    iterator = db.scan()
    db.put(b"b", b"2")
    db.delete(b"c")
    db.put(b"a", b"changed")
    assert list(iterator) == [(b"a", b"1"), (b"c", b"3")]


def _churn(db: Engine, count: int) -> None:
    """Overwrite, delete and insert around the keys `fill` wrote; ~250 KB, so the LSM
    flushes while an iterator is open."""
    for i in range(count):
        key = b"k%05d" % i
        batch = WriteBatch().put(key, b"overwritten" * 40).put(key + b"x", b"inserted" * 40)
        if i % 3 == 0:
            batch.delete(key)
        db.write(batch)
    db.write(WriteBatch().delete_range(b"k00100", b"k00200"))
    db.flush()


# -- snapshots -----------------------------------------------------------------------


def test_snapshot_isolation(db: Engine) -> None:
    model: Model = {}
    fill(db, model, 500)
    db.put(b"", b"empty")
    model[b""] = b"empty"
    at_first = dict(model)
    first = db.snapshot()
    _churn(db, 500)
    second = db.snapshot()
    at_second = dict(model_scan_engine(db))
    db.write(WriteBatch().delete_range(b"", b"\xff"))
    db.flush()
    db.compact_range()
    try:
        assert_matches(first, at_first)
        assert first.get(b"k00000x") is None
        assert_matches(second, at_second)
        assert list(first.scan(b"k00100", b"k00110", True)) == model_scan(
            at_first, b"k00100", b"k00110", True
        )
        assert list(db.scan()) == []
    finally:
        first.close()
        second.close()


def model_scan_engine(view: ReadView) -> Model:
    return dict(view.scan())


def test_snapshot_scan_is_point_in_time_too(db: Engine) -> None:
    db.put(b"a", b"1")
    with db.snapshot() as snap:
        db.put(b"b", b"2")
        iterator = snap.scan()
        db.put(b"c", b"3")
        assert list(iterator) == [(b"a", b"1")]
        assert snap.get(b"b") is None


def test_snapshot_closes_on_exit_and_close_is_idempotent(db: Engine) -> None:
    db.put(b"a", b"1")
    with db.snapshot() as snap:
        assert snap.get(b"a") == b"1"
    with pytest.raises(EngineClosedError):
        snap.get(b"a")
    with pytest.raises(EngineClosedError):
        list(snap.scan())
    snap.close()
    assert db.get(b"a") == b"1"


def test_many_snapshots(db: Engine) -> None:
    snaps = []
    for i in range(50):
        db.put(b"counter", b"%d" % i)
        snaps.append(db.snapshot())
    for i, snap in enumerate(snaps):
        assert snap.get(b"counter") == b"%d" % i
        snap.close()


# -- flush, compaction, sizes, stats -----------------------------------------------------


def test_flush_and_compact_range_keep_contents(db: Engine) -> None:
    model: Model = {}
    fill(db, model, 800)
    for i in range(0, 800, 4):
        db.delete(b"k%05d" % i)
        del model[b"k%05d" % i]
    db.flush()
    assert_matches(db, model)
    db.compact_range(b"k00100", b"k00500")
    assert_matches(db, model)
    db.compact_range(None, b"k00200")
    db.compact_range(b"k00600", None)
    db.compact_range()
    assert_matches(db, model)


def test_approximate_size(db: Engine) -> None:
    assert db.approximate_size(b"", b"\xff") >= 0
    model: Model = {}
    fill(db, model, 2000, size=250)
    db.flush()
    total = sum(len(k) + len(v) for k, v in model.items())
    size = db.approximate_size(b"k", b"l")
    assert isinstance(size, int)
    assert 0 < size <= 4 * total
    assert db.approximate_size(b"z", b"zz") <= total // 4
    assert db.approximate_size(b"k", b"k") <= total // 4


def test_stats(db: Engine, engine_kind: str) -> None:
    fill(db, {}, 300)
    db.flush()
    stats = db.stats()
    assert stats["kind"] == engine_kind
    for name in ("files", "bytes"):
        assert isinstance(stats[name], int) and stats[name] >= 0, name
    # A per-level breakdown (empty for the kinds without levels).
    assert isinstance(stats["levels"], list)
    for level in stats["levels"]:
        assert set(level) >= {"level", "files", "bytes"}
    for name in ("write_amplification", "cache_hit_ratio"):
        assert isinstance(stats[name], float) and stats[name] >= 0.0, name
    assert stats["cache_hit_ratio"] <= 1.0


# -- lifecycle -----------------------------------------------------------------------------


def test_close_then_reopen_persists(open_db: EngineOpener, engine_kind: str) -> None:
    db = open_db()
    if engine_kind == "memory":
        # By design: the memory engine keeps nothing once closed, so there is nothing to
        # reopen. (Not pytest.skip: the rest of the contract still runs for it.)
        db.close()
        return
    model: Model = {}
    fill(db, model, 1000)
    db.flush()
    db.put(b"", b"empty key", sync=True)
    db.put(b"after-flush", b"unflushed")  # only in the memtable / WAL at close
    db.delete(b"k00001")
    db.write(WriteBatch().delete_range(b"k00500", b"k00600"))
    model.update({b"": b"empty key", b"after-flush": b"unflushed"})
    model = {k: v for k, v in model.items() if k != b"k00001" and not b"k00500" <= k < b"k00600"}
    db.close()
    db = open_db()
    assert_matches(db, model)
    db.put(b"second", b"session")
    model[b"second"] = b"session"
    db.close()
    db = open_db()
    assert_matches(db, model)


def test_operations_after_close_raise(open_db: EngineOpener, tmp_path: Path) -> None:
    db = open_db()
    db.put(b"a", b"1")
    snap = db.snapshot()
    iterator = db.scan()
    db.close()
    db.close()  # idempotent
    calls: list[Callable[[], Any]] = [
        lambda: db.get(b"a"),
        lambda: db.put(b"a", b"2"),
        lambda: db.delete(b"a"),
        lambda: db.write(WriteBatch().put(b"b", b"1")),
        lambda: list(db.scan()),
        lambda: db.snapshot(),
        lambda: db.checkpoint(str(tmp_path / "cp")),
        lambda: db.approximate_size(b"", b"z"),
        lambda: db.compact_range(),
        lambda: db.flush(),
        lambda: db.stats(),
        lambda: snap.get(b"a"),
        lambda: list(snap.scan()),
        lambda: list(iterator),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(EngineClosedError):
            call()
            pytest.fail(f"call {i} did not raise")
    snap.close()  # closing a snapshot of a closed engine is harmless


def test_second_open_of_a_directory_is_refused(open_db: EngineOpener, engine_kind: str) -> None:
    db = open_db()
    if engine_kind == "memory":
        return  # no directory to hold
    with pytest.raises(EngineLockedError):
        open_db()
    db.close()
    open_db().close()  # and the lock goes with close()


def test_checkpoint_opens_with_the_same_data(
    open_db: EngineOpener, engine_kind: str, tmp_path: Path
) -> None:
    db = open_db()
    if engine_kind == "memory":
        return  # nothing persists, so a checkpoint holds nothing (see MemoryEngine.checkpoint)
    model: Model = {}
    fill(db, model, 800)
    db.flush()
    db.put(b"unflushed", b"in the memtable")
    db.delete(b"k00003")
    model[b"unflushed"] = b"in the memtable"
    del model[b"k00003"]
    checkpoint = str(tmp_path / "checkpoint")
    db.checkpoint(checkpoint)
    db.put(b"later", b"not in the checkpoint")
    db.write(WriteBatch().delete_range(b"", b"k00400"))
    copy = open_engine(checkpoint, kind=engine_kind, memtable_size_bytes=64 * 1024)
    try:
        assert_matches(copy, model)
        copy.put(b"copy-only", b"x")  # a checkpoint is a live, independent engine
        assert db.get(b"copy-only") is None
    finally:
        copy.close()
