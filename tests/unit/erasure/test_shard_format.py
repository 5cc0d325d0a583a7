"""The shard file format (atoll.erasure.shard_format): header round trip and every
refusal, block framing, size checks. Pure: bytes in, bytes out."""

from __future__ import annotations

import dataclasses
import struct

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.base.errors import CorruptionError
from atoll.erasure.errors import (
    FormatError,
    HeaderFieldError,
    InvalidRange,
    ShardCorrupt,
    ShardTruncated,
)
from atoll.erasure.shard_format import (
    BUCKET_BYTES_MAX,
    DATA_LENGTH_UNFINISHED,
    FIXED_HEADER_BYTES,
    HEADER_BYTES_MAX,
    KEY_BYTES_MAX,
    VERSION_ID_BYTES_MAX,
    ShardHeader,
    block_crc,
    block_offset,
    block_range,
    check_size,
    decode_header,
    encode_header,
    file_size,
    verify_blocks,
)

HEADER = ShardHeader(
    bucket="photos",
    key="2026/cat.jpg",
    version_id="v1",
    part_number=3,
    shard_index=5,
    k=4,
    m=2,
    block_size=64,
    data_length=150,
)


def reseal(raw: bytes | bytearray) -> bytes:
    """`raw` with its header CRC recomputed, so that a field check (not the CRC) fails."""
    length = struct.unpack_from("<H", raw, 14)[0]
    body = bytes(raw[: length - 4])
    return body + struct.pack("<I", crc32c.crc32c(body)) + bytes(raw[length:])


names = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    bucket=names,
    key=names,
    version_id=names,
    part_number=st.integers(0, 2**32 - 1),
    profile=st.sampled_from([(1, 0), (1, 2), (2, 1), (4, 2), (8, 3), (32, 16)]),
    shard=st.integers(0, 47),
    block_size=st.integers(1, 64 * 1024 * 1024),
    data_length=st.integers(0, 5 * 1024**4),
)
def test_header_round_trip(
    bucket: str,
    key: str,
    version_id: str,
    part_number: int,
    profile: tuple[int, int],
    shard: int,
    block_size: int,
    data_length: int,
) -> None:
    k, m = profile
    header = ShardHeader(
        bucket, key, version_id, part_number, shard % (k + m), k, m, block_size, data_length
    )
    raw = encode_header(header)
    assert len(raw) <= HEADER_BYTES_MAX
    assert decode_header(raw + b"blocks follow", "f") == (header, len(raw))


def test_header_layout_by_hand() -> None:
    raw = encode_header(HEADER)
    names = b"photos" + b"2026/cat.jpg" + b"v1"
    assert len(raw) == 40 + len(names) + 4
    assert raw[:8] == b"ATOLLSHD"
    assert raw[8:16] == bytes([1, 1, 4, 2, 5, 0]) + struct.pack("<H", len(raw))
    assert struct.unpack_from("<IIQHHHH", raw, 16) == (64, 3, 150, 6, 12, 2, 0)
    assert raw[40:-4] == names
    assert struct.unpack("<I", raw[-4:])[0] == crc32c.crc32c(raw[:-4])


def test_the_unfinished_header_has_the_final_length_and_is_refused() -> None:
    unfinished = encode_header(dataclasses.replace(HEADER, data_length=DATA_LENGTH_UNFINISHED))
    assert len(unfinished) == len(encode_header(HEADER))
    with pytest.raises(FormatError, match="unfinished"):
        decode_header(unfinished, "f")


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (0, b"X", "bad magic"),
        (8, b"\x02", "unknown format version"),
        (9, b"\x02", "unknown code"),
        (10, b"\x00", "profile"),
        (11, b"\x11", "profile"),
        (12, b"\x06", "shard index"),
        (13, b"\x01", "unknown flags"),
        (16, b"\x00\x00\x00\x00", "block size"),
    ],
)
def test_bad_fields_are_format_errors(offset: int, value: bytes, match: str) -> None:
    raw = bytearray(encode_header(HEADER))
    raw[offset : offset + len(value)] = value
    with pytest.raises(FormatError, match=match) as info:
        decode_header(reseal(raw), "shard-file")
    assert isinstance(info.value, CorruptionError) and info.value.file == "shard-file"


def test_a_flipped_header_bit_fails_the_crc() -> None:
    raw = bytearray(encode_header(HEADER))
    raw[30] ^= 0x04  # inside the data length
    with pytest.raises(FormatError, match="CRC") as info:
        decode_header(raw, "f")
    assert info.value.expected != info.value.actual


def test_names_that_are_not_utf8_or_lengths_that_disagree() -> None:
    raw = bytearray(encode_header(HEADER))
    raw[40] = 0xFF
    with pytest.raises(FormatError, match="UTF-8"):
        decode_header(reseal(raw), "f")
    raw = bytearray(encode_header(HEADER))
    raw[32] += 1  # bucket length no longer adds up to the header length
    with pytest.raises(FormatError, match="header length"):
        decode_header(raw, "f")


def test_a_short_header_is_truncated() -> None:
    raw = encode_header(HEADER)
    for cut in (0, 10, FIXED_HEADER_BYTES - 1, FIXED_HEADER_BYTES, len(raw) - 1):
        with pytest.raises(ShardTruncated):
            decode_header(raw[:cut], "f")


@pytest.mark.parametrize(
    "change",
    [
        {"bucket": "b" * (BUCKET_BYTES_MAX + 1)},
        {"key": "é" * (KEY_BYTES_MAX // 2 + 1)},  # 2 bytes a character in UTF-8
        {"version_id": "v" * (VERSION_ID_BYTES_MAX + 1)},
        {"shard_index": 6},
        {"part_number": -1},
        {"part_number": 2**32},
        {"data_length": 5 * 1024**4 + 1},
        {"k": 0},
        {"block_size": 0},
    ],
)
def test_unwritable_headers_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(HeaderFieldError):
        encode_header(dataclasses.replace(HEADER, **change))  # type: ignore[arg-type]


# -- blocks ----------------------------------------------------------------------------------


def framed_blocks(header: ShardHeader) -> tuple[list[bytes], bytes]:
    layout = header.layout
    payloads = [
        bytes([j + 1]) * layout.block_bytes(header.data_length, j)
        for j in range(layout.stripe_count(header.data_length))
    ]
    return payloads, b"".join(p + block_crc(p) for p in payloads)


def test_block_geometry() -> None:
    # 150 bytes in 4+2 stripes of 64: stripes 64, 64, 22; blocks 16, 16, 6 bytes.
    length = len(encode_header(HEADER))
    assert [HEADER.layout.block_bytes(150, j) for j in range(3)] == [16, 16, 6]
    assert block_offset(HEADER, length, 0) == length
    assert block_offset(HEADER, length, 2) == length + 2 * 20
    assert file_size(HEADER, length) == length + 16 + 16 + 6 + 3 * 4
    assert block_range(HEADER, 1, 3) == (20, 20 + 10)
    assert block_range(HEADER, 2, 2) == (40, 0)
    with pytest.raises(InvalidRange):
        block_range(HEADER, 2, 4)


def test_verify_blocks_returns_payloads_and_names_a_bad_block() -> None:
    payloads, blocks = framed_blocks(HEADER)
    got = verify_blocks(HEADER, blocks, 0, 3, "f", 100)
    assert [bytes(p) for p in got] == payloads
    start, size = block_range(HEADER, 1, 3)
    assert [
        bytes(p) for p in verify_blocks(HEADER, blocks[start : start + size], 1, 3, "f", 0)
    ] == payloads[1:]
    for position, block in [(5, 0), (20 + 15, 1), (40 + 2, 2), (40 + 6 + 1, 2), (16, 0)]:
        bad = bytearray(blocks)
        bad[position] ^= 0x80  # a payload byte, or a CRC byte
        with pytest.raises(ShardCorrupt) as info:
            verify_blocks(HEADER, bad, 0, 3, "file-x", 100)
        assert info.value.block == block
        assert info.value.offset == 100 + 20 * block
        assert "block" in str(info.value) and "file-x" in str(info.value)
    with pytest.raises(ShardTruncated):
        verify_blocks(HEADER, blocks[:-1], 0, 3, "f", 100)


def test_check_size_tells_short_from_long() -> None:
    length = len(encode_header(HEADER))
    expected = file_size(HEADER, length)
    check_size(HEADER, length, expected, "f")
    with pytest.raises(ShardTruncated) as info:
        check_size(HEADER, length, expected - 1, "f")
    assert info.value.block == 2
    with pytest.raises(ShardTruncated) as info:
        check_size(HEADER, length, length + 19, "f")
    assert info.value.block == 0
    with pytest.raises(FormatError, match="trailing"):
        check_size(HEADER, length, expected + 1, "f")
