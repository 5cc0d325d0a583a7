"""The in-memory engine: a sorted table behind one lock, for unit tests of other layers.

Owns `MemoryEngine`, its snapshots and its iterators. Does no I/O except
`checkpoint`, which only creates the target directory (see there). Nothing is
persisted: a reopened memory engine is empty. Implements the `Engine` protocol of
`atoll.engine.api`; it is also the reference the property tests hold other kinds to.

Design. The table is a `_Table`: a dict for point reads and a sorted key list for
range reads, kept in step on every write (`bisect.insort`; appends in key order are
O(1)). Iterators and snapshots must be point-in-time, so they pin the table they
started on (`_Table.readers`). A write that finds the current table pinned copies it
first (copy-on-write, O(n) once) and leaves the pinned one untouched; an unpinned
table is updated in place. A never-started, dropped iterator leaves its pin behind,
which costs at most one extra copy.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterator
from typing import Any, Self

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
from atoll.engine.errors import EngineClosedError

_KNOWN_OPS = frozenset((OP_DELETE, OP_PUT, OP_DELETE_RANGE))


class _Table:
    """One version of the contents: `data` and its keys in ascending order."""

    __slots__ = ("data", "keys", "readers", "size_bytes")

    def __init__(self, data: dict[bytes, bytes], keys: list[bytes], size_bytes: int) -> None:
        self.data = data
        self.keys = keys
        self.size_bytes = size_bytes
        # Open iterators and snapshots reading this version; while > 0 it is frozen.
        self.readers = 0

    def copy(self) -> _Table:
        return _Table(dict(self.data), list(self.keys), self.size_bytes)

    def bounds(self, start: bytes, end: bytes | None) -> tuple[int, int]:
        """Positions `[lo, hi)` in `keys` of the keys in `[start, end)`."""
        lo = bisect.bisect_left(self.keys, start)
        hi = len(self.keys) if end is None else bisect.bisect_left(self.keys, end)
        return lo, max(lo, hi)

    def put(self, key: bytes, value: bytes) -> None:
        old = self.data.get(key)
        if old is None:
            bisect.insort(self.keys, key)
            self.size_bytes += len(key)
        else:
            self.size_bytes -= len(old)
        self.data[key] = value
        self.size_bytes += len(value)

    def delete(self, key: bytes) -> None:
        old = self.data.pop(key, None)
        if old is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]
            self.size_bytes -= len(key) + len(old)

    def delete_range(self, start: bytes, end: bytes) -> None:
        lo, hi = self.bounds(start, end)
        for key in self.keys[lo:hi]:
            self.size_bytes -= len(key) + len(self.data.pop(key))
        del self.keys[lo:hi]


def _check_ops(ops: list[tuple[int, bytes, bytes]]) -> None:
    """Reject a batch whose `ops` list was edited by hand into something invalid,
    before anything is applied, so that a write is all or nothing."""
    for op, key, value in ops:
        if op not in _KNOWN_OPS:
            raise ValueError(f"unknown write batch operation {op!r}")
        check_bytes("key", key)
        check_bytes("value", value)


class MemoryEngine(EngineBase):
    """A thread-safe, sorted, in-memory `Engine`. Options are accepted and ignored, so
    callers may pass the LSM options to every kind."""

    def __init__(self, **options: Any) -> None:
        del options  # memtable sizes and the like mean nothing here
        # Reentrant: a dropped iterator's `finally` may run (via refcounting) inside a
        # locked section of the same thread.
        self._lock = threading.RLock()
        self._table = _Table({}, [], 0)
        self._closed = False

    # -- reads -----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        check_bytes("key", key)
        with self._lock:
            self._check_open()
            return self._table.data.get(key)

    def scan(
        self, start: bytes = b"", end: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with keys in `[start, end)`, as of this call (not of the first `next`)."""
        check_scan_args(start, end)
        with self._lock:
            self._check_open()
            table = self._pin()
        return self._iterate(table, start, end, reverse, None)

    def snapshot(self) -> MemorySnapshot:
        with self._lock:
            self._check_open()
            return MemorySnapshot(self, self._pin())

    def approximate_size(self, start: bytes, end: bytes) -> int:
        """Exact, in fact: the sum of `len(key) + len(value)` over `[start, end)`."""
        check_scan_args(start, end)
        with self._lock:
            self._check_open()
            table = self._table
            lo, hi = table.bounds(start, end)
            return sum(len(key) + len(table.data[key]) for key in table.keys[lo:hi])

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._check_open()
            return {
                "kind": "memory",
                "levels": [],  # no levels: the key is a per-level list in every kind
                "files": 0,
                "bytes": self._table.size_bytes,
                "keys": len(self._table.keys),
                # Nothing is ever written to disk, and every read is served from memory.
                "write_amplification": 0.0,
                "cache_hit_ratio": 1.0,
            }

    # -- writes ----------------------------------------------------------------

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        """Apply `batch` atomically. `sync` is accepted and ignored: nothing persists."""
        check_batch(batch)
        ops = batch.ops
        _check_ops(ops)
        with self._lock:
            self._check_open()
            table = self._writable()
            for op, key, value in ops:
                if op == OP_PUT:
                    table.put(key, value)
                elif op == OP_DELETE:
                    table.delete(key)
                else:
                    table.delete_range(key, value)

    def compact_range(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """Nothing to compact; checks its arguments and that the engine is open."""
        self._check_range_bounds(start, end)
        with self._lock:
            self._check_open()

    def flush(self) -> None:
        """Nothing to flush; checks that the engine is open."""
        with self._lock:
            self._check_open()

    def checkpoint(self, path: str) -> None:
        """Create the directory `path` and write nothing into it.

        A memory engine keeps nothing on disk, so its checkpoint is an empty directory,
        and `open_engine(path, kind="memory")` on it yields an empty engine: the same
        thing reopening the original gives. Callers that need the data must copy it
        through `snapshot().scan()`.
        """
        with self._lock:
            self._check_open()
        os.makedirs(path, exist_ok=True)

    def close(self) -> None:
        """Release the contents; every later operation raises `EngineClosedError`."""
        with self._lock:
            self._closed = True
            self._table = _Table({}, [], 0)

    # -- internals -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("memory engine is closed")

    @staticmethod
    def _check_range_bounds(start: bytes | None, end: bytes | None) -> None:
        if start is not None:
            check_bytes("start", start)
        if end is not None:
            check_bytes("end", end)

    def _pin(self) -> _Table:
        """Register a reader on the current table. Caller holds the lock."""
        table = self._table
        table.readers += 1
        return table

    def _unpin(self, table: _Table) -> None:
        with self._lock:
            table.readers -= 1

    def _writable(self) -> _Table:
        """The current table, copied first if a reader pins it. Caller holds the lock."""
        if self._table.readers > 0:
            self._table = self._table.copy()
        return self._table

    def _iterate(
        self,
        table: _Table,
        start: bytes,
        end: bytes | None,
        reverse: bool,
        snapshot: MemorySnapshot | None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Walk a pinned (hence frozen) table, then unpin it however the walk ends."""
        try:
            lo, hi = table.bounds(start, end)
            positions = range(hi - 1, lo - 1, -1) if reverse else range(lo, hi)
            keys, data = table.keys, table.data
            for i in positions:
                if self._closed or (snapshot is not None and snapshot.closed):
                    raise EngineClosedError("iterator used after its engine or snapshot closed")
                key = keys[i]
                yield key, data[key]
        finally:
            self._unpin(table)


class MemorySnapshot:
    """A point-in-time view of a `MemoryEngine`: it pins the table it was taken on."""

    def __init__(self, engine: MemoryEngine, table: _Table) -> None:
        self._engine = engine
        self._table: _Table | None = table

    @property
    def closed(self) -> bool:
        return self._table is None

    def get(self, key: bytes) -> bytes | None:
        check_bytes("key", key)
        return self._open_table().data.get(key)

    def scan(
        self, start: bytes = b"", end: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        check_scan_args(start, end)
        engine = self._engine
        with engine._lock:
            table = self._open_table()
            table.readers += 1
        return engine._iterate(table, start, end, reverse, self)

    def close(self) -> None:
        with self._engine._lock:
            table, self._table = self._table, None
            if table is not None:
                table.readers -= 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_table(self) -> _Table:
        table = self._table
        if table is None:
            raise EngineClosedError("snapshot is closed")
        self._engine._check_open()
        return table
