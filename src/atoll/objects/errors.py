"""Expected failures of the object formats (shared/STYLE.md §7). Pure: no I/O.

Every error is an `ObjectsError`, which is also a `ValueError`: this package only
validates names and decodes bytes, so everything it refuses is a bad value. Two kinds:

- **Request values** the S3 gateway maps to an S3 error code: `InvalidBucketName`,
  `KeyTooLong`, `InvalidObjectKey`, `MetadataTooLarge`, `InvalidListArgument` (and
  `InvalidContinuationToken`), `InvalidUploadId` (NoSuchUpload at the edge),
  `InvalidPartNumber`.
- **Records** (`RecordError` and below): a manifest or index record that cannot be
  built, or bytes read from the KV space that are not a valid v1 record. The second
  is never the client's fault: the gateway answers InternalError, and the damaged
  key is reported (docs/formats/objects.md §4.7).
"""

from __future__ import annotations

from atoll.base.errors import AtollError


class ObjectsError(AtollError, ValueError):
    """Root of the object formats' failures."""


# ------------------------------------------------------------------ request values


class InvalidBucketName(ObjectsError):
    """A bucket name outside S3's naming rules (docs/formats/objects.md §1)."""

    def __init__(self, bucket: str, reason: str) -> None:
        super().__init__(f"bucket name {bucket!r}: {reason}")
        self.bucket = bucket
        self.reason = reason


class KeyTooLong(ObjectsError):
    """An object key whose UTF-8 encoding is over 1,024 bytes (S3's KeyTooLong)."""

    def __init__(self, length_bytes: int, limit_bytes: int) -> None:
        super().__init__(f"object key is {length_bytes} bytes, over the limit of {limit_bytes}")
        self.length_bytes = length_bytes
        self.limit_bytes = limit_bytes


class InvalidObjectKey(ObjectsError):
    """An object key that is empty or not encodable as UTF-8 (a lone surrogate)."""


class MetadataTooLarge(ObjectsError):
    """User metadata (`x-amz-meta-*`) over S3's 2 KB: the UTF-8 bytes of every name
    (without the prefix) and value, summed."""

    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(f"user metadata is {size_bytes} bytes, over the limit of {limit_bytes}")
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class InvalidListArgument(ObjectsError):
    """A listing parameter S3 refuses with InvalidArgument (a negative max-keys, a
    prefix, marker or delimiter over the key limit)."""


class InvalidContinuationToken(InvalidListArgument):
    """A continuation token this code did not write (or one damaged on the way)."""


class InvalidUploadId(ObjectsError):
    """An upload id that cannot be one of ours: the gateway answers NoSuchUpload."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload id {upload_id!r} is not a valid upload id")
        self.upload_id = upload_id


class InvalidPartNumber(ObjectsError):
    """A multipart part number outside 1 .. 10,000."""

    def __init__(self, part_number: object) -> None:
        super().__init__(f"part number {part_number!r} is not an int in [1, 10000]")
        self.part_number = part_number


# ------------------------------------------------------------------------ records


class RecordError(ObjectsError):
    """A record (manifest, bucket, upload, part, repair) or an index key that cannot
    be built, encoded or decoded. `offset` is where decoding stopped in the encoded
    bytes; None while building."""

    def __init__(self, reason: str, *, offset: int | None = None) -> None:
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"bad object record{where}: {reason}")
        self.reason = reason
        self.offset = offset


class RecordLimitError(RecordError):
    """A field over its named limit (docs/formats/objects.md §7)."""

    def __init__(self, what: str, actual: int, limit: int, *, offset: int | None = None) -> None:
        super().__init__(f"{what} is {actual}, over the limit of {limit}", offset=offset)
        self.what = what
        self.actual = actual
        self.limit = limit


class RecordChecksumError(RecordError):
    """The CRC-32C stored in a record does not match its body."""

    def __init__(self, *, expected: int, actual: int) -> None:
        super().__init__(f"body crc32c {actual:#010x}, header says {expected:#010x}", offset=2)
        self.expected = expected
        self.actual = actual


class UnsupportedRecordVersion(RecordError):
    """A record written by a newer format version than this code knows (a rolling
    upgrade that wrote too early), or damage to the version byte."""

    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported record format version {version}", offset=1)
        self.version = version


class IndexKeyError(RecordError):
    """A KV key under the object layer's prefix that is not a valid index key."""

    def __init__(self, reason: str, key: bytes) -> None:
        super().__init__(f"{reason}: index key {key.hex()}")
        self.key = key


__all__ = [
    "IndexKeyError",
    "InvalidBucketName",
    "InvalidContinuationToken",
    "InvalidListArgument",
    "InvalidObjectKey",
    "InvalidPartNumber",
    "InvalidUploadId",
    "KeyTooLong",
    "MetadataTooLarge",
    "ObjectsError",
    "RecordChecksumError",
    "RecordError",
    "RecordLimitError",
    "UnsupportedRecordVersion",
]
