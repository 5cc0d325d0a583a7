"""Where a shard file lives inside a device directory, and what it is called. Pure: no
I/O, no clock, no randomness.

Implements docs/formats/storage.md §1-§2. A device is one directory (one disk):

    <device>/pgs/<pool id>.<pg>/<digest>.<part number>.<shard index>.shard

- `pgs/<pool id>.<pg>` (decimal, e.g. `pgs/1.37`) holds every shard file of that
  placement group the device keeps, so `ListPG` is one directory listing and moving
  a PG off a device is one directory's worth of files.
- The file name is derived from (bucket, key, version id, part number, shard index):
  `digest` is the first 128 bits, in lower-case hex, of SHA-256 over the three names
  (each length-prefixed, after a domain tag), so the name is short, ASCII, and safe on
  any file system whatever the key holds (`/`, `..`, NUL-free but otherwise any
  UTF-8, up to 1,024 bytes). The real names are in the file's header
  (docs/formats/shard_file.md §3), and the service checks them on every read: a file
  whose header names another shard is reported as corrupt, never served.
- `ShardWriter`'s temporary files (`.<name>.<random>.tmp`) live in the same PG
  directory; `is_temp_name` tells them apart, listings skip them, and start-up
  removes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import struct

from atoll.erasure.shard_format import (
    BUCKET_BYTES_MAX,
    KEY_BYTES_MAX,
    PART_NUMBER_MAX,
    VERSION_ID_BYTES_MAX,
)
from atoll.erasure.stripe import K_MAX, M_MAX
from atoll.storage.errors import InvalidArgument

PGS_DIR = "pgs"
SHARD_SUFFIX = ".shard"
DIGEST_HEX_CHARS = 32
"""128 bits of SHA-256: a collision among even 10^15 shard names of one PG has odds
near 10^-9, and the header check catches one anyway."""

DIGEST_DOMAIN = b"atoll-shard-name-v1\x00"
"""Prefix of the hashed bytes; a new naming scheme gets a new tag (and a new
layout version)."""

POOL_ID_MAX = (1 << 64) - 1
PG_MAX = (1 << 32) - 1
SHARD_INDEX_MAX = K_MAX + M_MAX - 1

_NAME_LENGTH = struct.Struct("<H")
_SHARD_NAME = re.compile(r"([0-9a-f]{32})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]?)\.shard")
_PG_DIR_NAME = re.compile(r"(0|[1-9][0-9]{0,19})\.(0|[1-9][0-9]{0,9})")


@dataclasses.dataclass(frozen=True, slots=True)
class ShardId:
    """One shard of one object part, and the placement group it is stored under."""

    pool_id: int
    pg: int
    bucket: str
    key: str
    version_id: str
    part_number: int
    shard_index: int

    @property
    def identity(self) -> tuple[str, str, str, int, int]:
        """What the shard file's header must say (`ShardHeader.identity`)."""
        return (self.bucket, self.key, self.version_id, self.part_number, self.shard_index)

    def __str__(self) -> str:
        version = f"?versionId={self.version_id}" if self.version_id else ""
        return (
            f"{self.bucket}/{self.key}{version} part {self.part_number} shard "
            f"{self.shard_index} (pg {self.pool_id}.{self.pg})"
        )


def _utf8(what: str, value: str, limit: int) -> bytes:
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidArgument(f"{what} is not valid UTF-8: {err}") from err
    if len(encoded) > limit:
        raise InvalidArgument(f"{what} of {len(encoded)} UTF-8 bytes is over {limit}")
    return encoded


def check_shard_id(shard: ShardId) -> None:
    """`InvalidArgument` unless every field fits the layout and the shard file header."""
    if not 0 <= shard.pool_id <= POOL_ID_MAX:
        raise InvalidArgument(f"pool id {shard.pool_id} outside 0..{POOL_ID_MAX}")
    if not 0 <= shard.pg <= PG_MAX:
        raise InvalidArgument(f"pg {shard.pg} outside 0..{PG_MAX}")
    if not 0 <= shard.part_number <= PART_NUMBER_MAX:
        raise InvalidArgument(f"part number {shard.part_number} outside 0..{PART_NUMBER_MAX}")
    if not 0 <= shard.shard_index <= SHARD_INDEX_MAX:
        raise InvalidArgument(f"shard index {shard.shard_index} outside 0..{SHARD_INDEX_MAX}")
    if not shard.bucket:
        raise InvalidArgument("empty bucket name")
    _utf8("bucket", shard.bucket, BUCKET_BYTES_MAX)
    _utf8("key", shard.key, KEY_BYTES_MAX)
    _utf8("version id", shard.version_id, VERSION_ID_BYTES_MAX)


def name_digest(bucket: str, key: str, version_id: str) -> str:
    """The 32 hex characters that name an object version's shard files."""
    hashed = hashlib.sha256(DIGEST_DOMAIN)
    for what, value, limit in (
        ("bucket", bucket, BUCKET_BYTES_MAX),
        ("key", key, KEY_BYTES_MAX),
        ("version id", version_id, VERSION_ID_BYTES_MAX),
    ):
        encoded = _utf8(what, value, limit)
        hashed.update(_NAME_LENGTH.pack(len(encoded)))
        hashed.update(encoded)
    return hashed.hexdigest()[:DIGEST_HEX_CHARS]


def shard_file_name(shard: ShardId) -> str:
    """`<digest>.<part number>.<shard index>.shard`, at most 32 + 1 + 10 + 1 + 2 + 6 =
    52 ASCII characters."""
    check_shard_id(shard)
    digest = name_digest(shard.bucket, shard.key, shard.version_id)
    return f"{digest}.{shard.part_number}.{shard.shard_index}{SHARD_SUFFIX}"


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedName:
    digest: str
    part_number: int
    shard_index: int


def parse_shard_file_name(name: str) -> ParsedName | None:
    """The parts of a shard file name, or None if `name` is not one (a temporary
    file, or anything else found in a PG directory)."""
    match = _SHARD_NAME.fullmatch(name)
    if match is None:
        return None
    digest, part, index = match.groups()
    part_number, shard_index = int(part), int(index)
    if part_number > PART_NUMBER_MAX or shard_index > SHARD_INDEX_MAX:
        return None
    return ParsedName(digest, part_number, shard_index)


def pg_dir_name(pool_id: int, pg: int) -> str:
    """`<pool id>.<pg>`, both decimal."""
    if not 0 <= pool_id <= POOL_ID_MAX:
        raise InvalidArgument(f"pool id {pool_id} outside 0..{POOL_ID_MAX}")
    if not 0 <= pg <= PG_MAX:
        raise InvalidArgument(f"pg {pg} outside 0..{PG_MAX}")
    return f"{pool_id}.{pg}"


def parse_pg_dir_name(name: str) -> tuple[int, int] | None:
    """(pool id, pg) of a PG directory's name, or None if it is not one."""
    match = _PG_DIR_NAME.fullmatch(name)
    if match is None:
        return None
    pool_id, pg = int(match.group(1)), int(match.group(2))
    if pool_id > POOL_ID_MAX or pg > PG_MAX:
        return None
    return pool_id, pg


def pg_relative_dir(pool_id: int, pg: int) -> str:
    """The PG's directory relative to the device directory: `pgs/<pool id>.<pg>`."""
    return f"{PGS_DIR}/{pg_dir_name(pool_id, pg)}"


def shard_relative_path(shard: ShardId) -> str:
    """The shard file relative to the device directory."""
    return f"{pg_relative_dir(shard.pool_id, shard.pg)}/{shard_file_name(shard)}"


__all__ = [
    "DIGEST_DOMAIN",
    "DIGEST_HEX_CHARS",
    "PGS_DIR",
    "PG_MAX",
    "POOL_ID_MAX",
    "SHARD_INDEX_MAX",
    "SHARD_SUFFIX",
    "ParsedName",
    "ShardId",
    "check_shard_id",
    "name_digest",
    "parse_pg_dir_name",
    "parse_shard_file_name",
    "pg_dir_name",
    "pg_relative_dir",
    "shard_file_name",
    "shard_relative_path",
]
