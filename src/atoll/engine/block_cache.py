"""A cache of checksum-verified SSTable blocks, bounded in bytes. No I/O.

Shared by every table of an engine; keyed by an int (table number << 24 | block
index); an entry is [block bytes (a view into the table's mmap), referenced flag].
Eviction is CLOCK (second chance), an LRU approximation whose hit is one dict lookup
and one flag store without a lock (the C point read, `_native.table_get`, does the
same on `blocks` directly); inserts and evictions take a lock and keep the byte
count. The order is an OrderedDict: popping the oldest entry of a plain dict must
skip the holes earlier pops left, which makes a FIFO over a dict quadratic.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

TABLE_SHIFT = 24  # block index bits in a cache key
BlockData = bytes | memoryview


class BlockCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.blocks: OrderedDict[int, list[Any]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: int) -> BlockData | None:
        entry = self.blocks.get(key)
        if entry is None:
            self.misses += 1  # counters are statistics: a lost increment is harmless
            return None
        entry[1] = True
        self.hits += 1
        data: BlockData = entry[0]
        return data

    def put(self, key: int, block: BlockData) -> None:
        size = len(block)
        if size > self.capacity_bytes // 4:
            return  # a huge block would evict everything else for one use
        with self._lock:
            blocks = self.blocks
            old = blocks.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            blocks[key] = [block, False]
            self._bytes += size
            while self._bytes > self.capacity_bytes and blocks:
                oldest, victim = blocks.popitem(last=False)
                if victim[1] and blocks:
                    victim[1] = False  # second chance: back to the end
                    blocks[oldest] = victim
                else:
                    self._bytes -= len(victim[0])

    def evict_table(self, number: int) -> None:
        """Drop a deleted table's blocks (views into its mapping keep it alive)."""
        with self._lock:
            doomed = [k for k in self.blocks if k >> TABLE_SHIFT == number]
            for key in doomed:
                self._bytes -= len(self.blocks.pop(key)[0])

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def size_bytes(self) -> int:
        return self._bytes
