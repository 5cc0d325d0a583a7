"""The engine interface every kind implements, and the write batch. Pure: no I/O.

Later layers (the Raft host, KV regions, node-local indexes) call exactly these
names; `open_engine` in `atoll.engine` picks the implementation by kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, Protocol, Self

# Operation codes inside a WriteBatch. OP_DELETE and OP_PUT are also written to the
# WAL (docs/formats.md §2; a range delete is logged as point deletes): the numbers
# are permanent.
OP_DELETE = 0
OP_PUT = 1
OP_DELETE_RANGE = 2


def check_bytes(name: str, value: object) -> None:
    """Raise TypeError unless `value` is exactly `bytes` (not bytearray or memoryview)."""
    if type(value) is not bytes:
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


class WriteBatch:
    """An ordered list of puts, deletes and range deletes applied atomically.

    Later operations in a batch override earlier ones on the same key. Operations are
    kept column by column (codes, keys, values; a range delete stores its start and
    end as key and value) so that engines hand them to C code without a Python loop.
    """

    __slots__ = ("codes", "keys", "range_deletes", "values")

    def __init__(self) -> None:
        self.codes = bytearray()
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.range_deletes = 0

    def put(self, key: bytes, value: bytes) -> Self:
        if type(key) is not bytes or type(value) is not bytes:
            check_bytes("key", key)
            check_bytes("value", value)
        self.codes.append(OP_PUT)
        self.keys.append(key)
        self.values.append(value)
        return self

    def delete(self, key: bytes) -> Self:
        check_bytes("key", key)
        self.codes.append(OP_DELETE)
        self.keys.append(key)
        self.values.append(b"")
        return self

    def delete_range(self, start: bytes, end: bytes) -> Self:
        """Delete every key in `[start, end)`; an empty or inverted range does nothing."""
        check_bytes("start", start)
        check_bytes("end", end)
        self.codes.append(OP_DELETE_RANGE)
        self.keys.append(start)
        self.values.append(end)
        self.range_deletes += 1
        return self

    @property
    def ops(self) -> list[tuple[int, bytes, bytes]]:
        """The operations as (code, key, value-or-range-end) tuples, in order."""
        return list(zip(self.codes, self.keys, self.values, strict=True))

    @property
    def size_bytes(self) -> int:
        """Bytes of keys and values (range bounds included)."""
        return sum(map(len, self.keys)) + sum(map(len, self.values))

    def __len__(self) -> int:
        return len(self.keys)

    def clear(self) -> None:
        self.codes.clear()
        self.keys.clear()
        self.values.clear()
        self.range_deletes = 0


class ReadView(Protocol):
    """What both an engine and a snapshot of it can answer."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(
        self, start: bytes = b"", end: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...


class Snapshot(ReadView, Protocol):
    """A point-in-time view; a context manager that releases itself on exit."""

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class Engine(ReadView, Protocol):
    """An ordered byte-key store. Thread-safe. Keys and values are `bytes`."""

    def put(self, key: bytes, value: bytes, sync: bool = False) -> None: ...

    def delete(self, key: bytes, sync: bool = False) -> None: ...

    def write(self, batch: WriteBatch, sync: bool = False) -> None: ...

    def snapshot(self) -> Snapshot: ...

    def checkpoint(self, path: str) -> None: ...

    def approximate_size(self, start: bytes, end: bytes) -> int: ...

    def compact_range(self, start: bytes | None = None, end: bytes | None = None) -> None: ...

    def flush(self) -> None:
        """Make every acknowledged write durable in the engine's main files (LSM: flush
        the memtable to an SSTable). Tests and benchmarks use it; callers need not."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class EngineBase(ABC):
    """Shared plumbing: `put`/`delete` are one-op batches; context-manager support."""

    @abstractmethod
    def write(self, batch: WriteBatch, sync: bool = False) -> None: ...

    def put(self, key: bytes, value: bytes, sync: bool = False) -> None:
        batch = WriteBatch()
        batch.put(key, value)
        self.write(batch, sync)

    def delete(self, key: bytes, sync: bool = False) -> None:
        batch = WriteBatch()
        batch.delete(key)
        self.write(batch, sync)

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_batch(batch: object) -> None:
    """Raise TypeError unless `batch` is a WriteBatch."""
    if not isinstance(batch, WriteBatch):
        raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")


def check_scan_args(start: object, end: object) -> None:
    check_bytes("start", start)
    if end is not None:
        check_bytes("end", end)
