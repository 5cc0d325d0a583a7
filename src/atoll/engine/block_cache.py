"""A cache of checksum-verified SSTable blocks, bounded in bytes. No I/O.

Shared by every table of an engine; keyed by an int (table number << 24 | block
index); values are the block's bytes (a view into the table's mmap, or a copy).
LRU: a hit is one OrderedDict lookup and move, without a lock; inserts and
evictions take a lock (they also keep the byte count).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

TABLE_SHIFT = 24  # block index bits in a cache key
BlockData = bytes | memoryview


class BlockCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._blocks: OrderedDict[int, BlockData] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: int) -> BlockData | None:
        block = self._blocks.get(key)
        if block is None:
            self.misses += 1  # counters are statistics: a lost increment is harmless
            return None
        try:  # noqa: SIM105 -- contextlib.suppress costs a call on every hit
            self._blocks.move_to_end(key)
        except KeyError:
            pass  # evicted by another thread in between: still a valid block
        self.hits += 1
        return block

    def put(self, key: int, block: BlockData) -> None:
        size = len(block)
        if size > self.capacity_bytes // 4:
            return  # a huge block would evict everything else for one use
        with self._lock:
            blocks = self._blocks
            old = blocks.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            blocks[key] = block
            self._bytes += size
            while self._bytes > self.capacity_bytes and blocks:
                _, victim = blocks.popitem(last=False)
                self._bytes -= len(victim)

    def evict_table(self, number: int) -> None:
        """Drop a deleted table's blocks (views into its mapping keep it alive)."""
        with self._lock:
            doomed = [k for k in self._blocks if k >> TABLE_SHIFT == number]
            for key in doomed:
                self._bytes -= len(self._blocks.pop(key))

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def size_bytes(self) -> int:
        return self._bytes
