"""The shard file format, version 1: header and block framing. Pure: no I/O, no clock,
no randomness.

Implements docs/formats/shard_file.md §3-§4. A shard file holds shard `i` of every
stripe of one object part:

    header (40 + names + 4 bytes, CRC-32C) | block 0 | crc | block 1 | crc | ... | block n-1 | crc

Block `j` is shard `i` of stripe `j`; every block is `layout.full_shard_bytes` long
except the last, which may be shorter, and each is followed by the CRC-32C of its
bytes, so that a range read fetches the blocks it needs and their checksums in one
contiguous read, and a streaming writer never goes back except to patch the
header's data length at the end (the length may be unknown when the first byte is
written: a chunked upload).

Decoders raise `FormatError` for a bad header, `ShardTruncated` for a file shorter
than its header says, and `ShardCorrupt` naming the block for a CRC mismatch; never
return bad bytes. The shell (`shard_file.py`) does the reading and writing.
"""

from __future__ import annotations

import dataclasses
import struct

import crc32c

from atoll.base.errors import invariant
from atoll.erasure.errors import (
    FormatError,
    HeaderFieldError,
    InvalidProfile,
    InvalidRange,
    ShardCorrupt,
    ShardTruncated,
)
from atoll.erasure.stripe import DATA_LENGTH_MAX_BYTES, ReadableBuffer, StripeLayout

MAGIC = b"ATOLLSHD"
FORMAT_VERSION = 1

CODE_RS_CAUCHY_GF256 = 1
"""Byte 9 of the header: the code that made the parity shards (docs/formats/shard_file.md
§2). 1 is Reed-Solomon over GF(2^8) (polynomial 0x11D) with ISA-L's Cauchy generator
(`gf_gen_cauchy1_matrix`), all-ones parity rows when `k = 1`. Permanent."""

DATA_LENGTH_UNFINISHED = (1 << 64) - 1
"""Data length in the header of a file still being written. Readers refuse it."""

BUCKET_BYTES_MAX = 255
KEY_BYTES_MAX = 1024
"""S3's key limit, in UTF-8 bytes."""
VERSION_ID_BYTES_MAX = 255
PART_NUMBER_MAX = (1 << 32) - 1

FIXED_HEADER_BYTES = 40
CRC_BYTES = 4
HEADER_BYTES_MAX = (
    FIXED_HEADER_BYTES + BUCKET_BYTES_MAX + KEY_BYTES_MAX + VERSION_ID_BYTES_MAX + CRC_BYTES
)
"""1578: a reader that reads this many bytes from offset 0 has the whole header."""

# magic, version, code, k, m, shard index, flags, header length, block size,
# part number, data length, bucket length, key length, version id length, reserved
_FIXED = struct.Struct("<8sBBBBBBHIIQHHHH")
_CRC = struct.Struct("<I")
invariant(_FIXED.size == FIXED_HEADER_BYTES, "fixed shard header layout is not 40 bytes")


@dataclasses.dataclass(frozen=True, slots=True)
class ShardHeader:
    """Everything the header says. `data_length` is the part's length in bytes (not
    this file's): with `k`, `m` and `block_size` it fixes every block's size."""

    bucket: str
    key: str
    version_id: str
    part_number: int
    shard_index: int
    k: int
    m: int
    block_size: int
    data_length: int

    @property
    def layout(self) -> StripeLayout:
        return StripeLayout(self.k, self.m, self.block_size)

    @property
    def identity(self) -> tuple[str, str, str, int, int]:
        """(bucket, key, version id, part number, shard index): what the file belongs to."""
        return (self.bucket, self.key, self.version_id, self.part_number, self.shard_index)

    def finished(self, data_length: int) -> ShardHeader:
        return dataclasses.replace(self, data_length=data_length)


# -- header --------------------------------------------------------------------------------


def _name_bytes(what: str, value: str, limit: int) -> bytes:
    encoded = value.encode("utf-8")
    if len(encoded) > limit:
        raise HeaderFieldError(
            f"{what} of {len(encoded)} UTF-8 bytes is over the {limit}-byte limit"
        )
    return encoded


def encode_header(header: ShardHeader) -> bytes:
    """The header's bytes. `data_length` may be `DATA_LENGTH_UNFINISHED` (a file being
    written); the encoded length does not depend on it, so the final header can be
    written over the first in place."""
    try:
        layout = header.layout
    except InvalidProfile as err:
        raise HeaderFieldError(str(err)) from err
    if not 0 <= header.shard_index < layout.n:
        raise HeaderFieldError(f"shard index {header.shard_index} outside 0..{layout.n - 1}")
    if not 0 <= header.part_number <= PART_NUMBER_MAX:
        raise HeaderFieldError(f"part number {header.part_number} outside 0..{PART_NUMBER_MAX}")
    if not (
        0 <= header.data_length <= DATA_LENGTH_MAX_BYTES
        or header.data_length == DATA_LENGTH_UNFINISHED
    ):
        raise HeaderFieldError(f"data length {header.data_length} over {DATA_LENGTH_MAX_BYTES}")
    bucket = _name_bytes("bucket", header.bucket, BUCKET_BYTES_MAX)
    key = _name_bytes("key", header.key, KEY_BYTES_MAX)
    version_id = _name_bytes("version id", header.version_id, VERSION_ID_BYTES_MAX)
    length = FIXED_HEADER_BYTES + len(bucket) + len(key) + len(version_id) + CRC_BYTES
    body = (
        _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            CODE_RS_CAUCHY_GF256,
            header.k,
            header.m,
            header.shard_index,
            0,  # flags
            length,
            header.block_size,
            header.part_number,
            header.data_length,
            len(bucket),
            len(key),
            len(version_id),
            0,  # reserved
        )
        + bucket
        + key
        + version_id
    )
    return body + _CRC.pack(crc32c.crc32c(body))


def decode_header(data: ReadableBuffer, file: str) -> tuple[ShardHeader, int]:
    """The header at the start of `data` (at least the header's bytes; reading
    `HEADER_BYTES_MAX` bytes or the whole file is enough) and its length in bytes."""
    view = memoryview(data).cast("B")
    if len(view) < FIXED_HEADER_BYTES:
        raise ShardTruncated(
            f"{len(view)} bytes, shorter than the {FIXED_HEADER_BYTES}-byte fixed header",
            file=file,
        )
    (
        magic, version, code, k, m, shard_index, flags, length, block_size, part_number,
        data_length, bucket_len, key_len, version_id_len, _reserved,
    ) = _FIXED.unpack_from(view)  # fmt: skip
    if magic != MAGIC:
        raise FormatError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r})", file=file, offset=0)
    if version != FORMAT_VERSION:
        raise FormatError(
            f"unknown format version {version} (this code reads {FORMAT_VERSION}): "
            "corrupt, or written by newer code",
            file=file,
            offset=8,
        )
    if length != FIXED_HEADER_BYTES + bucket_len + key_len + version_id_len + CRC_BYTES:
        raise FormatError(
            f"header length {length} disagrees with its name lengths", file=file, offset=14
        )
    if len(view) < length:
        raise ShardTruncated(f"{len(view)} bytes, shorter than the {length}-byte header", file=file)
    expected: int = _CRC.unpack_from(view, length - CRC_BYTES)[0]
    actual = crc32c.crc32c(view[: length - CRC_BYTES])
    if actual != expected:
        raise FormatError(
            "header CRC-32C mismatch",
            file=file,
            offset=length - CRC_BYTES,
            expected=expected,
            actual=actual,
        )
    _check_fields(file, code, flags, k, m, shard_index, block_size, data_length)
    names = bytes(view[FIXED_HEADER_BYTES : length - CRC_BYTES])
    try:
        bucket = names[:bucket_len].decode("utf-8")
        key = names[bucket_len : bucket_len + key_len].decode("utf-8")
        version_id = names[bucket_len + key_len :].decode("utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"a name is not UTF-8: {err}", file=file) from err
    header = ShardHeader(
        bucket, key, version_id, part_number, shard_index, k, m, block_size, data_length
    )
    return header, length


def _check_fields(
    file: str,
    code: int,
    flags: int,
    k: int,
    m: int,
    shard_index: int,
    block_size: int,
    data_length: int,
) -> None:
    """Fields that passed the CRC but that this code cannot read (newer writer) or that
    no writer produces (a bug)."""
    if code != CODE_RS_CAUCHY_GF256:
        raise FormatError(f"unknown code {code}", file=file, offset=9)
    if flags != 0:
        raise FormatError(f"unknown flags {flags:#04x}", file=file, offset=13)
    if data_length == DATA_LENGTH_UNFINISHED:
        raise FormatError("unfinished shard file (data length never written)", file=file, offset=24)
    try:
        layout = StripeLayout(k, m, block_size)
        layout.stripe_count(data_length)
    except (InvalidProfile, ValueError) as err:
        raise FormatError(str(err), file=file) from err
    if shard_index >= layout.n:
        raise FormatError(
            f"shard index {shard_index} outside 0..{layout.n - 1}", file=file, offset=12
        )


# -- blocks --------------------------------------------------------------------------------


def block_offset(header: ShardHeader, header_length: int, block: int) -> int:
    """File offset of block `block` (0 <= block <= block count: the count gives the end)."""
    return header_length + block * (header.layout.full_shard_bytes + CRC_BYTES)


def file_size(header: ShardHeader, header_length: int) -> int:
    """The exact size of a complete shard file with this header."""
    layout = header.layout
    count = layout.stripe_count(header.data_length)
    return header_length + layout.shard_data_bytes(header.data_length) + count * CRC_BYTES


def block_crc(payload: ReadableBuffer, crc: int | None = None) -> bytes:
    """The 4 bytes that follow `payload` in the file: its CRC-32C (`crc` if the caller
    has already computed it from these very bytes)."""
    return _CRC.pack(crc32c.crc32c(payload) if crc is None else crc)


def check_size(header: ShardHeader, header_length: int, actual_size: int, file: str) -> None:
    """`ShardTruncated` (naming the first incomplete block) if the file is short,
    `FormatError` if it is longer than its header says."""
    expected = file_size(header, header_length)
    if actual_size < expected:
        stride = header.layout.full_shard_bytes + CRC_BYTES
        block = max(0, actual_size - header_length) // stride
        raise ShardTruncated(
            f"{actual_size} bytes, the header says {expected}",
            file=file,
            block=block,
            offset=actual_size,
        )
    if actual_size > expected:
        raise FormatError(
            f"{actual_size} bytes, the header says {expected}: trailing bytes",
            file=file,
            offset=expected,
        )


def block_range(header: ShardHeader, first: int, end: int) -> tuple[int, int]:
    """`(offset from block first's start, byte count)` of blocks `[first, end)` with
    their CRCs, relative to the start of block 0."""
    layout = header.layout
    count = layout.stripe_count(header.data_length)
    if not 0 <= first <= end <= count:
        raise InvalidRange(f"blocks [{first}, {end}) outside the file's {count} blocks")
    stride = layout.full_shard_bytes + CRC_BYTES
    if first == end:
        return first * stride, 0
    last_bytes = layout.block_bytes(header.data_length, end - 1) + CRC_BYTES
    return first * stride, (end - 1 - first) * stride + last_bytes


def verify_blocks(
    header: ShardHeader,
    data: ReadableBuffer,
    first: int,
    end: int,
    file: str,
    file_offset: int,
    crcs: list[int] | None = None,
) -> list[memoryview]:
    """The payloads of blocks `[first, end)` in `data` (exactly what `block_range` says
    to read, read from `file_offset`), each checked against its CRC-32C (appended to
    `crcs` if given). Raises `ShardCorrupt` naming the first bad block; views into
    `data`, no copy."""
    view = memoryview(data).cast("B")
    _, expected_bytes = block_range(header, first, end)
    if len(view) != expected_bytes:
        raise ShardTruncated(
            f"read {len(view)} bytes of blocks [{first}, {end}), expected {expected_bytes}",
            file=file,
            block=first + len(view) // (header.layout.full_shard_bytes + CRC_BYTES),
            offset=file_offset + len(view),
        )
    payloads = []
    at = 0
    for block in range(first, end):
        size = header.layout.block_bytes(header.data_length, block)
        payload = view[at : at + size]
        expected: int = _CRC.unpack_from(view, at + size)[0]
        actual = crc32c.crc32c(payload)
        if actual != expected:
            raise ShardCorrupt(
                "CRC-32C mismatch",
                file=file,
                block=block,
                offset=file_offset + at,
                expected=expected,
                actual=actual,
            )
        payloads.append(payload)
        if crcs is not None:
            crcs.append(expected)
        at += size + CRC_BYTES
    return payloads
