"""SSTable layout: file header, data/index blocks, footer (docs/formats.md §3). Pure.

    file header (16): magic "ATOLLSST" | version u8 | reserved 7
    data block 0 .. data block n-1
    bloom block
    index block
    footer (48)

Every block is `payload | crc32c(payload) u32 LE`. A block payload holds its entries
column by column so that encoding and decoding run in C:

    count u32 | flags u8 (bit 0: has deletions) | reserved 3
    key offsets   (count+1) x u32    -- into the keys area
    value offsets (count+1) x u32    -- into the values area
    sequence numbers count x u64
    kinds count x u8                 -- 1 value, 0 deletion (tombstone)
    keys area | values area

Entries are sorted by user key ascending, then sequence number descending. The index
block has the same layout: one entry per data block, key = the block's last user key,
value = offset u64 | size u32 (size includes the CRC), sequence = the block's last
sequence number. All integers little-endian; the 8-byte header keeps the u64 column
8-aligned.

    footer: index offset u64 | index size u32 | bloom offset u64 | bloom size u32
            | entry count u64 | version u8 | reserved 3 | magic "ATOLLSST"
            | crc32c of the preceding 44 bytes u32
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import accumulate, pairwise
from typing import Any, Literal

import numpy as np
from crc32c import crc32c

from atoll.base.errors import CorruptionError
from atoll.engine import native

SST_MAGIC = b"ATOLLSST"
SST_FORMAT_VERSION = 1
FILE_HEADER = struct.Struct("<8sB7x")
FOOTER = struct.Struct("<QIQIQB3x8sI")
FOOTER_SIZE = FOOTER.size
BLOCK_HEAD = struct.Struct("<IB3x")
HANDLE = struct.Struct("<QI")
KIND_DELETE = 0
KIND_VALUE = 1
ENTRY_OVERHEAD = 4 + 4 + 8 + 1
CRC32C_RESIDUE = 0x48674BC7
ABSENT: tuple[bool, bytes | None] = (False, None)
DELETED: tuple[bool, bytes | None] = (True, None)
_LITTLE = sys.byteorder == "little"


def _arr(code: str, values: object) -> array[int]:
    out: array[int] = array(code, values)  # type: ignore[call-overload]
    if not _LITTLE:
        out.byteswap()
    return out


def encode_block(keys: list[bytes], seqs: list[int], kinds: bytes, values: list[bytes]) -> bytes:
    """Block payload plus its CRC for entries given column-wise (see module docstring)."""
    count = len(keys)
    flags = 1 if kinds.count(KIND_DELETE) else 0
    payload = b"".join(
        (
            BLOCK_HEAD.pack(count, flags),
            _arr("I", accumulate(map(len, keys), initial=0)).tobytes(),
            _arr("I", accumulate(map(len, values), initial=0)).tobytes(),
            _arr("Q", seqs).tobytes(),
            kinds,
            b"".join(keys),
            b"".join(values),
        )
    )
    return payload + crc32c(payload).to_bytes(4, "little")


def entry_sizes(keys: list[bytes], values: list[bytes]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Cumulative encoded sizes of entries (for cutting blocks and tables), in C."""
    if native.entry_sizes is not None:
        sizes = np.frombuffer(native.entry_sizes(keys, values, ENTRY_OVERHEAD), dtype="<i8")
        return np.cumsum(sizes)
    n = len(keys)
    sizes = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    sizes += np.fromiter(map(len, values), dtype=np.int64, count=n)
    sizes += ENTRY_OVERHEAD
    return np.cumsum(sizes)


def cut_points(cumulative: np.ndarray[Any, np.dtype[np.int64]], chunk: int) -> list[int]:
    """End indexes of consecutive runs of about `chunk` bytes each (at least one entry
    per run; the last run ends at len(cumulative))."""
    n = len(cumulative)
    if n == 0:
        return []
    total = int(cumulative[-1])
    marks = np.arange(chunk, total, chunk, dtype=np.int64)
    ends = np.searchsorted(cumulative, marks, side="left") + 1
    cuts = sorted({int(e) for e in ends if 0 < e < n})
    cuts.append(n)
    return cuts


def block_cuts(keys: list[bytes], values: list[bytes], block_size: int) -> list[int]:
    """End indexes of consecutive blocks of about `block_size` bytes (at least one entry)."""
    return cut_points(entry_sizes(keys, values), block_size)


def _u32(data: bytes | memoryview) -> int:
    return int.from_bytes(data[:4], "little")


def block_entries(data: bytes | memoryview, path: str, offset: int) -> int:
    """Verify a block's CRC and header; returns its entry count."""
    # CRC-32C over a payload followed by its own little-endian CRC is a constant.
    if crc32c(data) != CRC32C_RESIDUE:
        stored = int.from_bytes(data[-4:], "little")
        raise CorruptionError(
            "SSTable block checksum mismatch",
            file=path,
            offset=offset,
            expected=stored,
            actual=crc32c(data[:-4]),
        )
    size = len(data)
    n = _u32(data) if size >= 20 else -1
    if n < 0 or 20 + 17 * n > size:
        raise CorruptionError("SSTable block header out of range", file=path, offset=offset)
    return n


class Block:
    """A checksum-verified block. The constructor checks only the CRC and the header;
    column views are made on first use, and a point lookup (`find`) runs in C when
    the accelerator is built (`atoll.engine.native`)."""

    __slots__ = ("_koff", "data", "n", "offset", "path", "referenced")

    def __init__(self, data: bytes, path: str, offset: int, *, verified: bool = False) -> None:
        self.n = block_entries(data, path, offset) if not verified else _u32(data)
        self.data = data
        self.path = path
        self.offset = offset
        self.referenced = False
        self._koff: memoryview | array[int] | None = None

    @property
    def koff(self) -> memoryview | array[int]:
        if self._koff is None:
            self._koff = _view(memoryview(self.data)[8 : 12 + 4 * self.n], "I")
        return self._koff

    @property
    def kbase(self) -> int:
        return 16 + 17 * self.n  # header, 2 offset columns, seqs, kinds

    def find(self, key: bytes, seq_limit: int) -> tuple[bool, bytes | None] | None:
        """The newest version of `key` with seq <= seq_limit held here: (True, value),
        (True, None) for a tombstone, (False, None) if the key is absent; None when
        its versions may continue in the next block."""
        if native.block_find is not None:
            try:
                found: tuple[bool, bytes | None] | None = native.block_find(
                    self.data, key, seq_limit
                )
            except ValueError as err:
                raise CorruptionError(str(err), file=self.path, offset=self.offset) from err
            return found
        return self.find_python(key, seq_limit)

    def find_python(self, key: bytes, seq_limit: int) -> tuple[bool, bytes | None] | None:
        """`find` in Python: the reference the C version is tested against."""
        data, koff, kb, n = self.data, self.koff, self.kbase, self.n
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if data[kb + koff[mid] : kb + koff[mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        j = lo
        while j < n:
            if data[kb + koff[j] : kb + koff[j + 1]] != key:
                return ABSENT
            p = 16 + 8 * n + 8 * j
            if int.from_bytes(data[p : p + 8], "little") <= seq_limit:
                if data[16 + 16 * n + j] == KIND_DELETE:
                    return DELETED
                a, b = _TWO_U32.unpack_from(data, 12 + 4 * n + 4 * j)
                vb = kb + koff[n]
                return True, data[vb + a : vb + b]
            j += 1
        return None

    def check_lengths(self, path: str, offset: int) -> None:
        """The key and value areas end exactly where the block does (a CRC-valid block
        that fails this was written wrong: still corruption to the reader)."""
        n = self.n
        vend = int.from_bytes(self.data[12 + 8 * n : 16 + 8 * n], "little")
        if self.kbase + self.koff[n] + vend != len(self.data) - 4:
            raise CorruptionError("SSTable block lengths do not add up", file=path, offset=offset)

    def raw_columns(self) -> tuple[list[bytes], list[int], bytes, list[bytes]]:
        """All entries: keys, sequence numbers, kinds, values (b"" for tombstones)."""
        if native.block_columns is not None:
            try:
                return native.block_columns(self.data)
            except ValueError as err:
                raise CorruptionError(str(err), file=self.path, offset=self.offset) from err
        return self.raw_columns_python()

    def raw_columns_python(self) -> tuple[list[bytes], list[int], bytes, list[bytes]]:
        """`raw_columns` in Python: the reference the C version is tested against."""
        data, n, kb = self.data, self.n, self.kbase
        mv = memoryview(data)
        koff = self.koff
        voff = _view(mv[12 + 4 * n : 16 + 8 * n], "I")
        seqs = _view(mv[16 + 8 * n : 16 + 16 * n], "Q")
        vb = kb + koff[n]
        keys = [data[kb + a : kb + b] for a, b in pairwise(koff)]
        values = [data[vb + a : vb + b] for a, b in pairwise(voff)]
        return keys, list(seqs), data[16 + 16 * n : kb], values

    def columns(
        self, path: str = "?", offset: int = 0
    ) -> tuple[list[bytes], list[int], list[bytes | None]]:
        """All entries decoded: keys, sequence numbers, values (None for a tombstone)."""
        self.check_lengths(path, offset)
        keys, seqs, kinds, raw = self.raw_columns()
        values: list[bytes | None] = list(raw)
        if self.data[4] & 1:  # the block holds deletions
            for i in range(self.n):
                if kinds[i] == KIND_DELETE:
                    values[i] = None
        return keys, seqs, values


_TWO_U32 = struct.Struct("<II")


def _view(mv: memoryview, code: Literal["I", "Q"]) -> memoryview | array[int]:
    if _LITTLE:
        view: memoryview = mv.cast(code)
        return view
    out = array(code, mv.tobytes())
    out.byteswap()
    return out


def encode_footer(index: tuple[int, int], bloom: tuple[int, int], entries: int) -> bytes:
    body = FOOTER.pack(
        index[0], index[1], bloom[0], bloom[1], entries, SST_FORMAT_VERSION, SST_MAGIC, 0
    )[:-4]
    return body + crc32c(body).to_bytes(4, "little")


def decode_footer(data: bytes, path: str, offset: int) -> tuple[int, int, int, int, int]:
    """(index offset, index size, bloom offset, bloom size, entries)."""
    if len(data) != FOOTER_SIZE:
        raise CorruptionError("SSTable shorter than its footer", file=path, offset=offset)
    io, isz, bo, bsz, entries, version, magic, crc = FOOTER.unpack(data)
    actual = crc32c(data[:-4])
    if magic != SST_MAGIC:
        raise CorruptionError(f"bad SSTable magic {magic!r}", file=path, offset=offset)
    if crc != actual:
        raise CorruptionError(
            "SSTable footer checksum mismatch",
            file=path,
            offset=offset,
            expected=crc,
            actual=actual,
        )
    if version != SST_FORMAT_VERSION:
        raise CorruptionError(f"unsupported SSTable version {version}", file=path, offset=offset)
    return io, isz, bo, bsz, entries
