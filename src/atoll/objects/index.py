"""The object index in the KV space: its key layout, the names in it, and S3 listing.

Pure: no I/O, no clock, no randomness (ids are built from entropy the caller passes).
Implements docs/formats/objects.md §1 (names) and §2 (keys), §5 (listing). Every key
of the object layer starts with `ROOT` (`ff 6f 01`: the system byte, `o` for objects,
layout version 1), then a kind byte:

    ROOT 01 | bucket 00 | key                                       object manifest
    ROOT 02 | bucket                                                bucket record
    ROOT 03 | bucket 00 | esc(key) 00 00 | upload id                upload record
    ROOT 04 | bucket 00 | esc(key) 00 00 | upload id | part u32 BE  part record
    ROOT 05 | pool u32 BE | pg u32 BE | bucket 00 | esc(key) 00 00 | version id 00
            | part u32 BE                                           repair record

Bucket names never hold a 00 byte, so `bucket 00` sorts buckets by name and keeps a
bucket's keys together. An object key is the last field of its index key and is
stored raw: a range scan over a bucket yields keys in S3's order (UTF-8 bytes), and a
prefix listing is the scan of `[ROOT 01 bucket 00 prefix, successor)`. Where something
follows the key, it is escaped (`00` -> `00 ff`) and ended by `00 00`, which keeps
key order (the terminator sorts below every escaped byte) and lets a key hold `00`.

Listing (`ObjectListing`, `UploadListing`) is a small state machine the gateway feeds
from KV scans: it says which range to read next, skips the keys of a common prefix it
has already returned by moving the scan past them, and stops at max-keys with
IsTruncated and the marker to continue from.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from crc32c import crc32c

from atoll.base.errors import invariant
from atoll.objects.errors import (
    IndexKeyError,
    InvalidBucketName,
    InvalidContinuationToken,
    InvalidListArgument,
    InvalidObjectKey,
    InvalidPartNumber,
    InvalidUploadId,
    KeyTooLong,
    RecordError,
)

# Limits (S3's where S3 has one).
KEY_BYTES_MAX = 1024
BUCKET_NAME_MIN = 3
BUCKET_NAME_MAX = 63
VERSION_ID_BYTES_MAX = 255  # the shard file header's limit (docs/formats/shard_file.md §3)
PART_NUMBER_MAX = 10_000
LIST_KEYS_MAX = 1000  # max-keys, max-uploads, max-parts: S3 returns at most 1,000
DELIMITER_BYTES_MAX = KEY_BYTES_MAX
UPLOAD_ID_CHARS = 32
CONTINUATION_TOKEN_CHARS_MAX = 2048

# Key layout. Numbers are permanent (shared/STYLE.md §8); retire, never reuse.
ROOT = b"\xff\x6f\x01"
KIND_OBJECT = 0x01
KIND_BUCKET = 0x02
KIND_UPLOAD = 0x03
KIND_PART = 0x04
KIND_REPAIR = 0x05

_SEP = b"\x00"
_TERM = b"\x00\x00"
_U32BE = struct.Struct(">I")
_U64BE = struct.Struct(">Q")

_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_IP_FORM = re.compile(r"\d+\.\d+\.\d+\.\d+")
# Reserved by AWS for access points, directory and table buckets, demos (S3 User
# Guide, "General purpose bucket naming rules"); refused so names stay portable.
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_VERSION_ID_CHARS = re.compile(r"[0-9A-Za-z._-]+")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]*")
_TOKEN_VERSION = 1


# --------------------------------------------------------------------------- names


def check_bucket_name(bucket: object) -> str:
    """`bucket` if it follows S3's rules for general purpose buckets: 3-63 characters
    of lowercase letters, digits, dots and hyphens, starting and ending with a letter
    or digit, no two adjacent dots, not an IP address, none of AWS's reserved
    prefixes and suffixes. Raises `InvalidBucketName` naming the rule."""
    if type(bucket) is not str:
        raise InvalidBucketName(repr(bucket), "must be a string")
    reason = None
    if not BUCKET_NAME_MIN <= len(bucket) <= BUCKET_NAME_MAX:
        reason = f"must be {BUCKET_NAME_MIN} to {BUCKET_NAME_MAX} characters long"
    elif not _BUCKET_CHARS.fullmatch(bucket):
        reason = "may hold only lowercase letters, digits, dots and hyphens"
    elif not (bucket[0].isalnum() and bucket[-1].isalnum()):
        reason = "must begin and end with a letter or digit"
    elif ".." in bucket:
        reason = "must not hold two adjacent dots"
    elif _IP_FORM.fullmatch(bucket):
        reason = "must not be formatted as an IP address"
    elif bucket.startswith(_RESERVED_PREFIXES):
        reason = f"must not start with any of {', '.join(_RESERVED_PREFIXES)}"
    elif bucket.endswith(_RESERVED_SUFFIXES):
        reason = f"must not end with any of {', '.join(_RESERVED_SUFFIXES)}"
    if reason is not None:
        raise InvalidBucketName(bucket, reason)
    return bucket


def check_key(key: object) -> bytes:
    """The UTF-8 bytes of the object key `key`. Raises `InvalidObjectKey` for a
    non-string, an empty key or one with a lone surrogate, `KeyTooLong` past 1,024
    bytes. Any other character, `\\x00` included, is allowed, as in S3."""
    if type(key) is not str:
        raise InvalidObjectKey(f"object key must be a string, not {type(key).__name__}")
    if not key:
        raise InvalidObjectKey("object key must not be empty")
    try:
        data = key.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidObjectKey(f"object key is not valid Unicode: {err.reason}") from err
    if len(data) > KEY_BYTES_MAX:
        raise KeyTooLong(len(data), KEY_BYTES_MAX)
    return data


def check_version_id(version_id: object) -> str:
    """`version_id` if it is 1-255 characters of `[0-9A-Za-z._-]` (it names shard
    files and travels in XML and URLs unescaped)."""
    if (
        type(version_id) is not str
        or not 0 < len(version_id) <= VERSION_ID_BYTES_MAX
        or not _VERSION_ID_CHARS.fullmatch(version_id)
    ):
        raise RecordError(
            f"version id must be 1 to {VERSION_ID_BYTES_MAX} characters of "
            f"[0-9A-Za-z._-], not {version_id!r}"
        )
    return version_id


def check_upload_id(upload_id: object) -> str:
    """`upload_id` if it has the form `make_upload_id` writes; `InvalidUploadId` (the
    gateway's NoSuchUpload) otherwise."""
    if type(upload_id) is not str or not _UPLOAD_ID.fullmatch(upload_id):
        raise InvalidUploadId(str(upload_id))
    return upload_id


def check_part_number(part_number: object) -> int:
    """`part_number` if it is an int in 1 .. 10,000; `InvalidPartNumber` otherwise."""
    if type(part_number) is not int or not 1 <= part_number <= PART_NUMBER_MAX:
        raise InvalidPartNumber(part_number)
    return part_number


def make_version_id(entropy: bytes) -> str:
    """A version id from 16 random bytes the caller draws (32 hex digits)."""
    if len(entropy) != 16:
        raise RecordError(f"a version id takes 16 bytes of entropy, not {len(entropy)}")
    return entropy.hex()


def make_upload_id(initiated_ms: int, entropy: bytes) -> str:
    """An upload id: the initiation time (ms, 16 hex digits) then 8 random bytes (16 hex
    digits). Upload ids of one key therefore sort by initiation time, the order
    ListMultipartUploads wants, and the gateway finds an upload's record from the
    (bucket, key, upload id) of a request alone."""
    if type(initiated_ms) is not int or not 0 <= initiated_ms < 2**64:
        raise RecordError(f"initiated_ms must be an int in [0, 2**64), not {initiated_ms!r}")
    if len(entropy) != 8:
        raise RecordError(f"an upload id takes 8 bytes of entropy, not {len(entropy)}")
    return f"{initiated_ms:016x}{entropy.hex()}"


def upload_initiated_ms(upload_id: str) -> int:
    """The initiation time written into `upload_id` by `make_upload_id`."""
    return int(check_upload_id(upload_id)[:16], 16)


# ---------------------------------------------------------------------------- keys


class KeyRange(NamedTuple):
    """Index keys `[start, end)`, for a KV scan."""

    start: bytes
    end: bytes


def prefix_end(prefix: bytes) -> bytes:
    """The least key greater than every key starting with `prefix`. Every prefix here
    starts with ROOT, so one exists."""
    stripped = prefix.rstrip(b"\xff")
    invariant(bool(stripped), f"prefix {prefix.hex()} has no successor")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _escape(data: bytes) -> bytes:
    return data.replace(b"\x00", b"\x00\xff")


def _bucket_space(kind: int, bucket: str) -> bytes:
    return ROOT + bytes([kind]) + check_bucket_name(bucket).encode("ascii") + _SEP


def object_key(bucket: str, key: str) -> bytes:
    """The index key of the manifest of `key` in `bucket` (its KV key)."""
    return _bucket_space(KIND_OBJECT, bucket) + check_key(key)


def bucket_key(bucket: str) -> bytes:
    """The KV key of the bucket record of `bucket`."""
    return ROOT + bytes([KIND_BUCKET]) + check_bucket_name(bucket).encode("ascii")


def upload_key(bucket: str, key: str, upload_id: str) -> bytes:
    """The KV key of the upload record of `upload_id` (of `key` in `bucket`)."""
    return (
        _bucket_space(KIND_UPLOAD, bucket)
        + _escape(check_key(key))
        + _TERM
        + check_upload_id(upload_id).encode("ascii")
    )


def part_key(bucket: str, key: str, upload_id: str, part_number: int) -> bytes:
    """The KV key of the part record of part `part_number` of an upload."""
    return (
        _bucket_space(KIND_PART, bucket)
        + _escape(check_key(key))
        + _TERM
        + check_upload_id(upload_id).encode("ascii")
        + _U32BE.pack(check_part_number(part_number))
    )


def _check_u32(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value < 2**32:
        raise RecordError(f"{name} must be an int in [0, 2**32), not {value!r}")
    return value


def _check_part_or_zero(part_number: object) -> int:
    # Part 0 is an object written in one PUT (docs/formats/shard_file.md §3).
    if part_number == 0 and type(part_number) is int:
        return 0
    return check_part_number(part_number)


def repair_key(
    pool_id: int, pg: int, bucket: str, key: str, version_id: str, part_number: int
) -> bytes:
    """The KV key of the repair record of one part of an object version in a PG."""
    return (
        ROOT
        + bytes([KIND_REPAIR])
        + _U32BE.pack(_check_u32("pool id", pool_id))
        + _U32BE.pack(_check_u32("pg", pg))
        + check_bucket_name(bucket).encode("ascii")
        + _SEP
        + _escape(check_key(key))
        + _TERM
        + check_version_id(version_id).encode("ascii")
        + _SEP
        + _U32BE.pack(_check_part_or_zero(part_number))
    )


# -- parsing (keys read back from a scan)


def _kind_rest(index_key: bytes, kind: int) -> bytes:
    if index_key[: len(ROOT) + 1] != ROOT + bytes([kind]):
        raise IndexKeyError(f"not an index key of kind {kind}", index_key)
    return index_key[len(ROOT) + 1 :]


def _split_bucket(rest: bytes, index_key: bytes) -> tuple[str, bytes]:
    cut = rest.find(_SEP)
    if cut < 0:
        raise IndexKeyError("no end of the bucket name", index_key)
    try:
        bucket = check_bucket_name(rest[:cut].decode("ascii"))
    except (UnicodeDecodeError, InvalidBucketName) as err:
        raise IndexKeyError(f"bad bucket name ({err})", index_key) from err
    return bucket, rest[cut + 1 :]


def _decode_key(data: bytes, index_key: bytes) -> str:
    try:
        key = data.decode("utf-8")
        check_key(key)
    except (UnicodeDecodeError, InvalidObjectKey, KeyTooLong) as err:
        raise IndexKeyError(f"bad object key ({err})", index_key) from err
    return key


def _split_escaped_key(rest: bytes, index_key: bytes) -> tuple[str, bytes]:
    cut = rest.find(_TERM)
    escaped = rest[:cut]
    if cut < 0 or escaped.count(b"\x00") != escaped.count(b"\x00\xff"):
        raise IndexKeyError("bad escaped object key", index_key)
    return _decode_key(escaped.replace(b"\x00\xff", b"\x00"), index_key), rest[cut + 2 :]


def _ascii_id(data: bytes, check: Callable[[str], str], index_key: bytes) -> str:
    try:
        return check(data.decode("ascii"))
    except (UnicodeDecodeError, RecordError, InvalidUploadId) as err:
        raise IndexKeyError(f"bad id ({err})", index_key) from err


def parse_object_key(index_key: bytes) -> tuple[str, str]:
    """`(bucket, key)` of an object index key; `IndexKeyError` if it is not one."""
    bucket, rest = _split_bucket(_kind_rest(index_key, KIND_OBJECT), index_key)
    return bucket, _decode_key(rest, index_key)


def parse_bucket_key(index_key: bytes) -> str:
    rest = _kind_rest(index_key, KIND_BUCKET)
    try:
        return check_bucket_name(rest.decode("ascii"))
    except (UnicodeDecodeError, InvalidBucketName) as err:
        raise IndexKeyError(f"bad bucket name ({err})", index_key) from err


def parse_upload_key(index_key: bytes) -> tuple[str, str, str]:
    """`(bucket, key, upload id)` of an upload record's key."""
    bucket, rest = _split_bucket(_kind_rest(index_key, KIND_UPLOAD), index_key)
    key, rest = _split_escaped_key(rest, index_key)
    return bucket, key, _ascii_id(rest, check_upload_id, index_key)


def parse_part_key(index_key: bytes) -> tuple[str, str, str, int]:
    """`(bucket, key, upload id, part number)` of a part record's key."""
    bucket, rest = _split_bucket(_kind_rest(index_key, KIND_PART), index_key)
    key, rest = _split_escaped_key(rest, index_key)
    if len(rest) != UPLOAD_ID_CHARS + 4:
        raise IndexKeyError("bad upload id and part number", index_key)
    upload_id = _ascii_id(rest[:UPLOAD_ID_CHARS], check_upload_id, index_key)
    (number,) = _U32BE.unpack_from(rest, UPLOAD_ID_CHARS)
    if not 1 <= number <= PART_NUMBER_MAX:
        raise IndexKeyError(f"bad part number {number}", index_key)
    return bucket, key, upload_id, number


def parse_repair_key(index_key: bytes) -> tuple[int, int, str, str, str, int]:
    """`(pool id, pg, bucket, key, version id, part number)` of a repair record's key."""
    rest = _kind_rest(index_key, KIND_REPAIR)
    if len(rest) < 8:
        raise IndexKeyError("no pool and pg", index_key)
    pool_id, pg = _U32BE.unpack_from(rest, 0)[0], _U32BE.unpack_from(rest, 4)[0]
    bucket, rest = _split_bucket(rest[8:], index_key)
    key, rest = _split_escaped_key(rest, index_key)
    if len(rest) < 6 or rest[-5:-4] != _SEP:
        raise IndexKeyError("bad version id and part number", index_key)
    version_id = _ascii_id(rest[:-5], check_version_id, index_key)
    (number,) = _U32BE.unpack_from(rest, len(rest) - 4)
    if number > PART_NUMBER_MAX:
        raise IndexKeyError(f"bad part number {number}", index_key)
    return pool_id, pg, bucket, key, version_id, number


# -- ranges


def _check_prefix(name: str, prefix: object) -> bytes:
    if type(prefix) is not str:
        raise InvalidListArgument(f"{name} must be a string, not {type(prefix).__name__}")
    try:
        data = prefix.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidListArgument(f"{name} is not valid Unicode: {err.reason}") from err
    if len(data) > KEY_BYTES_MAX:
        raise InvalidListArgument(f"{name} is {len(data)} bytes, over {KEY_BYTES_MAX}")
    return data


def buckets_range() -> KeyRange:
    """Every bucket record, in bucket-name order (ListBuckets)."""
    space = ROOT + bytes([KIND_BUCKET])
    return KeyRange(space, prefix_end(space))


def objects_range(bucket: str, prefix: str = "") -> KeyRange:
    """The manifests of `bucket` whose keys start with `prefix`, in S3 key order. With
    the default prefix: the whole bucket (DeleteBucket scans one key of it)."""
    start = _bucket_space(KIND_OBJECT, bucket) + _check_prefix("prefix", prefix)
    return KeyRange(start, prefix_end(start))


def uploads_range(bucket: str, prefix: str = "") -> KeyRange:
    """The upload records of `bucket` whose keys start with `prefix`, by key then
    initiation time."""
    start = _bucket_space(KIND_UPLOAD, bucket) + _escape(_check_prefix("prefix", prefix))
    return KeyRange(start, prefix_end(start))


def parts_range(bucket: str, key: str, upload_id: str, after_part: int = 0) -> KeyRange:
    """The part records of an upload with numbers above `after_part` (ListParts'
    part-number-marker), in part-number order; `after_part=0`: every part (Complete,
    Abort)."""
    space = part_key(bucket, key, upload_id, 1)[:-4]
    if type(after_part) is not int or not 0 <= after_part <= PART_NUMBER_MAX:
        raise InvalidListArgument(f"part-number-marker {after_part!r} is not in [0, 10000]")
    return KeyRange(space + _U32BE.pack(after_part + 1), prefix_end(space))


def repair_range(pool_id: int, pg: int | None = None) -> KeyRange:
    """The repair records of one pool, or of one PG of it."""
    space = ROOT + bytes([KIND_REPAIR]) + _U32BE.pack(_check_u32("pool id", pool_id))
    if pg is not None:
        space += _U32BE.pack(_check_u32("pg", pg))
    return KeyRange(space, prefix_end(space))


# ------------------------------------------------------------------------- listing

V = TypeVar("V")


def check_max_keys(requested: object) -> int:
    """max-keys (max-uploads, max-parts) as S3 applies it: a negative or non-integer
    value is InvalidArgument, more than 1,000 means 1,000."""
    if type(requested) is not int or requested < 0:
        raise InvalidListArgument(f"max-keys must be a non-negative integer, not {requested!r}")
    return min(requested, LIST_KEYS_MAX)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """One page of a listing: keys starting with `prefix`, rolled up at the first
    `delimiter` after the prefix ("" for none), at most `max_keys` items (keys and
    common prefixes together, as S3 counts them), each greater than `after` (the
    marker, start-after or decoded continuation token; "" for none)."""

    prefix: str = ""
    delimiter: str = ""
    max_keys: int = LIST_KEYS_MAX
    after: str = ""

    def __post_init__(self) -> None:
        _check_prefix("prefix", self.prefix)
        _check_prefix("marker", self.after)
        _check_prefix("delimiter", self.delimiter)
        if type(self.max_keys) is not int or not 0 <= self.max_keys <= LIST_KEYS_MAX:
            raise InvalidListArgument(
                f"max-keys must be an int in [0, {LIST_KEYS_MAX}], not {self.max_keys!r}"
            )


@dataclass(frozen=True, slots=True)
class ObjectPage(Generic[V]):
    """A ListObjects page. `next_marker` is the last item (key or common prefix) when
    the page is truncated: the `after` of the next page (v1 NextMarker; v2 wraps it
    in `encode_continuation_token`)."""

    contents: tuple[tuple[str, V], ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_marker: str | None

    @property
    def key_count(self) -> int:
        return len(self.contents) + len(self.common_prefixes)


@dataclass(frozen=True, slots=True)
class UploadPage(Generic[V]):
    """A ListMultipartUploads page: `uploads` are `(key, upload id, value)`. When
    truncated, `next_key_marker` is the last item's key (or common prefix) and
    `next_upload_id_marker` its upload id ("" after a common prefix)."""

    uploads: tuple[tuple[str, str, V], ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_key_marker: str | None
    next_upload_id_marker: str | None


class _Rollup(Generic[V]):
    """The listing state machine over one space of index keys in which the object key
    is stored as `encode(key)` (uploads: followed by more fields). `split` turns an
    index key back into `(key bytes, key, upload id or "")`. See `ObjectListing`."""

    def __init__(
        self,
        space: bytes,
        query: ListQuery,
        encode: Callable[[bytes], bytes],
        split: Callable[[bytes], tuple[bytes, str, str]],
        start_after_item: bytes,
    ) -> None:
        self._space = space
        self._encode = encode
        self._split = split
        self._prefix = query.prefix.encode("utf-8")
        self._delimiter = query.delimiter.encode("utf-8")
        self._max_keys = query.max_keys
        lowest = space + encode(self._prefix)
        self._end = prefix_end(lowest)
        self._start = lowest
        self.contents: list[tuple[str, str, V]] = []
        self.prefixes: list[str] = []
        self.last: tuple[str, str] = ("", "")  # the last item: (key or prefix, upload id)
        self.truncated = False
        self.done = query.max_keys == 0
        if query.after:
            after = query.after.encode("utf-8")
            rolled = self._rollup(after) if after.startswith(self._prefix) else None
            skip = self._past_prefix(rolled) if rolled is not None else start_after_item
            self._start = max(skip, lowest)
        if self._start >= self._end:
            self.done = True

    def _rollup(self, key: bytes) -> bytes | None:
        if not self._delimiter:
            return None
        # UTF-8 is self-synchronising: a byte match is a character match.
        at = key.find(self._delimiter, len(self._prefix))
        return None if at < 0 else key[: at + len(self._delimiter)]

    def _past_prefix(self, common_prefix: bytes) -> bytes:
        return prefix_end(self._space + self._encode(common_prefix))

    def scan_range(self) -> KeyRange | None:
        return None if self.done else KeyRange(self._start, self._end)

    def scan_limit(self) -> int:
        return self._max_keys - len(self.contents) - len(self.prefixes) + 1

    def feed(self, entries: Iterable[tuple[bytes, V]], exhausted: bool) -> None:
        invariant(not self.done, "listing fed after it finished")
        progressed = False
        for index_key, value in entries:
            invariant(index_key < self._end, f"scanned key {index_key.hex()} is past the range")
            if index_key < self._start:
                continue  # inside a common prefix already returned
            progressed = True
            if len(self.contents) + len(self.prefixes) == self._max_keys:
                self.truncated = self.done = True
                return
            key_bytes, key, upload_id = self._split(index_key)
            rolled = self._rollup(key_bytes)
            if rolled is None:
                self.contents.append((key, upload_id, value))
                self.last = (key, upload_id)
                self._start = index_key + b"\x00"
            else:
                common_prefix = rolled.decode("utf-8")
                self.prefixes.append(common_prefix)
                self.last = (common_prefix, "")
                self._start = self._past_prefix(rolled)
        invariant(progressed or exhausted, "a scan that is not exhausted returned nothing new")
        if exhausted or self._start >= self._end:
            self.done = True


class ObjectListing(Generic[V]):
    """ListObjects (v1 and v2) and ListObjectVersions of an unversioned bucket over
    the object index. The gateway drives it:

        listing = ObjectListing(bucket, ListQuery(prefix, delimiter, max_keys, after))
        while (rng := listing.scan_range()) is not None:
            entries, more = kv.scan(rng.start, rng.end, limit=listing.scan_limit())
            listing.feed(entries, exhausted=not more)
        page = listing.page()

    `entries` are `(index key, value)` pairs in key order from `scan_range().start`;
    `exhausted` says the scan reached the range's end. The listing skips the keys of a
    common prefix it has returned by moving the next scan past them, so a page costs
    about one scan per common prefix, not one read per key. Read every scan of one
    page at one KV revision for a consistent page."""

    def __init__(self, bucket: str, query: ListQuery) -> None:
        space = _bucket_space(KIND_OBJECT, bucket)

        def split(index_key: bytes) -> tuple[bytes, str, str]:
            data = index_key[len(space) :]
            return data, _decode_key(data, index_key), ""

        start = space + query.after.encode("utf-8") + b"\x00"
        self._core: _Rollup[V] = _Rollup(space, query, lambda key: key, split, start)

    def scan_range(self) -> KeyRange | None:
        """The index keys to read next, or None when the page is complete."""
        return self._core.scan_range()

    def scan_limit(self) -> int:
        """How many keys the next scan should ask for: enough to fill the page and
        see whether one more item follows."""
        return self._core.scan_limit()

    def feed(self, entries: Iterable[tuple[bytes, V]], *, exhausted: bool) -> None:
        self._core.feed(entries, exhausted)

    def page(self) -> ObjectPage[V]:
        core = self._core
        invariant(core.done, "page() before the listing finished")
        contents = tuple((key, value) for key, _, value in core.contents)
        marker = core.last[0] if core.truncated else None
        return ObjectPage(contents, tuple(core.prefixes), core.truncated, marker)


class UploadListing(Generic[V]):
    """ListMultipartUploads over the upload records, driven as `ObjectListing` is.
    Uploads come by key, then by initiation time; `query.after` is the key-marker and
    `upload_id_marker` the upload-id-marker (used only with a key-marker: then the
    uploads of that key with greater upload ids are included)."""

    def __init__(self, bucket: str, query: ListQuery, upload_id_marker: str = "") -> None:
        space = _bucket_space(KIND_UPLOAD, bucket)
        marker = _check_prefix("upload-id-marker", upload_id_marker)
        after_key = space + _escape(query.after.encode("utf-8")) + _TERM
        start = after_key + marker + b"\x00" if marker else prefix_end(after_key)

        def split(index_key: bytes) -> tuple[bytes, str, str]:
            _, key, upload_id = parse_upload_key(index_key)
            return key.encode("utf-8"), key, upload_id

        self._core: _Rollup[V] = _Rollup(space, query, _escape, split, start)

    def scan_range(self) -> KeyRange | None:
        return self._core.scan_range()

    def scan_limit(self) -> int:
        return self._core.scan_limit()

    def feed(self, entries: Iterable[tuple[bytes, V]], *, exhausted: bool) -> None:
        self._core.feed(entries, exhausted)

    def page(self) -> UploadPage[V]:
        core = self._core
        invariant(core.done, "page() before the listing finished")
        uploads = tuple(core.contents)
        if not core.truncated:
            return UploadPage(uploads, tuple(core.prefixes), False, None, None)
        key, upload_id = core.last
        return UploadPage(uploads, tuple(core.prefixes), True, key, upload_id)


@dataclass(frozen=True, slots=True)
class PartPage(Generic[V]):
    """A ListParts page: `(part number, value)` in part-number order."""

    parts: tuple[tuple[int, V], ...]
    is_truncated: bool
    next_part_number_marker: int


def page_parts(entries: Iterable[tuple[bytes, V]], max_parts: int) -> PartPage[V]:
    """A ListParts page from a scan of `parts_range(..., after_part)` with a limit of
    `max_parts + 1`: the first `max_parts` parts, truncated if one more was there.
    `next_part_number_marker` is the last part listed (0 for none)."""
    if type(max_parts) is not int or not 0 <= max_parts <= LIST_KEYS_MAX:
        raise InvalidListArgument(f"max-parts must be an int in [0, {LIST_KEYS_MAX}]")
    parts: list[tuple[int, V]] = []
    for index_key, value in entries:
        if len(parts) == max_parts:
            last = parts[-1][0] if parts else 0
            return PartPage(tuple(parts), max_parts > 0, last)
        parts.append((parse_part_key(index_key)[3], value))
    return PartPage(tuple(parts), False, parts[-1][0] if parts else 0)


# ------------------------------------------------------------- continuation tokens


def encode_continuation_token(marker: str) -> str:
    """The ListObjectsV2 continuation token for `marker` (a page's `next_marker`):
    base64url, unpadded, of `version u8 | crc32c(marker) u32 LE | marker (UTF-8)`."""
    data = _check_prefix("marker", marker)
    raw = bytes([_TOKEN_VERSION]) + struct.pack("<I", crc32c(data)) + data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_continuation_token(token: str) -> str:
    """The marker inside `token`; `InvalidContinuationToken` for anything
    `encode_continuation_token` did not write."""
    if (
        type(token) is not str
        or len(token) > CONTINUATION_TOKEN_CHARS_MAX
        or not _TOKEN_CHARS.fullmatch(token)
    ):
        raise InvalidContinuationToken("the continuation token is not valid")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as err:
        raise InvalidContinuationToken("the continuation token is not valid") from err
    if len(raw) < 5 or raw[0] != _TOKEN_VERSION:
        raise InvalidContinuationToken("the continuation token is not valid")
    data = raw[5:]
    if struct.unpack_from("<I", raw, 1)[0] != crc32c(data) or len(data) > KEY_BYTES_MAX:
        raise InvalidContinuationToken("the continuation token is not valid")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidContinuationToken("the continuation token is not valid") from err


__all__ = [
    "BUCKET_NAME_MAX",
    "BUCKET_NAME_MIN",
    "KEY_BYTES_MAX",
    "KIND_BUCKET",
    "KIND_OBJECT",
    "KIND_PART",
    "KIND_REPAIR",
    "KIND_UPLOAD",
    "LIST_KEYS_MAX",
    "PART_NUMBER_MAX",
    "ROOT",
    "VERSION_ID_BYTES_MAX",
    "KeyRange",
    "ListQuery",
    "ObjectListing",
    "ObjectPage",
    "PartPage",
    "UploadListing",
    "UploadPage",
    "bucket_key",
    "buckets_range",
    "check_bucket_name",
    "check_key",
    "check_max_keys",
    "check_part_number",
    "check_upload_id",
    "check_version_id",
    "decode_continuation_token",
    "encode_continuation_token",
    "make_upload_id",
    "make_version_id",
    "object_key",
    "objects_range",
    "page_parts",
    "parse_bucket_key",
    "parse_object_key",
    "parse_part_key",
    "parse_repair_key",
    "parse_upload_key",
    "parts_range",
    "prefix_end",
    "repair_key",
    "repair_range",
    "upload_initiated_ms",
    "upload_key",
    "uploads_range",
]
