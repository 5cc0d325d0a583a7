"""Reads an SSTable through mmap with a shared block cache (docs/formats.md §3). Does I/O.

Point reads check the bloom filter, find the block by binary search over the index,
and binary-search the block without decoding it. Iteration decodes whole blocks
column-wise. Every block's CRC is checked when it enters the cache; a mismatch raises
`CorruptionError` naming the file and offset.

A reader stays valid after its file is unlinked (POSIX keeps mapped pages), so a point
read racing with a compaction that obsoletes the file still answers correctly.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from bisect import bisect_left
from collections.abc import Iterator

from crc32c import crc32c

from atoll.base.errors import CorruptionError
from atoll.engine import native
from atoll.engine.block_cache import TABLE_SHIFT, BlockCache
from atoll.engine.bloom import BloomFilter
from atoll.engine.sstable_format import (
    ABSENT,
    FILE_HEADER,
    FOOTER_SIZE,
    HANDLE,
    SST_FORMAT_VERSION,
    SST_MAGIC,
    Block,
    block_entries,
    decode_footer,
)

# An entry as merged by iterators: (user key, sequence key, value or None for a
# tombstone). The sequence key is -seq going forward (tuple order then puts a key's
# newest version first) and +seq going backward, where a table yields a key's
# versions oldest first and the engine picks the newest visible one per key.
Entry = tuple[bytes, int, bytes | None]


class TableReader:
    def __init__(self, path: str, number: int, cache: BlockCache) -> None:
        self.path = path
        self.number = number
        self._cache = cache
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < FILE_HEADER.size + FOOTER_SIZE:
                raise CorruptionError("SSTable too short", file=path, offset=0)
            # (MAP_POPULATE was measured: it made random point reads slower.)
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.size = size
        magic, version = FILE_HEADER.unpack_from(self._mm, 0)
        if magic != SST_MAGIC or version != SST_FORMAT_VERSION:
            raise CorruptionError(f"bad SSTable header {magic!r} v{version}", file=path, offset=0)
        io, isz, bo, bsz, self.entries = decode_footer(
            self._mm[size - FOOTER_SIZE :], path, size - FOOTER_SIZE
        )
        if io + isz > size or bo + bsz > size:
            raise CorruptionError("SSTable footer handles out of range", file=path, offset=io)
        index = Block(self._mm[io : io + isz], path, io)
        keys, _, values = index.columns(path, io)
        self.last_keys: list[bytes] = keys
        handles = [HANDLE.unpack(v) for v in values if v is not None]
        self.offsets = [h[0] for h in handles]
        self.sizes = [h[1] for h in handles]
        self.bloom = self._load_bloom(bo, bsz)
        self.nblocks = len(self.offsets)
        self._cache_base = number << TABLE_SHIFT
        self._view = memoryview(self._mm)

    def _load_bloom(self, offset: int, size: int) -> BloomFilter:
        raw = self._mm[offset : offset + size]
        stored = int.from_bytes(raw[-4:], "little")
        actual = crc32c(raw[:-4])
        if stored != actual:
            raise CorruptionError(
                "SSTable bloom block checksum mismatch",
                file=self.path,
                offset=offset,
                expected=stored,
                actual=actual,
            )
        try:
            return BloomFilter(raw[:-4])
        except ValueError as err:
            raise CorruptionError(str(err), file=self.path, offset=offset) from err

    def block(self, i: int) -> Block:
        """Block `i`, decoded (for iteration and the pure-Python point read)."""
        data = self._cache.get(self._cache_base | i)
        if data is None:
            data = self._load_block(i)
        return Block(bytes(data), self.path, self.offsets[i], verified=True)

    def _load_block(self, i: int) -> memoryview:
        """Verify block `i` in place (no copy: a view of the mapping) and cache it."""
        offset = self.offsets[i]
        data = self._view[offset : offset + self.sizes[i]]
        block_entries(data, self.path, offset)
        self._cache.put(self._cache_base | i, data)
        return data

    def get(self, key: bytes, seq_limit: int) -> tuple[bool, bytes | None]:
        """(found, value) of the newest version of `key` with seq <= seq_limit.

        found with value None means a tombstone: the key is deleted as of that version.
        The hot path of every point read: the cache and the C probes are called
        directly rather than through `block()`, `Block.find` and `may_contain`.
        """
        bloom = self.bloom
        cache = self._cache
        table_get = native.table_get
        if table_get is not None:
            args = (
                bloom.bits,
                bloom.nbits,
                bloom.k,
                self.last_keys,
                cache.blocks,
                self._cache_base,
            )
            try:
                found = table_get(*args, key, seq_limit, -1)
                while type(found) is int:  # block `found` is not cached: load it here
                    i = found
                    cache.misses += 1
                    # (A block too big to cache is searched without the cache.)
                    found = native.block_find(self._load_block(i), key, seq_limit)  # type: ignore[misc]
                    if found is None:  # the key's versions go on in the next block
                        found = table_get(*args, key, seq_limit, i + 1)
            except ValueError as err:
                raise CorruptionError(str(err), file=self.path) from err
            if found is not ABSENT:
                cache.hits += 1  # approximate: a read that loaded a block counts both
            return found  # type: ignore[no-any-return]
        if not bloom.may_contain_python(key):
            return ABSENT
        i = bisect_left(self.last_keys, key)
        while i < self.nblocks:
            found = self.block(i).find_python(key, seq_limit)
            if found is not None:
                return found
            i += 1
        return ABSENT

    def iterate(self, start: bytes, end: bytes | None, reverse: bool) -> Iterator[Entry]:
        """Entries with start <= key < end (end None: unbounded) in merge order."""
        if reverse:
            return self._iterate_reverse(start, end)
        return self._iterate_forward(start, end)

    def _iterate_forward(self, start: bytes, end: bytes | None) -> Iterator[Entry]:
        i = bisect_left(self.last_keys, start)
        for bi in range(i, len(self.offsets)):
            keys, seqs, values = self.block(bi).columns(self.path, self.offsets[bi])
            lo = bisect_left(keys, start) if bi == i else 0
            hi = len(keys)
            done = False
            if end is not None and keys[-1] >= end:
                hi = bisect_left(keys, end)
                done = True
            yield from zip(keys[lo:hi], [-s for s in seqs[lo:hi]], values[lo:hi], strict=True)
            if done:
                return

    def _iterate_reverse(self, start: bytes, end: bytes | None) -> Iterator[Entry]:
        nblocks = len(self.offsets)
        last = nblocks - 1 if end is None else min(bisect_left(self.last_keys, end), nblocks - 1)
        for bi in range(last, -1, -1):
            keys, seqs, values = self.block(bi).columns(self.path, self.offsets[bi])
            hi = len(keys) if end is None else bisect_left(keys, end)
            lo = bisect_left(keys, start)
            if hi > lo:
                yield from zip(
                    reversed(keys[lo:hi]),
                    reversed(seqs[lo:hi]),
                    reversed(values[lo:hi]),
                    strict=True,
                )
            if lo > 0:
                return

    def all_columns(self) -> Iterator[tuple[list[bytes], list[int], list[bytes | None]]]:
        """Every block decoded, in order, bypassing the cache (compaction input)."""
        for i in range(len(self.offsets)):
            offset = self.offsets[i]
            block = Block(self._mm[offset : offset + self.sizes[i]], self.path, offset)
            yield block.columns(self.path, offset)

    def all_raw_columns(self) -> Iterator[tuple[list[bytes], list[int], bytes, list[bytes]]]:
        """Every block as raw columns (kinds as bytes), bypassing the cache."""
        for i in range(len(self.offsets)):
            offset = self.offsets[i]
            block = Block(self._mm[offset : offset + self.sizes[i]], self.path, offset)
            block.check_lengths(self.path, offset)
            yield block.raw_columns()

    def approximate_offset(self, key: bytes) -> int:
        """File offset where `key` would sit (for size estimates)."""
        i = bisect_left(self.last_keys, key)
        return self.offsets[i] if i < len(self.offsets) else self.size

    def close(self) -> None:
        """Unmap the file now, unless cached views of it are alive: then the mapping
        goes when they do."""
        self._view.release()
        with contextlib.suppress(BufferError):
            self._mm.close()
