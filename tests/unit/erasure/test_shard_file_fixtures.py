"""Shard files written by format version 1 stay readable, and today's writer still
produces them byte for byte (STYLE §8).

tests/fixtures/formats/v1/shard_file* were written once by
tests/fixtures/formats/make_shard_file_fixtures.py and are never regenerated; the
layout is docs/formats/shard_file.md. What they hold is spelled out here again,
independently of the generator.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import pytest

from atoll.erasure.codec import StripeCodec
from atoll.erasure.shard_file import ShardReader, ShardWriter
from atoll.erasure.shard_format import DATA_LENGTH_UNFINISHED, ShardHeader

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "formats" / "v1"

PART_2_1 = b"Atoll shard file format"
PART_4_2 = bytes((i * 37 + 11) % 256 for i in range(150))
PART_1_2 = b"hello"

EXPECTED: dict[str, tuple[ShardHeader, bytes]] = {
    **{
        f"shard_file_2+1_{i}.bin": (
            ShardHeader("photos", "cat.txt", "v1", 0, i, 2, 1, 16, 23),
            PART_2_1,
        )
        for i in range(3)
    },
    **{
        f"shard_file_4+2_{i}.bin": (
            ShardHeader("b", "dir/ключ", "3f2a", 7, i, 4, 2, 64, 150),
            PART_4_2,
        )
        for i in (0, 5)
    },
    "shard_file_1+2_2.bin": (ShardHeader("b", "k", "", 1, 2, 1, 2, 1024, 5), PART_1_2),
}


def blocks_of(name: str) -> tuple[ShardHeader, list[bytes]]:
    with ShardReader(str(FIXTURES / name)) as reader:
        return reader.header, [bytes(b) for b in reader.iter_blocks()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_headers_read_back(name: str) -> None:
    header, _ = blocks_of(name)
    assert header == EXPECTED[name][0]


def test_the_2_plus_1_part_decodes_from_any_two_files() -> None:
    files = [blocks_of(f"shard_file_2+1_{i}.bin")[1] for i in range(3)]
    # Stripes of 16 and 7 bytes; data shard 0 holds "Atoll sh" and " for".
    assert files[0] == [b"Atoll sh", b" for"]
    assert files[1] == [b"ard file", b"mat\0"]
    layout = EXPECTED["shard_file_2+1_0.bin"][0].layout
    codec = StripeCodec(layout)
    for pair in itertools.combinations(range(3), 2):
        part = b""
        for j, stripe_length in enumerate((16, 7)):
            part += b"".join(codec.decode({i: files[i][j] for i in pair}, stripe_length))
        assert part == PART_2_1, pair


def test_the_data_shards_hold_the_part_bytes() -> None:
    _, blocks = blocks_of("shard_file_4+2_0.bin")
    assert blocks == [PART_4_2[0:16], PART_4_2[64:80], PART_4_2[128:134]]
    _, copies = blocks_of("shard_file_1+2_2.bin")
    assert copies == [PART_1_2]


def write_today(header: ShardHeader, part: bytes, length_up_front: bool) -> bytes:
    layout = header.layout
    codec = StripeCodec(layout)
    with tempfile.TemporaryDirectory() as directory:
        start = header if length_up_front else header.finished(DATA_LENGTH_UNFINISHED)
        with ShardWriter(directory, "s", start, sync=False) as writer:
            for offset in range(0, len(part), layout.block_size):
                writer.write_block(
                    codec.encode(part[offset : offset + layout.block_size])[header.shard_index]
                )
            path = writer.finish(None if length_up_front else len(part))
        return Path(path).read_bytes()


@pytest.mark.parametrize("length_up_front", [True, False])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_todays_writer_produces_the_same_bytes(name: str, length_up_front: bool) -> None:
    header, part = EXPECTED[name]
    assert write_today(header, part, length_up_front) == (FIXTURES / name).read_bytes()


def test_the_annotated_dump_is_the_file() -> None:
    dump = (FIXTURES / "shard_file_2+1_0.hex").read_text(encoding="utf-8")
    data = b""
    for line in dump.splitlines():
        offset, rest = line.split("  ", 1)
        assert int(offset, 16) == len(data)
        data += bytes.fromhex(rest[:24])
    assert data == (FIXTURES / "shard_file_2+1_0.bin").read_bytes()


def test_the_index_lists_every_file() -> None:
    lines = [
        line.split(" ")
        for line in (FIXTURES / "shard_file.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert sorted(fields[0] for fields in lines) == sorted(EXPECTED)
    for (
        name,
        bucket,
        key,
        version_id,
        part_number,
        shard,
        k,
        m,
        block,
        length,
        _,
        part_hex,
    ) in lines:
        header, part = EXPECTED[name]
        assert (bucket, key, "" if version_id == "-" else version_id) == (
            header.bucket,
            header.key,
            header.version_id,
        )
        assert [int(x) for x in (part_number, shard, k, m, block, length)] == [
            header.part_number,
            header.shard_index,
            header.k,
            header.m,
            header.block_size,
            header.data_length,
        ]
        assert bytes.fromhex(part_hex) == part
    assert {n for n in os.listdir(FIXTURES) if n.startswith("shard_file")} == {
        *EXPECTED,
        "shard_file.txt",
        "shard_file_2+1_0.hex",
    }
