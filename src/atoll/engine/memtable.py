"""The memtable: recent writes in memory, sorted on demand. No I/O.

Writes land in a dict (key -> (seq, value or None for a tombstone)); a whole batch of
puts is one `dict.update` in C. Sorted order is built lazily for iterators: keys added
since the last sort are exactly the dict's tail (dicts keep insertion order and the
memtable never removes a key), so re-sorting is a sort of the new keys plus a linear
timsort merge of two runs.

An overwritten version is kept in `history` while a live snapshot (or iterator) may
still need it, so point-in-time reads work without copying the memtable.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from itertools import islice

from atoll.engine.api import OP_PUT

Versioned = tuple[int, bytes | None]
# Memory accounting per entry beyond key and value bytes (dict slot, tuple, ints).
ENTRY_OVERHEAD_BYTES = 48


class Memtable:
    def __init__(self, wal_numbers: list[int]) -> None:
        self.data: dict[bytes, Versioned] = {}
        self.history: dict[bytes, list[Versioned]] = {}  # older versions, newest first
        self.size_bytes = 0
        self.wal_numbers = wal_numbers
        self.first_seq = 0
        self.last_seq = 0
        self._sorted: list[bytes] = []
        self._sort_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.data)

    def apply(
        self,
        first_seq: int,
        ops: bytes,
        keys: list[bytes],
        values: list[bytes],
        keep_seq: int | None,
    ) -> int:
        """Apply a logged batch; returns its bytes of keys and values. `keep_seq`: the newest live snapshot's sequence number
        (None if none); a version it can see is moved to history when overwritten."""
        n = len(keys)
        data = self.data
        if keep_seq is None and ops.count(OP_PUT) == n:
            data.update(
                zip(keys, zip(range(first_seq, first_seq + n), values, strict=True), strict=True)
            )
        else:
            history = self.history
            seq = first_seq
            for op, key, value in zip(ops, keys, values, strict=True):
                old = data.get(key)
                if old is not None and keep_seq is not None and old[0] <= keep_seq:
                    history.setdefault(key, []).insert(0, old)
                data[key] = (seq, value if op == OP_PUT else None)
                seq += 1
        if not self.first_seq:
            self.first_seq = first_seq
        self.last_seq = first_seq + n - 1
        user_bytes = sum(map(len, keys)) + sum(map(len, values))
        self.size_bytes += user_bytes + ENTRY_OVERHEAD_BYTES * n
        return user_bytes

    def get(self, key: bytes, seq_limit: int) -> Versioned | None:
        """The newest version of `key` with seq <= seq_limit, or None if none here."""
        entry = self.data.get(key)
        if entry is None or entry[0] <= seq_limit:
            return entry
        for old in self.history.get(key, ()):
            if old[0] <= seq_limit:
                return old
        return None

    def sorted_keys(self) -> list[bytes]:
        """All keys in order; the returned list is never mutated afterwards."""
        with self._sort_lock:
            done = len(self._sorted)
            if done == len(self.data):
                return self._sorted
            fresh = list(islice(self.data, done, None))
            fresh.sort()
            merged = self._sorted + fresh
            merged.sort()  # two sorted runs: a linear merge
            self._sorted = merged
            return merged

    def iterate(
        self, start: bytes, end: bytes | None, reverse: bool, seq_limit: int
    ) -> Iterator[tuple[bytes, int, bytes | None]]:
        """The visible version of each key in [start, end), in merge order (see
        sstable_reader.Entry: the sequence is negated going forward)."""
        keys = self.sorted_keys()
        lo = bisect_left(keys, start)
        hi = len(keys) if end is None else bisect_left(keys, end)
        span = range(hi - 1, lo - 1, -1) if reverse else range(lo, hi)
        get = self.get
        sign = 1 if reverse else -1
        for i in span:
            key = keys[i]
            entry = get(key, seq_limit)
            if entry is not None:
                yield key, sign * entry[0], entry[1]
