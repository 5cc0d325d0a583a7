"""The `Engine` interface over LMDB (a copy-on-write B+tree), through py-lmdb.

Owns `LmdbEngine`, its snapshots and its iterators. Does file I/O: the directory
holds LMDB's `data.mdb` and `lock.mdb` and Atoll's `LOCK`. The on-disk format is
LMDB's own; the only Atoll convention in it is the key prefix below.

- Keys. LMDB rejects zero-length keys, and `b""` is a valid Atoll key, so every key
  is stored as `b"\\x00" + key`. A common prefix keeps the byte order, so scans and
  range deletes map directly onto LMDB's. LMDB's maximum key size (511 bytes in the
  default build) therefore allows user keys of at most 510 bytes; a longer key is
  rejected by `put` with `ValueError`, is absent for `get`, and is a no-op for
  `delete`. Range bounds may be of any length.
- Durability. The environment is opened with `sync=True, metasync=False`
  (MDB_NOMETASYNC): every commit fdatasyncs its data pages but not the meta page,
  which "maintains database integrity, but a system crash may undo the last committed
  transaction" (py-lmdb `Environment` docs). A `sync=True` write then calls
  `env.sync(True)`, flushing the meta page too, so it is durable when `write`
  returns. We do not use `sync=False` (MDB_NOSYNC) by default: LMDB documents that a
  system crash can then corrupt the file unless the filesystem preserves write order.
  Option `unsafe_nosync=True` opts into it for benchmarks only.
- Concurrency. One writer at a time (a Python lock in front of LMDB's writer mutex;
  a write transaction never leaves its thread). Reads run concurrently on read
  transactions, which py-lmdb opens with MDB_NOTLS and so may move between threads
  but must not be used by two at once: each iterator and snapshot guards its
  transaction with a lock. `close()` waits for in-flight calls, then closes the
  environment, which invalidates every transaction still open.
- Iterators hold a read transaction (hence a reader slot, `max_readers`) from
  `scan()` until they are exhausted, closed or dropped; snapshots until `close()`.
  While either is open LMDB cannot reuse the pages it sees, so the file may grow.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Self

import lmdb

from atoll.engine.api import (
    OP_DELETE,
    OP_DELETE_RANGE,
    OP_PUT,
    EngineBase,
    WriteBatch,
    check_batch,
    check_bytes,
    check_scan_args,
)
from atoll.engine.errors import EngineClosedError, EngineError, EngineLockedError

_PREFIX = b"\x00"
_LOCK_FILE = "LOCK"
_DATA_FILE = "data.mdb"

MAP_SIZE_BYTES_DEFAULT = 64 << 30  # address space only: the file grows as written
MAX_READERS_DEFAULT = 1024  # concurrent iterators + snapshots + reads

# An iterator copies items out of LMDB in chunks, so that it holds its lock briefly
# and does not pay for a lock round trip per item.
_CHUNK_ITEMS_MAX = 256
_CHUNK_BYTES_MAX = 1 << 20


def _seek_ge(cursor: lmdb.Cursor[Any], bound: bytes, max_key_bytes: int) -> bool:
    """Position `cursor` on the first stored key >= `bound` (an encoded key of any
    length); return whether there is one."""
    if len(bound) <= max_key_bytes:
        return cursor.set_range(bound)
    # LMDB refuses to seek to a key longer than it can store. Seek to the longest
    # storable prefix; the only stored key with that prefix is the prefix itself,
    # which sorts before `bound`.
    found = cursor.set_range(bound[:max_key_bytes])
    while found and bytes(cursor.key()) < bound:
        found = cursor.next()
    return found


class LmdbEngine(EngineBase):
    """An `Engine` backed by one LMDB environment in a directory. Use `open`."""

    def __init__(self, path: str, env: lmdb.Environment, lock_fd: int) -> None:
        self._path = path
        self._env = env
        # LMDB's limit applies to the encoded key, which carries one prefix byte.
        self._max_key_bytes = env.max_key_size()
        self._write_lock = threading.Lock()
        # `_inflight` counts calls inside the environment; `close` waits for zero.
        self._state = threading.Condition(threading.Lock())
        self._inflight = 0
        self._closed = False
        # Releases the environment and the directory lock if the engine is dropped
        # without `close()` (say, a test simulating a crash), so it can be reopened.
        self._finalizer = weakref.finalize(self, _release, env, lock_fd)

    @classmethod
    def open(
        cls,
        path: str,
        *,
        map_size_bytes: int = MAP_SIZE_BYTES_DEFAULT,
        max_readers: int = MAX_READERS_DEFAULT,
        unsafe_nosync: bool = False,
        **options: Any,
    ) -> LmdbEngine:
        """Open (creating if needed) the environment in directory `path`.

        Unknown options (the LSM's memtable size and so on) are ignored, so callers may
        pass one option set to every kind. Raises `EngineLockedError` if another
        engine, in this process or another, has the directory open.
        """
        del options
        os.makedirs(path, exist_ok=True)
        lock_fd = _lock_directory(path)
        try:
            env = lmdb.open(
                path,
                map_size=map_size_bytes,
                subdir=True,
                sync=not unsafe_nosync,
                metasync=False,
                max_readers=max_readers,
                max_dbs=0,
                lock=True,
            )
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, env, lock_fd)

    # -- reads -----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        check_bytes("key", key)
        encoded = _PREFIX + key
        if len(encoded) > self._max_key_bytes:
            return None  # could never have been stored
        self._enter()
        try:
            with self._env.begin() as txn:
                return txn.get(encoded)
        finally:
            self._exit()

    def scan(
        self, start: bytes = b"", end: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with keys in `[start, end)`, read from a transaction begun by this
        call; call `close()` on the result (or exhaust it) to release it early."""
        check_scan_args(start, end)
        self._enter()
        try:
            txn = self._env.begin()
        finally:
            self._exit()
        return _LmdbIterator(self, txn, threading.Lock(), None, start, end, reverse)

    def snapshot(self) -> LmdbSnapshot:
        self._enter()
        try:
            return LmdbSnapshot(self, self._env.begin())
        finally:
            self._exit()

    def approximate_size(self, start: bytes, end: bytes) -> int:
        """The sum of `len(key) + len(value)` over `[start, end)`, by walking a cursor:
        exact but O(keys in range). Cheaper estimates from page counts can come later."""
        check_scan_args(start, end)
        low, high = _PREFIX + start, _PREFIX + end
        total = 0
        self._enter()
        try:
            # buffers=True: measure values in place instead of copying them out.
            with self._env.begin(buffers=True) as txn, txn.cursor() as cursor:
                found = _seek_ge(cursor, low, self._max_key_bytes)
                while found:
                    key = cursor.key()
                    if bytes(key) >= high:
                        break
                    total += len(key) - len(_PREFIX) + len(cursor.value())
                    found = cursor.next()
        finally:
            self._exit()
        return total

    def stats(self) -> dict[str, Any]:
        self._enter()
        try:
            stat = self._env.stat()
            info = self._env.info()
            size = os.path.getsize(os.path.join(self._path, _DATA_FILE))
        finally:
            self._exit()
        return {
            "kind": "lmdb",
            "levels": [],  # no levels: the key is a per-level list in every kind
            "files": 1,
            "bytes": size,
            "keys": stat["entries"],
            "depth": stat["depth"],
            "page_size_bytes": stat["psize"],
            "map_size_bytes": info["map_size"],
            "readers": info["num_readers"],
            # Not measured: LMDB rewrites whole pages along each updated path.
            "write_amplification": 0.0,
            # Reads come straight from the memory map; there is no cache of our own.
            "cache_hit_ratio": 1.0,
        }

    # -- writes ----------------------------------------------------------------

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        """Apply `batch` in one LMDB transaction; with `sync`, durable on return."""
        check_batch(batch)
        ops = batch.ops
        self._enter()
        try:
            if ops:
                with self._write_lock:
                    self._commit(ops)
            if sync:
                # Outside the writer lock: it flushes every commit so far, ours included.
                self._env.sync(True)
        finally:
            self._exit()

    def compact_range(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """A no-op: a B+tree has no compaction. Checks its arguments and the engine."""
        if start is not None:
            check_bytes("start", start)
        if end is not None:
            check_bytes("end", end)
        self._enter()
        self._exit()

    def flush(self) -> None:
        """Force every committed write to disk (meta page included)."""
        self._enter()
        try:
            self._env.sync(True)
        finally:
            self._exit()

    def checkpoint(self, path: str) -> None:
        """Write a compacted, consistent copy of the database into directory `path`
        (created if missing; must not already hold a database), ready for `open`."""
        self._enter()
        try:
            os.makedirs(path, exist_ok=True)
            try:
                self._env.copy(path, compact=True)
            except lmdb.Error as err:
                if os.path.exists(os.path.join(path, _DATA_FILE)):
                    raise FileExistsError(
                        f"checkpoint target {path} already holds a database"
                    ) from err
                raise EngineError(f"checkpoint of {self._path} into {path} failed: {err}") from err
            # mdb_env_copy does not fsync; make the checkpoint durable before returning.
            _fsync_path(os.path.join(path, _DATA_FILE))
            _fsync_path(path)
            _fsync_path(os.path.dirname(os.path.abspath(path)))
        finally:
            self._exit()

    def close(self) -> None:
        """Wait for in-flight calls, then close the environment and unlock the
        directory. Later calls, and open iterators and snapshots, raise
        `EngineClosedError`. Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._state.wait_for(lambda: self._inflight == 0)
        self._finalizer()

    # -- internals -------------------------------------------------------------

    def _commit(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        """Apply `ops` in one write transaction: all of them, or (on error) none."""
        txn = self._env.begin(write=True)
        try:
            for op, key, value in ops:
                self._apply(txn, op, key, value)
            txn.commit()
        except lmdb.MapFullError as err:
            txn.abort()
            raise EngineError(
                f"LMDB map of {self._path} is full; reopen with a larger map_size_bytes"
            ) from err
        except BaseException:
            txn.abort()
            raise

    def _apply(
        self,
        txn: lmdb.Transaction[bytes],
        op: int,
        key: bytes,
        value: bytes,
    ) -> None:
        check_bytes("key", key)
        check_bytes("value", value)
        if op == OP_PUT:
            encoded = _PREFIX + key
            if len(encoded) > self._max_key_bytes:
                raise ValueError(
                    f"key of {len(key)} bytes is longer than the {self._max_key_bytes - 1} "
                    f"bytes the LMDB engine at {self._path} can store"
                )
            txn.put(encoded, value)
        elif op == OP_DELETE:
            encoded = _PREFIX + key
            if len(encoded) <= self._max_key_bytes:
                txn.delete(encoded)
        elif op == OP_DELETE_RANGE:
            low, high = _PREFIX + key, _PREFIX + value
            if low < high:
                with txn.cursor() as cursor:
                    found = _seek_ge(cursor, low, self._max_key_bytes)
                    while found and cursor.key() < high:
                        found = cursor.delete()  # moves to the next item
        else:
            raise ValueError(f"unknown write batch operation {op!r}")

    def _enter(self) -> None:
        with self._state:
            if self._closed:
                raise EngineClosedError(f"LMDB engine at {self._path} is closed")
            self._inflight += 1

    def _exit(self) -> None:
        with self._state:
            self._inflight -= 1
            if self._inflight == 0 and self._closed:
                self._state.notify_all()


class _LmdbIterator(Iterator[tuple[bytes, bytes]]):
    """Walks `[start, end)` of one read transaction, copying out a chunk at a time.

    Owns the transaction when made by `LmdbEngine.scan` (`snapshot` is None) and
    aborts it once exhausted or closed; otherwise borrows the snapshot's, under the
    snapshot's lock. Like any iterator, one is for one thread at a time.
    """

    def __init__(
        self,
        engine: LmdbEngine,
        txn: lmdb.Transaction[bytes],
        lock: threading.Lock,
        snapshot: LmdbSnapshot | None,
        start: bytes,
        end: bytes | None,
        reverse: bool,
    ) -> None:
        self._engine = engine
        self._txn: lmdb.Transaction[bytes] | None = txn
        self._cursor: lmdb.Cursor[bytes] | None = None
        self._lock = lock
        self._snapshot = snapshot
        self._low = _PREFIX + start
        self._high = None if end is None else _PREFIX + end
        self._reverse = reverse
        self._buffer: list[tuple[bytes, bytes]] = []
        self._next_index = 0
        self._exhausted = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        self._check_open()
        if self._next_index == len(self._buffer):
            if self._exhausted:
                raise StopIteration
            self._refill()
            if not self._buffer:
                raise StopIteration
        item = self._buffer[self._next_index]
        self._next_index += 1
        return item

    def close(self) -> None:
        """Release the transaction (if owned) now rather than when collected."""
        with self._lock:
            self._exhausted = True
            self._buffer, self._next_index = [], 0
            self._release()

    def _check_open(self) -> None:
        if self._engine._closed or (self._snapshot is not None and self._snapshot.closed):
            raise EngineClosedError("iterator used after its engine or snapshot closed")

    def _refill(self) -> None:
        engine = self._engine
        with self._lock:
            engine._enter()
            try:
                self._check_open()
                self._buffer, self._next_index = self._read_chunk(), 0
                if self._exhausted:
                    self._release()
            finally:
                engine._exit()

    def _read_chunk(self) -> list[tuple[bytes, bytes]]:
        """Copy out up to one chunk, leaving the cursor on the next candidate.
        Caller holds the lock and an in-flight slot."""
        txn = self._txn
        if txn is None:
            self._exhausted = True
            return []
        cursor = self._cursor
        if cursor is None:
            cursor = self._cursor = txn.cursor()
            found = self._position(cursor)
        else:
            found = True  # not exhausted: the last chunk left the cursor on a candidate
        chunk: list[tuple[bytes, bytes]] = []
        chunk_bytes = 0
        low, high, reverse = self._low, self._high, self._reverse
        while found and len(chunk) < _CHUNK_ITEMS_MAX and chunk_bytes < _CHUNK_BYTES_MAX:
            key = cursor.key()
            if (key < low) if reverse else (high is not None and key >= high):
                found = False
                break
            value = cursor.value()
            chunk.append((key[1:], value))
            chunk_bytes += len(key) + len(value)
            found = cursor.prev() if reverse else cursor.next()
        if not found:
            self._exhausted = True
        return chunk

    def _position(self, cursor: lmdb.Cursor[bytes]) -> bool:
        max_key_bytes = self._engine._max_key_bytes
        if not self._reverse:
            return _seek_ge(cursor, self._low, max_key_bytes)
        if self._high is None:
            return cursor.last()
        if _seek_ge(cursor, self._high, max_key_bytes):
            return cursor.prev()
        return cursor.last()

    def _release(self) -> None:
        """Drop the cursor and, if owned, abort the transaction. Caller holds the lock.

        Once the engine (or the borrowed snapshot) is closed, LMDB has invalidated
        both already: just drop them. The in-flight slot keeps `close()` from closing
        the environment under the abort.
        """
        cursor, txn = self._cursor, self._txn
        self._cursor = self._txn = None
        owned_txn = txn if self._snapshot is None else None
        if cursor is None and owned_txn is None:
            return
        engine = self._engine
        try:
            engine._enter()
        except EngineClosedError:
            return
        try:
            if self._snapshot is not None and self._snapshot.closed:
                return
            if cursor is not None:
                cursor.close()
            if owned_txn is not None:
                owned_txn.abort()
        finally:
            engine._exit()


class LmdbSnapshot:
    """A point-in-time view: one read transaction, held until `close()`."""

    def __init__(self, engine: LmdbEngine, txn: lmdb.Transaction[bytes]) -> None:
        self._engine = engine
        self._txn: lmdb.Transaction[bytes] | None = txn
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._txn is None

    def get(self, key: bytes) -> bytes | None:
        check_bytes("key", key)
        encoded = _PREFIX + key
        engine = self._engine
        with self._lock:
            txn = self._open_txn()
            if len(encoded) > engine._max_key_bytes:
                return None
            engine._enter()
            try:
                return txn.get(encoded)
            finally:
                engine._exit()

    def scan(
        self, start: bytes = b"", end: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        check_scan_args(start, end)
        with self._lock:
            txn = self._open_txn()
        return _LmdbIterator(self._engine, txn, self._lock, self, start, end, reverse)

    def close(self) -> None:
        """Abort the read transaction. Idempotent; safe after the engine closed."""
        with self._lock:
            txn, self._txn = self._txn, None
            if txn is None:
                return
            try:
                self._engine._enter()
            except EngineClosedError:
                return  # closing the environment already released the transaction
            try:
                txn.abort()
            finally:
                self._engine._exit()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_txn(self) -> lmdb.Transaction[bytes]:
        txn = self._txn
        if txn is None:
            raise EngineClosedError("snapshot is closed")
        if self._engine._closed:
            raise EngineClosedError("snapshot used after its engine closed")
        return txn


def _lock_directory(path: str) -> int:
    """Take an exclusive `flock` on `path/LOCK`; return its descriptor.

    `flock` locks belong to the open file description, so a second open of the same
    directory conflicts even inside one process (py-lmdb refuses that too).
    """
    lock_path = os.path.join(path, _LOCK_FILE)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        os.close(fd)
        raise EngineLockedError(f"engine directory {path} is locked ({lock_path})") from err
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(env: lmdb.Environment, lock_fd: int) -> None:
    """Close the environment, then unlock the directory (in that order, so that a
    waiting opener never sees a half-closed environment)."""
    try:
        env.close()
    finally:
        os.close(lock_fd)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
