"""The pure layout of a device directory (docs/formats/storage.md §1-§2): shard file
names derived from (bucket, key, version id, part number, shard index), PG directory
names, and the checks on shard ids. No I/O, no mocks."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import struct

import pytest

from atoll.erasure.shard_file import is_temp_name
from atoll.storage.errors import InvalidArgument
from atoll.storage.layout import (
    SHARD_INDEX_MAX,
    ParsedName,
    ShardId,
    check_shard_id,
    name_digest,
    parse_pg_dir_name,
    parse_shard_file_name,
    pg_dir_name,
    pg_relative_dir,
    shard_file_name,
    shard_relative_path,
)

SHARD = ShardId(3, 17, "photos", "2024/cat.jpg", "v1", 7, 5)
# Characters a name must never carry onto a file system: separators, dots that could
# form `..`, anything beyond printable ASCII.
SAFE_NAME = re.compile(r"[0-9a-f]{32}\.[0-9]+\.[0-9]+\.shard")


def reference_digest(bucket: str, key: str, version_id: str) -> str:
    """The digest as docs/formats/storage.md §2 specifies it, written out again."""
    data = b"atoll-shard-name-v1\x00"
    for name in (bucket, key, version_id):
        encoded = name.encode("utf-8")
        data += struct.pack("<H", len(encoded)) + encoded
    return hashlib.sha256(data).hexdigest()[:32]


def test_file_name_is_digest_part_and_shard_as_documented() -> None:
    expected = f"{reference_digest('photos', '2024/cat.jpg', 'v1')}.7.5.shard"
    assert shard_file_name(SHARD) == expected
    assert shard_relative_path(SHARD) == f"pgs/3.17/{expected}"


@pytest.mark.parametrize(
    ("bucket", "key", "version_id"),
    [
        ("b", "../../etc/passwd", ""),
        ("b", "a/b/c/", "null"),
        ("b", 'clé 🐟 \\ : * ? " < > |', "v"),
        ("b", "x" * 1024, "v" * 255),
        ("b" * 255, "", ""),
    ],
)
def test_file_names_are_safe_on_any_file_system(bucket: str, key: str, version_id: str) -> None:
    shard = ShardId(1, 0, bucket, key, version_id, 10_000, SHARD_INDEX_MAX)
    name = shard_file_name(shard)
    assert SAFE_NAME.fullmatch(name), name
    assert len(name) <= 52
    assert not is_temp_name(name)
    assert name_digest(bucket, key, version_id) == reference_digest(bucket, key, version_id)


def test_every_field_changes_the_name_or_the_directory() -> None:
    variants = [
        dataclasses.replace(SHARD, bucket="photos2"),
        dataclasses.replace(SHARD, key="2024/cat.jpeg"),
        dataclasses.replace(SHARD, version_id="v2"),
        dataclasses.replace(SHARD, part_number=8),
        dataclasses.replace(SHARD, shard_index=4),
        dataclasses.replace(SHARD, pool_id=4),
        dataclasses.replace(SHARD, pg=18),
    ]
    paths = {shard_relative_path(s) for s in [SHARD, *variants]}
    assert len(paths) == len(variants) + 1


def test_names_are_length_prefixed_so_moving_a_boundary_changes_the_digest() -> None:
    # Concatenation alone would make these two equal.
    assert name_digest("ab", "c", "") != name_digest("a", "bc", "")
    assert name_digest("a", "", "b") != name_digest("a", "b", "")


def test_parse_round_trips_and_refuses_everything_else() -> None:
    name = shard_file_name(SHARD)
    assert parse_shard_file_name(name) == ParsedName(name[:32], 7, 5)
    digest = "0123456789abcdef" * 2
    for other in [
        f".{name}.abc123.tmp",  # a ShardWriter's temporary file
        f"{digest}.7.5.shard.tmp",
        f"{digest.upper()}.7.5.shard",
        f"{digest}.07.5.shard",  # not canonical decimal
        f"{digest}.7.48.shard",  # shard index over the limit
        f"{digest}.4294967296.5.shard",  # part number over u32
        f"{digest[:31]}.7.5.shard",
        "README",
    ]:
        assert parse_shard_file_name(other) is None, other


def test_pg_directory_names() -> None:
    assert pg_dir_name(3, 17) == "3.17"
    assert pg_relative_dir(3, 17) == "pgs/3.17"
    assert parse_pg_dir_name("3.17") == (3, 17)
    assert parse_pg_dir_name(pg_dir_name(2**64 - 1, 2**32 - 1)) == (2**64 - 1, 2**32 - 1)
    for other in ["3", "3.17.1", "03.17", "3.-1", "a.b", "3.4294967296", ""]:
        assert parse_pg_dir_name(other) is None, other
    with pytest.raises(InvalidArgument):
        pg_dir_name(1, 2**32)


@pytest.mark.parametrize(
    "shard",
    [
        dataclasses.replace(SHARD, bucket=""),
        dataclasses.replace(SHARD, bucket="b" * 256),
        dataclasses.replace(SHARD, key="k" * 1025),
        dataclasses.replace(SHARD, key="\udc80"),  # a lone surrogate: not UTF-8
        dataclasses.replace(SHARD, version_id="v" * 256),
        dataclasses.replace(SHARD, part_number=2**32),
        dataclasses.replace(SHARD, part_number=-1),
        dataclasses.replace(SHARD, shard_index=SHARD_INDEX_MAX + 1),
        dataclasses.replace(SHARD, pool_id=-1),
        dataclasses.replace(SHARD, pg=2**32),
    ],
)
def test_out_of_range_shard_ids_are_refused(shard: ShardId) -> None:
    with pytest.raises(InvalidArgument):
        check_shard_id(shard)
    with pytest.raises(InvalidArgument):
        shard_file_name(shard)
