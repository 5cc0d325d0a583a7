"""Object manifests and the other records the object layer keeps in the KV space.

Pure: no I/O, no clock, no randomness. Owns the records and their v1 binary encoding,
specified in docs/formats/objects.md §3 (envelope and shared fields) and §4 (bodies):

- `Manifest`: one object version: names, size, ETag, last-modified, content headers,
  user metadata, storage class, checksum, and either the data itself (inline, for
  small objects) or its `Layout` (pool, `k+m`, and per part: size, ETag, PG, block
  size, map epoch and the shards that were durable when it was committed).
- `BucketRecord`, `UploadRecord` (a multipart upload in progress), `PartRecord` (one
  uploaded part), `RepairRecord` (shards that missed a write, for the repairer).

Every record travels in one envelope, as KV commands do (docs/formats/kv.md §1):

    magic u8 | version u8 | crc32c u32 LE | body

The CRC-32C covers the body. Records are built from validated fields, so bytes that
fail to decode were damaged or written by a newer version: `RecordError`. The KV keys
the records live under are `atoll.objects.index`.
"""

from __future__ import annotations

import enum
import itertools
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias, TypeVar

from crc32c import crc32c

from atoll.objects.errors import (
    MetadataTooLarge,
    ObjectsError,
    RecordChecksumError,
    RecordError,
    RecordLimitError,
    UnsupportedRecordVersion,
)
from atoll.objects.index import (
    PART_NUMBER_MAX,
    bucket_key,
    check_bucket_name,
    check_key,
    check_upload_id,
    check_version_id,
    object_key,
    repair_key,
    upload_initiated_ms,
    upload_key,
)

RECORD_VERSION = 1
HEADER_BYTES = 6  # magic u8, version u8, crc32c u32 LE

# Magics. Numbers are permanent (shared/STYLE.md §8); retire, never reuse.
MANIFEST_MAGIC = 0xC0
BUCKET_MAGIC = 0xC1
UPLOAD_MAGIC = 0xC2
PART_MAGIC = 0xC3
REPAIR_MAGIC = 0xC4

# Limits (docs/formats/objects.md §7).
RECORD_BYTES_MAX = 1024 * 1024  # the KV value limit (atoll.kv.VALUE_BYTES_MAX)
INLINE_THRESHOLD_DEFAULT_BYTES = 64 * 1024  # the gateway's default (issue 5 §1)
INLINE_BYTES_MAX = 256 * 1024  # the most any configuration may inline
OBJECT_BYTES_MAX = 5 * 1024**4  # 5 TiB, S3's largest object
PART_BYTES_MAX = 5 * 1024**3  # 5 GiB, S3's largest part and single PUT
PARTS_MAX = PART_NUMBER_MAX
USER_METADATA_BYTES_MAX = 2048  # S3: names (without x-amz-meta-) and values, UTF-8
HEADER_VALUE_BYTES_MAX = 8192  # a content header; S3 takes 8 KB of request headers
NAME_BYTES_MAX = 255  # a user metadata name, pool name, owner
STORAGE_CLASS_CHARS_MAX = 64
K_MAX = 32  # as the shard file header (docs/formats/shard_file.md §3)
M_MAX = 16
WIDTH_MAX = 32  # k + m; also the width of the durable-shards bitmap
BLOCK_SIZE_MAX = 64 * 1024 * 1024
PG_MAX = (1 << 16) - 1  # PG counts go up to 2**16 (atoll.placement.pools)
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1

_T = TypeVar("_T")

# Flag bits. A reader refuses a bit it does not know.
FLAG_INLINE = 0x01  # manifest: inline data, not a layout
FLAG_CHECKSUM = 0x02  # manifest, upload, part: a checksum (algorithm) follows
FLAG_PART_CHECKSUMS = 0x04  # manifest: every part carries its checksum
_MANIFEST_FLAGS = FLAG_INLINE | FLAG_CHECKSUM | FLAG_PART_CHECKSUMS
_CHECKSUM_FLAGS = FLAG_CHECKSUM

_HEADER = struct.Struct("<BBI")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MANIFEST_FIXED = struct.Struct("<BQQ16sH")  # flags, size, last_modified_ms, md5, parts
_LAYOUT_FIXED = struct.Struct("<IBBH")  # pool_id, k, m, n_parts
_PART = struct.Struct("<HQ16sIIQI")  # number, size, md5, pg, block_size, epoch, durable
_BUCKET_FIXED = struct.Struct("<Q")  # created_ms
_UPLOAD_FIXED = struct.Struct("<BQI")  # flags, initiated_ms, pool_id
_PART_RECORD_FIXED = struct.Struct("<BQBB")  # flags, last_modified_ms, k, m
_REPAIR_FIXED = struct.Struct("<IIQBBIH")  # pool_id, pg, epoch, k, m, missed, part_number

_ETAG = re.compile(r"([0-9a-f]{32})(?:-([1-9][0-9]{0,4}))?")
_HEADER_FORBIDDEN = re.compile(r"[\r\n\x00]")
_META_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # RFC 9110 token, lowercase
_STORAGE_CLASS = re.compile(r"[A-Z0-9_]+")


class ChecksumAlgorithm(enum.IntEnum):
    """The `x-amz-checksum-*` algorithms. Numbers are permanent."""

    CRC32 = 1
    CRC32C = 2
    CRC64NVME = 3
    SHA1 = 4
    SHA256 = 5

    @property
    def digest_bytes(self) -> int:
        return _DIGEST_BYTES[self]


_DIGEST_BYTES = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}
_ALGORITHM_NUMBERS = frozenset(int(a) for a in ChecksumAlgorithm)


class ChecksumType(enum.IntEnum):
    """`x-amz-checksum-type`: of the whole object, or (multipart) a checksum of the
    parts' checksums, shown with a `-N` suffix. Numbers are permanent."""

    FULL_OBJECT = 0
    COMPOSITE = 1


_TYPE_NUMBERS = frozenset(int(t) for t in ChecksumType)


def write_quorum(k: int, m: int) -> int:
    """Shards that must be durable before a manifest is committed (issue 5 §1):
    `max(k, floor((k+m)/2) + 1)`, which is all of them when `m = 0`."""
    return max(k, (k + m) // 2 + 1)


# ---------------------------------------------------------------------- validation


def _fail(reason: str) -> NoReturn:
    raise RecordError(reason)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        _fail(f"{name} must be an int in [{low}, {high}], not {value!r}")
    return value


def _check_limit(name: str, value: object, high: int) -> int:
    if type(value) is not int or value < 0:
        _fail(f"{name} must be a non-negative int, not {value!r}")
    if value > high:
        raise RecordLimitError(name, value, high)
    return value


def _check_text(name: str, value: object, limit_bytes: int) -> bytes:
    """A header-like string: no CR, LF or NUL; UTF-8 within `limit_bytes`."""
    if type(value) is not str:
        _fail(f"{name} must be a string, not {type(value).__name__}")
    if _HEADER_FORBIDDEN.search(value):
        _fail(f"{name} must not hold CR, LF or NUL")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RecordError(f"{name} is not valid Unicode: {err.reason}") from err
    if len(data) > limit_bytes:
        raise RecordLimitError(f"{name} length in bytes", len(data), limit_bytes)
    return data


def _check_name(name: str, value: object) -> None:
    data = _check_text(name, value, NAME_BYTES_MAX)
    if not data:
        _fail(f"{name} must not be empty")


def _check_storage_class(value: object) -> None:
    if (
        type(value) is not str
        or not 0 < len(value) <= STORAGE_CLASS_CHARS_MAX
        or not _STORAGE_CLASS.fullmatch(value)
    ):
        _fail(f"storage class must be 1 to 64 characters of [A-Z0-9_], not {value!r}")


def _check_etag(value: object, *, multipart: bool) -> None:
    match = _ETAG.fullmatch(value) if type(value) is str else None
    if match is None or (match.group(2) is not None and not multipart):
        suffix = " with an optional -N" if multipart else ""
        _fail(f"ETag must be 32 lowercase hex digits{suffix}, not {value!r}")
    if match.group(2) is not None and int(match.group(2)) > PARTS_MAX:
        _fail(f"ETag part count {match.group(2)} is over {PARTS_MAX}")


def _check_shards(name: str, shards: object, width: int) -> tuple[int, ...]:
    if type(shards) is not tuple or any(type(i) is not int for i in shards):
        _fail(f"{name} must be a tuple of ints")
    if list(shards) != sorted(set(shards)) or (shards and (shards[0] < 0 or shards[-1] >= width)):
        _fail(f"{name} must be distinct shard indexes in [0, {width}), ascending: {shards}")
    return shards


# ------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Checksum:
    """An object's `x-amz-checksum-*`: the raw digest (not base64) and its type."""

    algorithm: ChecksumAlgorithm
    value: bytes
    type: ChecksumType = ChecksumType.FULL_OBJECT

    def __post_init__(self) -> None:
        if not isinstance(self.algorithm, ChecksumAlgorithm):
            _fail(f"checksum algorithm must be a ChecksumAlgorithm, not {self.algorithm!r}")
        if not isinstance(self.type, ChecksumType):
            _fail(f"checksum type must be a ChecksumType, not {self.type!r}")
        if type(self.value) is not bytes or len(self.value) != self.algorithm.digest_bytes:
            _fail(f"a {self.algorithm.name} digest is {self.algorithm.digest_bytes} bytes")


def user_metadata(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """User metadata in the canonical form `ObjectMetadata.user` takes: names
    lowercased (HTTP header names are case-insensitive) and without the `x-amz-meta-`
    prefix, sorted. A name given twice is refused (the gateway joins repeated headers
    with commas first, as S3 does)."""
    out = sorted((name.lower(), value) for name, value in pairs)
    for (a, _), (b, _) in itertools.pairwise(out):
        if a == b:
            _fail(f"user metadata name {a!r} given twice")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ObjectMetadata:
    """What a client sets on an object besides its data: the standard content headers
    (an empty string is an absent header) and the user metadata, `(name, value)`
    pairs in `user_metadata` form."""

    content_type: str = ""
    content_encoding: str = ""
    content_disposition: str = ""
    content_language: str = ""
    cache_control: str = ""
    expires: str = ""
    user: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in _HEADER_FIELDS:
            value = getattr(self, name)
            if value != "" or type(value) is not str:  # most headers are absent
                _check_text(name, value, HEADER_VALUE_BYTES_MAX)
        if type(self.user) is not tuple:
            _fail("user metadata must be a tuple of (name, value) pairs")
        total = 0
        previous = None
        for pair in self.user:
            if type(pair) is not tuple or len(pair) != 2:
                _fail(f"user metadata entry {pair!r} is not a (name, value) pair")
            name, value = pair
            total += len(_check_text("user metadata name", name, NAME_BYTES_MAX))
            total += len(_check_text("user metadata value", value, HEADER_VALUE_BYTES_MAX))
            if not _META_NAME.fullmatch(name):
                _fail(f"user metadata name {name!r} is not a lowercase HTTP token")
            if previous is not None and name <= previous:
                _fail("user metadata names must be distinct and sorted")
            previous = name
        if total > USER_METADATA_BYTES_MAX:
            raise MetadataTooLarge(total, USER_METADATA_BYTES_MAX)


_HEADER_FIELDS = (
    "content_type",
    "content_encoding",
    "content_disposition",
    "content_language",
    "cache_control",
    "expires",
)
_HEADER_WHATS = tuple(name.replace("_", " ") for name in _HEADER_FIELDS)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a laid-out object: part 0 is an object written by one PUT, 1 ..
    10,000 the parts of a multipart upload. Its shard files are
    `(bucket, key, version id, number, shard index)` in PG `pg`, cut into stripes of
    `block_size` bytes (docs/formats/shard_file.md), written at map epoch `epoch`
    to the shard indexes in `durable` (the others missed the write and have a
    `RepairRecord`). `checksum` is the part's raw digest (the manifest's algorithm),
    or empty."""

    number: int
    size: int
    etag: str
    pg: int
    block_size: int
    epoch: int
    durable: tuple[int, ...]
    checksum: bytes = b""

    def __post_init__(self) -> None:
        _check_int("part number", self.number, 0, PART_NUMBER_MAX)
        _check_limit("part size in bytes", self.size, PART_BYTES_MAX)
        _check_etag(self.etag, multipart=False)
        _check_int("pg", self.pg, 0, PG_MAX)
        _check_int("block size", self.block_size, 1, BLOCK_SIZE_MAX)
        _check_int("epoch", self.epoch, 0, UINT64_MAX)
        _check_shards("durable shards", self.durable, WIDTH_MAX)
        if type(self.checksum) is not bytes or len(self.checksum) not in (
            0,
            *_DIGEST_BYTES.values(),
        ):
            _fail("a part checksum is empty or a digest of a known algorithm")

    def missed(self, width: int) -> tuple[int, ...]:
        """The shard indexes of `0 .. width-1` that missed the write."""
        return tuple(i for i in range(width) if i not in self.durable)


@dataclass(frozen=True, slots=True, init=False)
class Layout:
    """Where a laid-out object's data is: pool `pool_id` with profile `k+m`, and its
    parts in part-number order (one part numbered 0, or multipart parts 1 .. 10,000,
    ascending, gaps allowed). Every part has at least `k` durable shards."""

    pool_id: int
    k: int
    m: int
    parts: tuple[Part, ...]

    def __init__(self, pool_id: int, k: int, m: int, parts: Sequence[Part]) -> None:
        object.__setattr__(self, "pool_id", pool_id)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "m", m)
        object.__setattr__(self, "parts", tuple(parts))
        _check_int("pool id", pool_id, 0, UINT32_MAX)
        _check_int("k", k, 1, K_MAX)
        _check_int("m", m, 0, M_MAX)
        if k + m > WIDTH_MAX:
            _fail(f"k+m = {k + m} is over {WIDTH_MAX}")
        _check_parts(self.parts, k, m)

    @property
    def width(self) -> int:
        return self.k + self.m

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)


def _check_parts(parts: tuple[Part, ...], k: int, m: int) -> None:
    if not 0 < len(parts) <= PARTS_MAX:
        _fail(f"a layout has 1 to {PARTS_MAX} parts, not {len(parts)}")
    if any(not isinstance(part, Part) for part in parts):
        _fail("layout parts must be Part records")
    numbers = [part.number for part in parts]
    if numbers != [0] and (numbers[0] < 1 or any(a >= b for a, b in itertools.pairwise(numbers))):
        _fail("parts are one part 0, or part numbers from 1 up, ascending")
    for part in parts:
        _check_part_shards(part, k, m)


def _check_part_shards(part: Part, k: int, m: int) -> None:
    if part.durable and part.durable[-1] >= k + m:
        _fail(f"part {part.number}: shard {part.durable[-1]} is not below k+m = {k + m}")
    if len(part.durable) < k:
        _fail(f"part {part.number}: {len(part.durable)} durable shards, fewer than k = {k}")


@dataclass(frozen=True, slots=True)
class Manifest:
    """One object version, as committed to the object index (the commit is the moment
    the object exists). Exactly one of `inline` (the data, for objects up to the
    inline threshold) and `layout` is set; `size` is the data's length. `etag` is
    S3's, without quotes: the MD5 in hex, or for a multipart object the MD5 of the
    parts' MD5s with `-N`. `version_id` is the gateway's random id: the shard files of
    an overwrite are told from the old ones by it."""

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    last_modified_ms: int
    storage_class: str
    metadata: ObjectMetadata = field(default_factory=ObjectMetadata)
    checksum: Checksum | None = None
    inline: bytes | None = None
    layout: Layout | None = None

    def __post_init__(self) -> None:
        check_bucket_name(self.bucket)
        check_key(self.key)
        check_version_id(self.version_id)
        _check_limit("object size in bytes", self.size, OBJECT_BYTES_MAX)
        _check_etag(self.etag, multipart=True)
        _check_int("last modified (ms)", self.last_modified_ms, 0, UINT64_MAX)
        _check_storage_class(self.storage_class)
        if not isinstance(self.metadata, ObjectMetadata):
            _fail("metadata must be an ObjectMetadata")
        if self.checksum is not None and not isinstance(self.checksum, Checksum):
            _fail("checksum must be a Checksum or None")
        if (self.inline is None) == (self.layout is None):
            _fail("a manifest has either inline data or a layout")
        if self.inline is not None:
            self._check_inline(self.inline)
        elif isinstance(self.layout, Layout):
            self._check_layout(self.layout)
        else:
            _fail("layout must be a Layout")

    def _check_inline(self, data: object) -> None:
        if type(data) is not bytes:
            _fail("inline data must be bytes")
        _check_limit("inline data in bytes", len(data), INLINE_BYTES_MAX)
        if self.size != len(data):
            _fail(f"size {self.size} but {len(data)} bytes of inline data")

    def _check_layout(self, layout: Layout) -> None:
        if self.size != layout.size:
            _fail(f"size {self.size} but the parts hold {layout.size} bytes")
        with_checksum = [bool(part.checksum) for part in layout.parts]
        if any(with_checksum):
            if self.checksum is None or not all(with_checksum):
                _fail("part checksums need an object checksum, and then every part has one")
            digest = self.checksum.algorithm.digest_bytes
            if any(len(part.checksum) != digest for part in layout.parts):
                _fail(f"part checksums must be {self.checksum.algorithm.name} digests")

    @property
    def index_key(self) -> bytes:
        """The KV key this manifest is committed under."""
        return object_key(self.bucket, self.key)


@dataclass(frozen=True, slots=True)
class BucketRecord:
    """A bucket in the object index: its default pool (by name), owner and creation
    time (ms)."""

    name: str
    pool: str
    owner: str
    created_ms: int

    def __post_init__(self) -> None:
        check_bucket_name(self.name)
        _check_name("pool name", self.pool)
        _check_name("owner", self.owner)
        _check_int("created (ms)", self.created_ms, 0, UINT64_MAX)

    @property
    def index_key(self) -> bytes:
        return bucket_key(self.name)


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """A multipart upload in progress. `version_id` (chosen at CreateMultipartUpload)
    names the parts' shard files; `initiated_ms` is the time written into
    `upload_id`. The metadata, storage class, pool and checksum algorithm are those
    the completed object will have (a checksum type exactly when there is an
    algorithm)."""

    bucket: str
    key: str
    upload_id: str
    version_id: str
    initiated_ms: int
    pool_id: int
    storage_class: str
    metadata: ObjectMetadata = field(default_factory=ObjectMetadata)
    checksum_algorithm: ChecksumAlgorithm | None = None
    checksum_type: ChecksumType | None = None

    def __post_init__(self) -> None:
        check_bucket_name(self.bucket)
        check_key(self.key)
        check_upload_id(self.upload_id)
        check_version_id(self.version_id)
        if self.initiated_ms != upload_initiated_ms(self.upload_id):
            _fail(f"initiated_ms {self.initiated_ms!r} is not the time in the upload id")
        _check_int("pool id", self.pool_id, 0, UINT32_MAX)
        _check_storage_class(self.storage_class)
        if not isinstance(self.metadata, ObjectMetadata):
            _fail("metadata must be an ObjectMetadata")
        if self.checksum_algorithm is None:
            if self.checksum_type is not None:
                _fail("a checksum type needs a checksum algorithm")
        elif not isinstance(self.checksum_algorithm, ChecksumAlgorithm):
            _fail("checksum algorithm must be a ChecksumAlgorithm or None")
        elif not isinstance(self.checksum_type, ChecksumType):
            _fail("a checksum algorithm needs its ChecksumType")

    @property
    def index_key(self) -> bytes:
        return upload_key(self.bucket, self.key, self.upload_id)


@dataclass(frozen=True, slots=True)
class PartRecord:
    """One uploaded part of a multipart upload (its KV key, `index.part_key`, names
    the upload): the `Part` the completed manifest will list, the pool profile it was
    written with, when, and the checksum algorithm of `part.checksum`."""

    part: Part
    k: int
    m: int
    last_modified_ms: int
    checksum_algorithm: ChecksumAlgorithm | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.part, Part):
            _fail("part must be a Part")
        if self.part.number == 0:
            _fail("a multipart part is numbered 1 to 10,000")
        _check_int("k", self.k, 1, K_MAX)
        _check_int("m", self.m, 0, M_MAX)
        if self.k + self.m > WIDTH_MAX:
            _fail(f"k+m = {self.k + self.m} is over {WIDTH_MAX}")
        _check_part_shards(self.part, self.k, self.m)
        _check_int("last modified (ms)", self.last_modified_ms, 0, UINT64_MAX)
        algorithm = self.checksum_algorithm
        if algorithm is None:
            if self.part.checksum:
                _fail("a part checksum needs its algorithm")
        elif not isinstance(algorithm, ChecksumAlgorithm):
            _fail("checksum algorithm must be a ChecksumAlgorithm or None")
        elif len(self.part.checksum) != algorithm.digest_bytes:
            _fail(f"the part checksum must be a {algorithm.name} digest")


@dataclass(frozen=True, slots=True)
class RepairRecord:
    """Shards of one part of an object version that missed its write: the repairer
    rebuilds shard indexes `missed` of `(bucket, key, version_id, part_number)` in PG
    `pg` of pool `pool_id` (profile `k+m`, written at map epoch `epoch`), if a
    manifest or upload still references the version, and then deletes the record."""

    pool_id: int
    pg: int
    bucket: str
    key: str
    version_id: str
    part_number: int
    epoch: int
    k: int
    m: int
    missed: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_int("pool id", self.pool_id, 0, UINT32_MAX)
        _check_int("pg", self.pg, 0, PG_MAX)
        check_bucket_name(self.bucket)
        check_key(self.key)
        check_version_id(self.version_id)
        _check_int("part number", self.part_number, 0, PART_NUMBER_MAX)
        _check_int("epoch", self.epoch, 0, UINT64_MAX)
        _check_int("k", self.k, 1, K_MAX)
        _check_int("m", self.m, 0, M_MAX)
        if self.k + self.m > WIDTH_MAX:
            _fail(f"k+m = {self.k + self.m} is over {WIDTH_MAX}")
        _check_shards("missed shards", self.missed, self.k + self.m)
        if not self.missed:
            _fail("a repair record names at least one missed shard")

    @property
    def index_key(self) -> bytes:
        return repair_key(
            self.pool_id, self.pg, self.bucket, self.key, self.version_id, self.part_number
        )


Record: TypeAlias = Manifest | BucketRecord | UploadRecord | PartRecord | RepairRecord


# ------------------------------------------------------------------------ encoding


def _mask(shards: tuple[int, ...]) -> int:
    mask = 0
    for i in shards:
        mask |= 1 << i
    return mask


# Shard indexes of each byte of a bitmap, by byte position: _BITS[pos][byte].
_BITS = tuple(
    tuple(tuple(8 * pos + i for i in range(8) if byte >> i & 1) for byte in range(256))
    for pos in range(4)
)


def _shards(mask: int) -> tuple[int, ...]:
    return (
        _BITS[0][mask & 0xFF]
        + _BITS[1][mask >> 8 & 0xFF]
        + _BITS[2][mask >> 16 & 0xFF]
        + _BITS[3][mask >> 24]
    )


def _str8(value: str) -> bytes:
    data = value.encode("utf-8")
    return _U8.pack(len(data)) + data


def _str16(value: str) -> bytes:
    data = value.encode("utf-8")
    return _U16.pack(len(data)) + data


def _encode_metadata(metadata: ObjectMetadata, out: list[bytes]) -> None:
    out += [_str16(getattr(metadata, name)) for name in _HEADER_FIELDS]
    out.append(_U16.pack(len(metadata.user)))
    for name, value in metadata.user:
        out += (_str8(name), _str16(value))


def _encode_part(part: Part, out: list[bytes]) -> None:
    out.append(
        _PART.pack(
            part.number,
            part.size,
            bytes.fromhex(part.etag),
            part.pg,
            part.block_size,
            part.epoch,
            _mask(part.durable),
        )
    )
    out.append(part.checksum)


def _encode_manifest(m: Manifest, out: list[bytes]) -> None:
    md5_hex, _, suffix = m.etag.partition("-")  # checked when built
    md5 = bytes.fromhex(md5_hex)
    flags = (FLAG_INLINE if m.inline is not None else 0) | (
        FLAG_CHECKSUM if m.checksum is not None else 0
    )
    if m.layout is not None and m.layout.parts[0].checksum:
        flags |= FLAG_PART_CHECKSUMS
    out.append(_MANIFEST_FIXED.pack(flags, m.size, m.last_modified_ms, md5, int(suffix or 0)))
    out += (_str8(m.bucket), _str16(m.key), _str8(m.version_id), _str8(m.storage_class))
    _encode_metadata(m.metadata, out)
    if m.checksum is not None:
        out += (bytes([m.checksum.algorithm, m.checksum.type]), m.checksum.value)
    if m.inline is not None:
        out += (_U32.pack(len(m.inline)), m.inline)
    elif m.layout is not None:
        layout = m.layout
        out.append(_LAYOUT_FIXED.pack(layout.pool_id, layout.k, layout.m, len(layout.parts)))
        for part in layout.parts:
            _encode_part(part, out)


def _encode_upload(u: UploadRecord, out: list[bytes]) -> None:
    flags = FLAG_CHECKSUM if u.checksum_algorithm is not None else 0
    out.append(_UPLOAD_FIXED.pack(flags, u.initiated_ms, u.pool_id))
    out += (_str8(u.bucket), _str16(u.key), _str8(u.upload_id), _str8(u.version_id))
    out.append(_str8(u.storage_class))
    _encode_metadata(u.metadata, out)
    if u.checksum_algorithm is not None and u.checksum_type is not None:  # both or neither
        out.append(bytes([u.checksum_algorithm, u.checksum_type]))


def _encode_part_record(p: PartRecord, out: list[bytes]) -> None:
    flags = FLAG_CHECKSUM if p.checksum_algorithm is not None else 0
    out.append(_PART_RECORD_FIXED.pack(flags, p.last_modified_ms, p.k, p.m))
    if p.checksum_algorithm is not None:
        out.append(bytes([p.checksum_algorithm]))
    _encode_part(p.part, out)


def _encode_repair(r: RepairRecord, out: list[bytes]) -> None:
    out.append(
        _REPAIR_FIXED.pack(r.pool_id, r.pg, r.epoch, r.k, r.m, _mask(r.missed), r.part_number)
    )
    out += (_str8(r.bucket), _str16(r.key), _str8(r.version_id))


def encode_record(record: Record) -> bytes:
    """The v1 bytes of `record` (docs/formats/objects.md §3-§4), the value stored at its
    KV key. Raises `RecordLimitError` past RECORD_BYTES_MAX."""
    out: list[bytes] = []
    if isinstance(record, Manifest):
        magic = MANIFEST_MAGIC
        _encode_manifest(record, out)
    elif isinstance(record, BucketRecord):
        magic = BUCKET_MAGIC
        out += (_BUCKET_FIXED.pack(record.created_ms), _str8(record.name))
        out += (_str8(record.pool), _str8(record.owner))
    elif isinstance(record, UploadRecord):
        magic = UPLOAD_MAGIC
        _encode_upload(record, out)
    elif isinstance(record, PartRecord):
        magic = PART_MAGIC
        _encode_part_record(record, out)
    elif isinstance(record, RepairRecord):
        magic = REPAIR_MAGIC
        _encode_repair(record, out)
    else:
        raise RecordError(f"not an object record: {type(record).__name__}")
    body = b"".join(out)
    size = HEADER_BYTES + len(body)
    if size > RECORD_BYTES_MAX:
        raise RecordLimitError("encoded record size in bytes", size, RECORD_BYTES_MAX)
    return _HEADER.pack(magic, RECORD_VERSION, crc32c(body)) + body


# ------------------------------------------------------------------------ decoding


class _Reader:
    """Bounds-checked little-endian reads from a record's bytes."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def fail(self, reason: str, at: int | None = None) -> NoReturn:
        raise RecordError(reason, offset=self.pos if at is None else at)

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            self.fail(f"truncated {what}: needs {size} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        return st.unpack(self.take(st.size, what))

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def text(self, width: struct.Struct, what: str) -> str:
        # The hot path of every decode: one bounds check, no helper calls.
        data, at = self.data, self.pos
        start = at + width.size
        if start > len(data):
            self.fail(f"truncated {what} length")
        end = start + width.unpack_from(data, at)[0]
        if end > len(data):
            self.fail(f"truncated {what}: needs {end - start} bytes, {len(data) - start} left")
        self.pos = end
        try:
            return data[start:end].decode("utf-8")
        except UnicodeDecodeError as err:
            raise RecordError(f"{what} is not UTF-8", offset=at) from err

    def str8(self, what: str) -> str:
        return self.text(_U8, what)

    def str16(self, what: str) -> str:
        return self.text(_U16, what)

    def flags(self, value: int, known: int) -> int:
        if value & ~known:
            self.fail(f"unknown flags {value:#04x}", HEADER_BYTES)
        return value

    def algorithm(self) -> ChecksumAlgorithm:
        number = self.u8("checksum algorithm")
        if number not in _ALGORITHM_NUMBERS:
            self.fail(f"unknown checksum algorithm {number}", self.pos - 1)
        return ChecksumAlgorithm(number)

    def checksum_type(self) -> ChecksumType:
        number = self.u8("checksum type")
        if number not in _TYPE_NUMBERS:
            self.fail(f"unknown checksum type {number}", self.pos - 1)
        return ChecksumType(number)

    def finish(self) -> None:
        if self.pos != len(self.data):
            self.fail(f"{len(self.data) - self.pos} trailing bytes after the record")


def _open(data: bytes | bytearray | memoryview, magic: int) -> _Reader:
    data = bytes(data)
    if len(data) > RECORD_BYTES_MAX:
        raise RecordLimitError("encoded record size in bytes", len(data), RECORD_BYTES_MAX)
    if len(data) < HEADER_BYTES:
        raise RecordError(f"{len(data)} bytes, shorter than a record header", offset=0)
    found, version, expected_crc = _HEADER.unpack_from(data)
    if found != magic:
        raise RecordError(f"magic {found:#04x}, expected {magic:#04x}", offset=0)
    if version != RECORD_VERSION:
        raise UnsupportedRecordVersion(version)
    actual_crc = crc32c(memoryview(data)[HEADER_BYTES:])
    if actual_crc != expected_crc:
        raise RecordChecksumError(expected=expected_crc, actual=actual_crc)
    return _Reader(data, HEADER_BYTES)


def _build(at: int, cls: Callable[..., _T], *args: Any) -> _T:
    """`cls(*args)`, a field that fails validation reported as a `RecordError` at
    offset `at` (a limit keeps its type)."""
    try:
        return cls(*args)
    except RecordLimitError as err:
        raise RecordLimitError(err.what, err.actual, err.limit, offset=at) from err
    except ObjectsError as err:
        reason = err.reason if isinstance(err, RecordError) else str(err)
        raise RecordError(reason, offset=at) from err


def _decode_metadata(reader: _Reader) -> ObjectMetadata:
    at = reader.pos
    headers = [reader.str16(what) for what in _HEADER_WHATS]
    (count,) = reader.unpack(_U16, "user metadata count")
    if count > USER_METADATA_BYTES_MAX:  # each pair takes at least one byte of the limit
        raise RecordLimitError(
            "user metadata count", count, USER_METADATA_BYTES_MAX, offset=reader.pos - 2
        )
    user = tuple(
        (reader.str8("user metadata name"), reader.str16("user metadata value"))
        for _ in range(count)
    )
    return _build(at, ObjectMetadata, *headers, user)


def _decode_parts(reader: _Reader, count: int, digest_bytes: int) -> list[Part]:
    stride = _PART.size + digest_bytes
    at = reader.pos
    region = reader.take(stride * count, f"{count} parts")
    parts = []
    for offset in range(0, stride * count, stride):
        number, size, md5, pg, block_size, epoch, mask = _PART.unpack_from(region, offset)
        checksum = region[offset + _PART.size : offset + stride]
        fields = (number, size, md5.hex(), pg, block_size, epoch, _shards(mask), checksum)
        parts.append(_build(at + offset, Part, *fields))
    return parts


def _decode_checksum(reader: _Reader) -> Checksum:
    at = reader.pos
    algorithm, kind = reader.algorithm(), reader.checksum_type()
    return _build(at, Checksum, algorithm, reader.take(algorithm.digest_bytes, "checksum"), kind)


def decode_manifest(data: bytes | bytearray | memoryview) -> Manifest:
    """The manifest encoded in `data`; `RecordError` (a `ValueError`) for anything
    that is not exactly one valid v1 manifest (docs/formats/objects.md §4.1)."""
    reader = _open(data, MANIFEST_MAGIC)
    flags, size, modified, md5, suffix = reader.unpack(_MANIFEST_FIXED, "manifest header")
    reader.flags(flags, _MANIFEST_FLAGS)
    if flags & FLAG_PART_CHECKSUMS and (flags & FLAG_INLINE or not flags & FLAG_CHECKSUM):
        reader.fail("part checksums need a layout and an object checksum", HEADER_BYTES)
    etag = md5.hex() + (f"-{suffix}" if suffix else "")
    names = [reader.str8("bucket"), reader.str16("key"), reader.str8("version id")]
    storage_class = reader.str8("storage class")
    metadata = _decode_metadata(reader)
    checksum = _decode_checksum(reader) if flags & FLAG_CHECKSUM else None
    inline: bytes | None = None
    layout: Layout | None = None
    at = reader.pos
    if flags & FLAG_INLINE:
        (length,) = reader.unpack(_U32, "inline data length")
        if length > INLINE_BYTES_MAX:
            raise RecordLimitError("inline data in bytes", length, INLINE_BYTES_MAX, offset=at)
        inline = reader.take(length, "inline data")
    else:
        pool_id, k, m, count = reader.unpack(_LAYOUT_FIXED, "layout")
        if count > PARTS_MAX:
            raise RecordLimitError("part count", count, PARTS_MAX, offset=at)
        digest = checksum.algorithm.digest_bytes if checksum and flags & FLAG_PART_CHECKSUMS else 0
        layout = _build(at, Layout, pool_id, k, m, _decode_parts(reader, count, digest))
    reader.finish()
    fields = (*names, size, etag, modified, storage_class, metadata, checksum, inline, layout)
    return _build(HEADER_BYTES, Manifest, *fields)


@dataclass(frozen=True, slots=True)
class ManifestSummary:
    """What a listing shows of an object (ListObjects' Contents), read without
    decoding the whole manifest."""

    key: str
    version_id: str
    size: int
    etag: str
    last_modified_ms: int
    storage_class: str


def decode_manifest_summary(data: bytes | bytearray | memoryview) -> ManifestSummary:
    """The listing fields of the manifest in `data`, for a page of up to 1,000 keys:
    the envelope (magic, version, CRC) and the flags are checked as `decode_manifest`
    checks them and the strings read must be UTF-8; the rest of the body is neither
    parsed nor validated."""
    reader = _open(data, MANIFEST_MAGIC)
    flags, size, modified, md5, suffix = reader.unpack(_MANIFEST_FIXED, "manifest header")
    reader.flags(flags, _MANIFEST_FLAGS)
    reader.str8("bucket")
    fields = (reader.str16("key"), reader.str8("version id"))
    etag = md5.hex() + (f"-{suffix}" if suffix else "")
    storage_class = reader.str8("storage class")
    return _build(HEADER_BYTES, ManifestSummary, *fields, size, etag, modified, storage_class)


def decode_bucket_record(data: bytes | bytearray | memoryview) -> BucketRecord:
    """The bucket record in `data` (docs/formats/objects.md §4.2)."""
    reader = _open(data, BUCKET_MAGIC)
    (created_ms,) = reader.unpack(_BUCKET_FIXED, "bucket record")
    fields = (reader.str8("bucket"), reader.str8("pool name"), reader.str8("owner"))
    reader.finish()
    return _build(HEADER_BYTES, BucketRecord, *fields, created_ms)


def decode_upload_record(data: bytes | bytearray | memoryview) -> UploadRecord:
    """The upload record in `data` (docs/formats/objects.md §4.3)."""
    reader = _open(data, UPLOAD_MAGIC)
    flags, initiated_ms, pool_id = reader.unpack(_UPLOAD_FIXED, "upload record")
    reader.flags(flags, _CHECKSUM_FLAGS)
    names = [reader.str8("bucket"), reader.str16("key"), reader.str8("upload id")]
    version_id = reader.str8("version id")
    storage_class = reader.str8("storage class")
    metadata = _decode_metadata(reader)
    algorithm: ChecksumAlgorithm | None = None
    kind: ChecksumType | None = None
    if flags & FLAG_CHECKSUM:
        algorithm, kind = reader.algorithm(), reader.checksum_type()
    reader.finish()
    fields = (version_id, initiated_ms, pool_id, storage_class, metadata, algorithm, kind)
    return _build(HEADER_BYTES, UploadRecord, *names, *fields)


def decode_part_record(data: bytes | bytearray | memoryview) -> PartRecord:
    """The part record in `data` (docs/formats/objects.md §4.4)."""
    reader = _open(data, PART_MAGIC)
    flags, modified, k, m = reader.unpack(_PART_RECORD_FIXED, "part record")
    reader.flags(flags, _CHECKSUM_FLAGS)
    algorithm = reader.algorithm() if flags & FLAG_CHECKSUM else None
    (part,) = _decode_parts(reader, 1, algorithm.digest_bytes if algorithm else 0)
    reader.finish()
    return _build(HEADER_BYTES, PartRecord, part, k, m, modified, algorithm)


def decode_repair_record(data: bytes | bytearray | memoryview) -> RepairRecord:
    """The repair record in `data` (docs/formats/objects.md §4.5)."""
    reader = _open(data, REPAIR_MAGIC)
    pool_id, pg, epoch, k, m, mask, part_number = reader.unpack(_REPAIR_FIXED, "repair record")
    names = (reader.str8("bucket"), reader.str16("key"), reader.str8("version id"))
    reader.finish()
    fields = (pool_id, pg, *names, part_number, epoch, k, m, _shards(mask))
    return _build(HEADER_BYTES, RepairRecord, *fields)


_DECODERS: dict[int, Callable[[bytes], Record]] = {
    MANIFEST_MAGIC: decode_manifest,
    BUCKET_MAGIC: decode_bucket_record,
    UPLOAD_MAGIC: decode_upload_record,
    PART_MAGIC: decode_part_record,
    REPAIR_MAGIC: decode_repair_record,
}


def decode_record(data: bytes | bytearray | memoryview) -> Record:
    """Whichever record `data` holds, by its magic."""
    data = bytes(data)
    decoder = _DECODERS.get(data[0]) if data else None
    if decoder is None:
        raise RecordError(f"unknown record magic {data[:1].hex() or 'none'}", offset=0)
    return decoder(data)


__all__ = [
    "BUCKET_MAGIC",
    "HEADER_VALUE_BYTES_MAX",
    "INLINE_BYTES_MAX",
    "INLINE_THRESHOLD_DEFAULT_BYTES",
    "MANIFEST_MAGIC",
    "OBJECT_BYTES_MAX",
    "PARTS_MAX",
    "PART_BYTES_MAX",
    "PART_MAGIC",
    "RECORD_BYTES_MAX",
    "RECORD_VERSION",
    "REPAIR_MAGIC",
    "UPLOAD_MAGIC",
    "USER_METADATA_BYTES_MAX",
    "BucketRecord",
    "Checksum",
    "ChecksumAlgorithm",
    "ChecksumType",
    "Layout",
    "Manifest",
    "ManifestSummary",
    "ObjectMetadata",
    "Part",
    "PartRecord",
    "Record",
    "RepairRecord",
    "UploadRecord",
    "decode_bucket_record",
    "decode_manifest",
    "decode_manifest_summary",
    "decode_part_record",
    "decode_record",
    "decode_repair_record",
    "decode_upload_record",
    "encode_record",
    "user_metadata",
    "write_quorum",
]
