"""An LRU cache of checksum-verified SSTable blocks, bounded in bytes. No I/O.

Shared by every table of an engine; keyed by (table number, block offset). Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from atoll.engine.sstable_format import Block


class BlockCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._blocks: OrderedDict[tuple[int, int], Block] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[int, int]) -> Block | None:
        with self._lock:
            block = self._blocks.get(key)
            if block is None:
                self.misses += 1
                return None
            self._blocks.move_to_end(key)
            self.hits += 1
            return block

    def put(self, key: tuple[int, int], block: Block) -> None:
        size = len(block.data)
        if size > self.capacity_bytes // 4:
            return  # a huge block would evict everything else for one use
        with self._lock:
            old = self._blocks.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)
            self._blocks[key] = block
            self._bytes += size
            while self._bytes > self.capacity_bytes and self._blocks:
                _, evicted = self._blocks.popitem(last=False)
                self._bytes -= len(evicted.data)

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def size_bytes(self) -> int:
        return self._bytes
