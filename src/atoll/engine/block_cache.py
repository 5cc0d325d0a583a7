"""A cache of checksum-verified SSTable blocks, bounded in bytes. No I/O.

Shared by every table of an engine; keyed by an int (table number << 24 | block
index). Eviction is CLOCK (second chance), an LRU approximation whose hits cost one
dict lookup and one flag store and take no lock; inserts and evictions take a lock.
The order is an OrderedDict: popping the oldest entry of a plain dict must skip the
holes left by earlier pops, which makes a FIFO over a dict quadratic.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from atoll.engine.sstable_format import Block


class BlockCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._blocks: OrderedDict[int, Block] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: int) -> Block | None:
        block = self._blocks.get(key)
        if block is None:
            self.misses += 1  # counters are statistics: a lost increment is harmless
            return None
        block.referenced = True
        self.hits += 1
        return block

    def put(self, key: int, block: Block) -> None:
        size = len(block.data)
        if size > self.capacity_bytes // 4:
            return  # a huge block would evict everything else for one use
        with self._lock:
            blocks = self._blocks
            old = blocks.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)
            blocks[key] = block
            self._bytes += size
            while self._bytes > self.capacity_bytes and blocks:
                oldest, victim = blocks.popitem(last=False)
                if victim.referenced and blocks:
                    victim.referenced = False  # second chance: back to the end
                    blocks[oldest] = victim
                else:
                    self._bytes -= len(victim.data)

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def size_bytes(self) -> int:
        return self._bytes
