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
from bisect import bisect_left
from itertools import accumulate

from crc32c import crc32c

from atoll.base.errors import CorruptionError

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
_LITTLE = sys.byteorder == "little"


def _arr(code: str, values: object) -> array[int]:
    out = array(code, values)  # type: ignore[call-overload]
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


def block_cuts(keys: list[bytes], values: list[bytes], block_size: int) -> list[int]:
    """End indexes of consecutive blocks of about `block_size` bytes (at least one entry)."""
    sizes = accumulate(len(k) + len(v) + ENTRY_OVERHEAD for k, v in zip(keys, values, strict=True))
    cum = list(sizes)
    cuts: list[int] = []
    start = 0
    n = len(cum)
    while start < n:
        base = cum[start - 1] if start else 0
        end = bisect_left(cum, base + block_size, start) + 1
        end = min(max(end, start + 1), n)
        cuts.append(end)
        start = end
    return cuts


class Block:
    """A checksum-verified block with column views for lookups without full decoding."""

    __slots__ = ("data", "deletes", "kbase", "kinds", "koff", "n", "seqs", "vbase", "voff")

    def __init__(self, data: bytes, path: str, offset: int) -> None:
        if len(data) < BLOCK_HEAD.size + 4:
            raise CorruptionError("SSTable block too short", file=path, offset=offset)
        stored = int.from_bytes(data[-4:], "little")
        actual = crc32c(memoryview(data)[:-4])
        if stored != actual:
            raise CorruptionError(
                "SSTable block checksum mismatch",
                file=path,
                offset=offset,
                expected=stored,
                actual=actual,
            )
        n, flags = BLOCK_HEAD.unpack_from(data, 0)
        self.n = n
        self.deletes = bool(flags & 1)
        pos = BLOCK_HEAD.size
        offsets_end = pos + 8 * (n + 1)
        seqs_end = offsets_end + 8 * n
        if seqs_end + n > len(data) - 4:
            raise CorruptionError("SSTable block header out of range", file=path, offset=offset)
        mv = memoryview(data)
        self.koff = _view(mv[pos : pos + 4 * (n + 1)], "I")
        self.voff = _view(mv[pos + 4 * (n + 1) : offsets_end], "I")
        self.seqs = _view(mv[offsets_end:seqs_end], "Q")
        self.kinds = data[seqs_end : seqs_end + n]
        self.kbase = seqs_end + n
        self.vbase = self.kbase + self.koff[n]
        if self.vbase + self.voff[n] != len(data) - 4:
            raise CorruptionError("SSTable block lengths do not add up", file=path, offset=offset)
        self.data = data

    def key(self, i: int) -> bytes:
        kb = self.kbase
        return self.data[kb + self.koff[i] : kb + self.koff[i + 1]]

    def value(self, i: int) -> bytes:
        vb = self.vbase
        return self.data[vb + self.voff[i] : vb + self.voff[i + 1]]

    def seek(self, key: bytes) -> int:
        """Index of the first entry whose user key is >= `key` (n if none)."""
        data, koff, kb = self.data, self.koff, self.kbase
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) >> 1
            if data[kb + koff[mid] : kb + koff[mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def columns(self) -> tuple[list[bytes], list[int], list[bytes | None]]:
        """All entries decoded: keys, sequence numbers, values (None for a tombstone)."""
        data, kb, vb = self.data, self.kbase, self.vbase
        koff, voff = self.koff, self.voff
        keys = [data[kb + a : kb + b] for a, b in zip(koff, koff[1:], strict=False)]
        values: list[bytes | None] = [
            data[vb + a : vb + b] for a, b in zip(voff, voff[1:], strict=False)
        ]
        if self.deletes:
            kinds = self.kinds
            for i in range(self.n):
                if kinds[i] == KIND_DELETE:
                    values[i] = None
        return keys, list(self.seqs), values


def _view(mv: memoryview, code: str) -> memoryview | array[int]:
    if _LITTLE:
        return mv.cast(code)
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
            "SSTable footer checksum mismatch", file=path, offset=offset, expected=crc, actual=actual
        )
    if version != SST_FORMAT_VERSION:
        raise CorruptionError(f"unsupported SSTable version {version}", file=path, offset=offset)
    return io, isz, bo, bsz, entries
