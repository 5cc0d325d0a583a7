"""The engine benchmark's stores: one small interface over every engine it measures.

Atoll's own engines (`lsm`, `lmdb`, `memory`, opened through `atoll.engine.open_engine`)
and the references (RocksDB via `rocksdict`, LevelDB via `plyvel`, SQLite in WAL mode via
the standard library) are each wrapped in a `BenchStore`, so that the workloads in
`atoll.cli.bench_workloads` drive them all with the same loops. Does file I/O.

Configuration choices, stated once (they are repeated in the report header):

- Every engine with a memtable gets 4 MiB (`MEMTABLE_SIZE_BYTES`): Atoll's LSM through
  `memtable_size_bytes`, RocksDB and LevelDB through `write_buffer_size`.
- RocksDB and LevelDB run with compression off: the values are random bytes, so a
  compressor only costs CPU, and Atoll's LSM does not compress either. Everything else
  is the library's default (as db_bench does when only `--write_buffer_size` is given).
- The WAL is on everywhere; "no-sync" writes are not fsynced, sync writes are
  (RocksDB `WriteOptions.sync`, LevelDB `sync=True`, SQLite `synchronous=FULL`, Atoll
  `sync=True`). SQLite's no-sync mode is `synchronous=NORMAL`, which in WAL mode syncs
  only at checkpoints. Atoll's LMDB engine fdatasyncs every commit unless opened with
  `unsafe_nosync=True` (lmdb_engine.py, "Durability"); the benchmark opens it so, so
  that its no-sync rows compare the B+tree with the LSM rather than fsync with none,
  and its `sync=True` writes still call `env.sync(True)` before returning.
- The reference libraries are imported lazily, so the `atoll` command works without
  them installed; a missing library shows up as an error cell in the report.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

MEMTABLE_SIZE_BYTES = 4 << 20
ATOLL_KINDS = ("lsm", "lmdb", "memory")
REFERENCE_NAMES = ("rocksdb", "leveldb", "sqlite")
STORE_NAMES = ATOLL_KINDS + REFERENCE_NAMES

# Stats keys an Atoll engine may use to say that background work is still running.
_BUSY_STAT_KEYS = (
    "immutable_memtables",
    "compactions_running",
    "compactions_pending",
    "pending_compactions",
    "flushes_running",
    "flushes_pending",
    "background_jobs",
)


class ThreadWriter(Protocol):
    """A writer for use from one other thread (SQLite needs its own connection)."""

    def put(self, key: bytes, value: bytes) -> None: ...

    def close(self) -> None: ...


class BenchStore(Protocol):
    """What a workload needs from an engine."""

    name: str
    path: str
    on_disk: bool

    def put_batch(self, pairs: Sequence[tuple[bytes, bytes]]) -> None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def put_sync(self, key: bytes, value: bytes) -> None: ...

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self) -> Iterator[tuple[bytes, bytes]]: ...

    def flush(self) -> None:
        """Move the memtable (or WAL) into the main files, so disk size is comparable."""
        ...

    def compact(self) -> None:
        """Compact the whole key range (compact_range(None, None) or its equivalent)."""
        ...

    def is_idle(self) -> bool:
        """False while the engine reports background flushes or compactions."""
        ...

    def engine_write_amplification(self) -> float | None:
        """The engine's own write amplification, or None if it does not report one."""
        ...

    def thread_writer(self) -> ThreadWriter:
        """A writer to be used from the calling thread only (call it in that thread)."""
        ...

    def close(self) -> None: ...


class _SelfWriter:
    """A `ThreadWriter` for stores that are thread-safe: it just forwards."""

    def __init__(self, store: BenchStore) -> None:
        self._store = store

    def put(self, key: bytes, value: bytes) -> None:
        self._store.put(key, value)

    def close(self) -> None:
        pass


class AtollStore:
    """Atoll's engines, through the `Engine` interface."""

    def __init__(self, kind: str, path: str) -> None:
        from atoll.engine import WriteBatch, open_engine

        options: dict[str, Any] = {}
        if kind == "lsm":
            options["memtable_size_bytes"] = MEMTABLE_SIZE_BYTES
        if kind == "lmdb":
            options["unsafe_nosync"] = True
        self.name = kind
        self.path = path
        self.on_disk = kind != "memory"
        self._batch_type = WriteBatch
        self._engine = open_engine(path, kind=kind, **options)

    def put_batch(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        batch = self._batch_type()
        for key, value in pairs:
            batch.put(key, value)
        self._engine.write(batch)

    def put(self, key: bytes, value: bytes) -> None:
        self._engine.put(key, value)

    def put_sync(self, key: bytes, value: bytes) -> None:
        self._engine.put(key, value, sync=True)

    def get(self, key: bytes) -> bytes | None:
        return self._engine.get(key)

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        return self._engine.scan()

    def flush(self) -> None:
        self._engine.flush()

    def compact(self) -> None:
        self._engine.compact_range()

    def is_idle(self) -> bool:
        phase = getattr(self._engine, "phase", None)  # the LSM's "idle", "flush", ...
        if callable(phase) and phase() != "idle":
            return False
        stats = self._engine.stats()
        return not any(stats.get(key) for key in _BUSY_STAT_KEYS)

    def engine_write_amplification(self) -> float | None:
        # Only the LSM measures it (its flushes and compactions run in child processes,
        # out of sight of /proc/self/io); LMDB and memory report a placeholder 0.0.
        if self.name != "lsm":
            return None
        value = self._engine.stats().get("write_amplification")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    def thread_writer(self) -> ThreadWriter:
        return _SelfWriter(self)

    def close(self) -> None:
        self._engine.close()


class RocksStore:
    """RocksDB through rocksdict in raw mode (bytes in, bytes out, no pickling)."""

    name = "rocksdb"
    on_disk = True

    def __init__(self, path: str) -> None:
        import rocksdict

        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(MEMTABLE_SIZE_BYTES)
        options.set_compression_type(rocksdict.DBCompressionType.none())
        options.set_bottommost_compression_type(rocksdict.DBCompressionType.none())
        self.path = path
        # Typed as Any: the calls below must check the same with and without the
        # library's stubs installed.
        self._lib: Any = rocksdict
        self._db: Any = rocksdict.Rdict(path, options)
        self._sync: Any = rocksdict.WriteOptions()
        self._sync.sync = True

    def put_batch(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        batch = self._lib.WriteBatch(raw_mode=True)
        for key, value in pairs:
            batch.put(key, value)
        self._db.write(batch)

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def put_sync(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value, self._sync)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        items: Iterator[tuple[bytes, bytes]] = iter(self._db.items())
        return items

    def flush(self) -> None:
        self._db.flush(True)

    def compact(self) -> None:
        self._db.compact_range(None, None)

    def is_idle(self) -> bool:
        busy = (
            "rocksdb.num-running-compactions",
            "rocksdb.num-running-flushes",
            "rocksdb.compaction-pending",
            "rocksdb.mem-table-flush-pending",
        )
        return not any(self._db.property_int_value(name) for name in busy)

    def engine_write_amplification(self) -> float | None:
        return None

    def thread_writer(self) -> ThreadWriter:
        return _SelfWriter(self)

    def close(self) -> None:
        self._db.close()


class LevelStore:
    """LevelDB through plyvel."""

    name = "leveldb"
    on_disk = True

    def __init__(self, path: str) -> None:
        import plyvel

        self.path = path
        self._db: Any = plyvel.DB(
            path,
            create_if_missing=True,
            write_buffer_size=MEMTABLE_SIZE_BYTES,
            compression=None,
        )

    def put_batch(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        batch = self._db.write_batch()
        for key, value in pairs:
            batch.put(key, value)
        batch.write()

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def put_sync(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value, sync=True)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        items: Iterator[tuple[bytes, bytes]] = self._db.iterator()
        return items

    def flush(self) -> None:
        # LevelDB has no flush call, but CompactRange writes the memtable out before it
        # looks at the range (db_impl.cc); a range past every key compacts nothing else.
        self._db.compact_range(start=b"\xff" * 32, stop=b"\xff" * 33)

    def compact(self) -> None:
        # Explicit bounds: plyvel 1.5's compact_range() without them compacts nothing
        # (it passes an empty stop key rather than NULL); every benchmark key is below.
        self._db.compact_range(start=b"", stop=b"\xff" * 64)

    def is_idle(self) -> bool:
        return True  # LevelDB does not expose it; the caller also waits for quiet disks.

    def engine_write_amplification(self) -> float | None:
        return None

    def thread_writer(self) -> ThreadWriter:
        return _SelfWriter(self)

    def close(self) -> None:
        self._db.close()


_SQLITE_PUT = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"


def _sqlite_connect(path: str, sync: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(os.path.join(path, "kv.sqlite"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class _SqliteThreadWriter:
    def __init__(self, path: str) -> None:
        self._conn = _sqlite_connect(path, sync=False)

    def put(self, key: bytes, value: bytes) -> None:
        self._conn.execute(_SQLITE_PUT, (key, value))

    def close(self) -> None:
        self._conn.close()


class SqliteStore:
    """SQLite in WAL mode: one `WITHOUT ROWID` table, autocommit per single op."""

    name = "sqlite"
    on_disk = True

    def __init__(self, path: str, sync: bool = False) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)
        self._conn = _sqlite_connect(path, sync)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID"
        )

    def put_batch(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        self._conn.execute("BEGIN")
        self._conn.executemany(_SQLITE_PUT, pairs)
        self._conn.execute("COMMIT")

    def put(self, key: bytes, value: bytes) -> None:
        self._conn.execute(_SQLITE_PUT, (key, value))

    def put_sync(self, key: bytes, value: bytes) -> None:
        # Durability comes from `synchronous=FULL`, chosen when the store was opened.
        self._conn.execute(_SQLITE_PUT, (key, value))

    def get(self, key: bytes) -> bytes | None:
        row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._conn.execute("SELECT k, v FROM kv ORDER BY k"))

    def flush(self) -> None:
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def compact(self) -> None:
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.execute("VACUUM")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def is_idle(self) -> bool:
        return True

    def engine_write_amplification(self) -> float | None:
        return None

    def thread_writer(self) -> ThreadWriter:
        return _SqliteThreadWriter(self.path)

    def close(self) -> None:
        self._conn.close()


def open_store(name: str, path: str, sync: bool = False) -> BenchStore:
    """Open (creating) the store `name` in directory `path`.

    `sync` matters only to SQLite, whose durability is a connection setting; the other
    stores choose per write (`put_sync`).
    """
    if name in ATOLL_KINDS:
        return AtollStore(name, path)
    if name == "rocksdb":
        return RocksStore(path)
    if name == "leveldb":
        return LevelStore(path)
    if name == "sqlite":
        return SqliteStore(path, sync=sync)
    raise ValueError(f"unknown store {name!r}; expected one of {', '.join(STORE_NAMES)}")


def library_versions() -> dict[str, str]:
    """Versions of every library measured, 'not installed' where one is missing."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in ("rocksdict", "plyvel", "lmdb"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    try:
        import plyvel

        versions["leveldb (C++)"] = str(plyvel.__leveldb_version__)
    except ImportError:
        pass
    try:
        import lmdb

        versions["lmdb (C)"] = ".".join(str(part) for part in lmdb.version())
    except ImportError:
        pass
    versions["sqlite3 (C)"] = sqlite3.sqlite_version
    return versions
