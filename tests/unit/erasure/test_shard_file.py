"""Shard files on a real (temporary) directory: the streaming writer's visibility rules
and checks, and the reader's verification of every block it returns."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import crc32c
import pytest

from atoll.erasure.codec import StripeCodec
from atoll.erasure.errors import (
    FormatError,
    InvalidRange,
    ShardCorrupt,
    ShardTruncated,
    ShardWriteError,
)
from atoll.erasure.shard_file import ShardReader, ShardWriter, is_temp_name
from atoll.erasure.shard_format import (
    CRC_BYTES,
    DATA_LENGTH_UNFINISHED,
    ShardHeader,
    block_offset,
    encode_header,
)
from page_cache import droppable_dir, resident_pages

BLOCK = 4096
K, M = 4, 2
FULL = BLOCK // K


def header_for(data_length: int, shard_index: int = 0) -> ShardHeader:
    return ShardHeader("bkt", "key/a", "ver", 1, shard_index, K, M, BLOCK, data_length)


def shard_blocks(data: bytes) -> list[list[bytes]]:
    """blocks[i][j]: shard i of stripe j, as the gateway would produce them."""
    codec = StripeCodec(header_for(0).layout)
    blocks: list[list[bytes]] = [[] for _ in range(K + M)]
    for start in range(0, len(data), BLOCK):
        for i, shard in enumerate(codec.encode(data[start : start + BLOCK])):
            blocks[i].append(bytes(shard))
    return blocks


def write_file(
    directory: Path, name: str, data: bytes, shard_index: int = 0, *, length_up_front: bool = True
) -> str:
    blocks = shard_blocks(data)[shard_index]
    length = len(data) if length_up_front else DATA_LENGTH_UNFINISHED
    with ShardWriter(str(directory), name, header_for(length, shard_index)) as writer:
        for block in blocks:
            writer.write_block(block)
        return writer.finish(None if length_up_front else len(data))


def data_of(length: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(length)


@pytest.mark.parametrize("length_up_front", [True, False])
@pytest.mark.parametrize("data_length", [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 5])
def test_round_trip(tmp_path: Path, data_length: int, length_up_front: bool) -> None:
    data = data_of(data_length)
    blocks = shard_blocks(data)
    for shard in (0, K + M - 1):
        path = write_file(tmp_path, f"s{shard}", data, shard, length_up_front=length_up_front)
        with ShardReader(path) as reader:
            assert reader.header == header_for(data_length, shard)
            assert reader.block_count == len(blocks[shard])
            assert [bytes(b) for b in reader.iter_blocks()] == blocks[shard]
            assert [bytes(b) for b in reader.iter_blocks(batch_bytes=1)] == blocks[shard]
            whole = reader.read_range(0, reader.layout.shard_data_bytes(data_length))
            assert b"".join(whole) == b"".join(blocks[shard])


def test_the_shards_decode_back_to_the_part(tmp_path: Path) -> None:
    data = data_of(5 * BLOCK + 123, seed=7)
    paths = [write_file(tmp_path, f"s{i}", data, i) for i in range(K + M)]
    codec = StripeCodec(header_for(0).layout)
    readers = [ShardReader(p) for p in paths]
    try:
        out = bytearray()
        for j in range(readers[0].block_count):
            survivors = {i: bytes(readers[i].read_blocks(j, j + 1)[0]) for i in (1, 2, 4, 5)}
            stripe_length = readers[0].layout.stripe_length(len(data), j)
            out += b"".join(codec.decode(survivors, stripe_length))
        assert out == data
    finally:
        for reader in readers:
            reader.close()


def test_range_reads_touch_only_the_needed_blocks(tmp_path: Path) -> None:
    data = data_of(6 * BLOCK)
    path = write_file(tmp_path, "s0", data)
    blocks = shard_blocks(data)[0]
    # Corrupt blocks 0 and 4; a range inside blocks 1..3 must still read cleanly.
    with ShardReader(path) as reader:
        header_length = reader.header_length
    with open(path, "r+b") as f:
        for bad in (0, 4):
            f.seek(block_offset(header_for(len(data)), header_length, bad) + 3)
            f.write(b"\xff\xfe")
    with ShardReader(path) as reader:
        opened = reader.bytes_read
        pieces = reader.read_range(FULL + 10, 2 * FULL)  # blocks 1, 2 and 3
        assert b"".join(pieces) == b"".join(blocks)[FULL + 10 : 3 * FULL + 10]
        assert reader.bytes_read - opened == 3 * (FULL + CRC_BYTES)
        assert [bytes(b) for b in reader.read_blocks(2, 3)] == [blocks[2]]
        with pytest.raises(ShardCorrupt) as info:
            reader.read_range(4 * FULL + 1, 1)
        assert info.value.block == 4


def test_a_flipped_bit_is_a_typed_error_naming_the_block(tmp_path: Path) -> None:
    data = data_of(4 * BLOCK)
    path = write_file(tmp_path, "s0", data)
    with ShardReader(path) as reader:
        offset = block_offset(reader.header, reader.header_length, 2) + FULL // 2
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))
    with ShardReader(path) as reader:
        with pytest.raises(ShardCorrupt) as info:
            list(reader.iter_blocks())
        assert info.value.block == 2
        assert info.value.file == path
        assert info.value.expected is not None and info.value.expected != info.value.actual
        # Blocks before it still read; nothing of block 2 is ever returned.
        assert len(reader.read_blocks(0, 2)) == 2
        with pytest.raises(ShardCorrupt):
            reader.read_blocks(1, 4)


def test_a_flipped_crc_byte_is_caught_too(tmp_path: Path) -> None:
    data = data_of(2 * BLOCK)
    path = write_file(tmp_path, "s0", data)
    with ShardReader(path) as reader:
        crc_at = block_offset(reader.header, reader.header_length, 1) - 1
    with open(path, "r+b") as f:
        f.seek(crc_at)
        byte = f.read(1)
        f.seek(crc_at)
        f.write(bytes([byte[0] ^ 0x01]))
    with ShardReader(path) as reader, pytest.raises(ShardCorrupt) as info:
        reader.read_blocks(0, 1)
    assert info.value.block == 0


@pytest.mark.parametrize("keep", [0, 30, "header", "mid-block", "one-short"])
def test_a_truncated_file_is_a_typed_error(tmp_path: Path, keep: object) -> None:
    data = data_of(3 * BLOCK)
    path = write_file(tmp_path, "s0", data)
    size = os.path.getsize(path)
    header_length = len(encode_header(header_for(len(data))))
    cut = {
        "header": header_length,
        "mid-block": header_length + FULL + CRC_BYTES + 7,
        "one-short": size - 1,
    }.get(str(keep), keep)
    assert isinstance(cut, int)
    os.truncate(path, cut)
    with pytest.raises(ShardTruncated) as info:
        ShardReader(path)
    if keep == "mid-block":
        assert info.value.block == 1
    if keep == "one-short":
        assert info.value.block == 2


def test_a_file_truncated_after_open_is_caught_on_read(tmp_path: Path) -> None:
    data = data_of(3 * BLOCK)
    path = write_file(tmp_path, "s0", data)
    with ShardReader(path) as reader:
        os.truncate(path, os.path.getsize(path) - 10)
        assert len(reader.read_blocks(0, 2)) == 2
        with pytest.raises(ShardTruncated) as info:
            reader.read_blocks(1, 3)
        assert info.value.block == 2


def test_trailing_bytes_are_a_format_error(tmp_path: Path) -> None:
    path = write_file(tmp_path, "s0", data_of(BLOCK))
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(FormatError, match="trailing"):
        ShardReader(path)


def test_nothing_is_visible_before_finish(tmp_path: Path) -> None:
    data = data_of(2 * BLOCK + 1)
    blocks = shard_blocks(data)[3]
    writer = ShardWriter(str(tmp_path), "shard-3", header_for(DATA_LENGTH_UNFINISHED, 3))
    writer.write_block(blocks[0])
    writer.write_block(blocks[1])
    names = os.listdir(tmp_path)
    assert "shard-3" not in names
    assert names == [os.path.basename(writer.temp_path)] and is_temp_name(names[0])
    # The temporary file has an unfinished header: a reader refuses it.
    with pytest.raises(FormatError, match="unfinished"):
        ShardReader(writer.temp_path)
    writer.write_block(blocks[2])
    assert writer.finish(len(data)) == str(tmp_path / "shard-3")
    assert os.listdir(tmp_path) == ["shard-3"]
    with ShardReader(str(tmp_path / "shard-3")) as reader:
        assert reader.header.data_length == len(data)
        assert [bytes(b) for b in reader.iter_blocks()] == blocks


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    writer = ShardWriter(str(tmp_path), "s0", header_for(DATA_LENGTH_UNFINISHED))
    writer.write_block(bytes(FULL))
    writer.abort()
    writer.abort()  # idempotent
    assert os.listdir(tmp_path) == []
    with pytest.raises(ShardWriteError):
        writer.write_block(bytes(FULL))


def test_leaving_the_block_by_an_exception_aborts(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError),
        ShardWriter(str(tmp_path), "s0", header_for(2 * BLOCK)) as writer,
    ):
        writer.write_block(bytes(FULL))
        raise RuntimeError("upload failed")
    assert os.listdir(tmp_path) == []


def test_a_finished_file_replaces_an_older_one(tmp_path: Path) -> None:
    write_file(tmp_path, "s0", data_of(BLOCK, seed=1))
    newer = data_of(2 * BLOCK, seed=2)
    path = write_file(tmp_path, "s0", newer)
    with ShardReader(path) as reader:
        assert reader.header.data_length == 2 * BLOCK
    assert os.listdir(tmp_path) == ["s0"]


def test_blocks_that_do_not_fit_the_layout_are_refused(tmp_path: Path) -> None:
    directory = str(tmp_path)
    # Known length: 2 blocks, the second of 1 byte (a 4097-byte part).
    with ShardWriter(directory, "a", header_for(BLOCK + 1)) as writer:
        with pytest.raises(ShardWriteError, match="expected"):
            writer.write_block(bytes(FULL - 1))
        writer.write_block(bytes(FULL))
        writer.write_block(bytes(1))
        with pytest.raises(ShardWriteError, match="header says"):
            writer.finish(BLOCK + 2)
        writer.finish()
    with ShardWriter(directory, "c", header_for(BLOCK)) as writer:
        writer.write_block(bytes(FULL))
        with pytest.raises(ShardWriteError, match="past"):
            writer.write_block(bytes(FULL))
    # Unknown length: a short block must be the last, and the count must fit.
    with ShardWriter(directory, "b", header_for(DATA_LENGTH_UNFINISHED)) as writer:
        with pytest.raises(ShardWriteError):
            writer.write_block(bytes(FULL + 1))
        writer.write_block(bytes(FULL - 1))
        with pytest.raises(ShardWriteError, match="must be the last"):
            writer.write_block(bytes(FULL))
        with pytest.raises(ShardWriteError, match="needs the data length"):
            writer.finish()
        with pytest.raises(ShardWriteError, match="blocks written"):
            writer.finish(2 * BLOCK)
        with pytest.raises(ShardWriteError, match="last block"):
            writer.finish(BLOCK)
    assert sorted(os.listdir(tmp_path)) == ["a"]
    with pytest.raises(ShardWriteError):
        ShardWriter(directory, ".x.tmp", header_for(0))


def test_read_limits_and_ranges(tmp_path: Path) -> None:
    path = write_file(tmp_path, "s0", data_of(2 * BLOCK))
    with ShardReader(path) as reader:
        with pytest.raises(InvalidRange):
            reader.read_blocks(1, 3)
        with pytest.raises(InvalidRange):
            reader.read_range(2 * FULL - 1, 2)
        with pytest.raises(InvalidRange):
            reader.read_blocks(0, 2, into=bytearray(10))
        assert reader.read_range(5, 0) == []
        reused = bytearray(2 * (FULL + CRC_BYTES))
        views = reader.read_blocks(0, 2, into=reused)
        assert all(v.obj is reused for v in views)


def test_an_empty_part_is_a_header_only(tmp_path: Path) -> None:
    path = write_file(tmp_path, "s0", b"")
    assert os.path.getsize(path) == len(encode_header(header_for(0)))
    with ShardReader(path) as reader:
        assert reader.block_count == 0
        assert list(reader.iter_blocks()) == []


def test_the_header_identifies_the_file(tmp_path: Path) -> None:
    header = dataclasses.replace(header_for(BLOCK), bucket="ünïcode", key="a/b c", version_id="")
    with ShardWriter(str(tmp_path), "s", header) as writer:
        writer.write_block(bytes(FULL))
        path = writer.finish()
    with ShardReader(path) as reader:
        assert reader.header.identity == ("ünïcode", "a/b c", "", 1, 0)


def test_read_blocks_hands_back_the_stored_crcs_it_verified(tmp_path: Path) -> None:
    data = data_of(2 * BLOCK + 5)
    path = write_file(tmp_path, "s0", data)
    with ShardReader(path) as reader:
        crcs: list[int] = []
        payloads = reader.read_blocks(0, reader.block_count, crcs=crcs)
    assert len(crcs) == len(payloads) == 3
    assert crcs == [crc32c.crc32c(p) for p in payloads]


def test_an_uncached_reader_reads_from_the_device_and_leaves_nothing_cached(
    tmp_path: Path,
) -> None:
    data = data_of(1024 * BLOCK + 5)  # a shard file of 1 MiB and a bit
    with droppable_dir(tmp_path) as directory:
        path = write_file(directory, "s0", data)
        # A plain read leaves the file in the page cache (fsynced, so its pages are clean).
        with ShardReader(path) as reader:
            plain = b"".join(reader.read_blocks(0, reader.block_count))
        resident, pages = resident_pages(path)
        assert pages > 256 and resident == pages
        with ShardReader(path, uncached=True) as reader:
            # Dropped at open; only the header's read (and its read-ahead) came back.
            assert resident_pages(path)[0] < pages // 4
            uncached = b"".join(reader.read_blocks(0, reader.block_count))
            assert resident_pages(path)[0] == pages  # the read went through the cache
            reader.drop_cache()
        assert uncached == plain
        assert resident_pages(path) == (0, pages)
