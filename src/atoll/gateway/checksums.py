"""The digests S3 clients send with a body, computed incrementally. Pure: no I/O.

S3 carries a body's digest in one of these forms (Amazon S3 user guide, "Checking
object integrity"):

- `Content-MD5`: base64 of the 16-byte MD5 (RFC 1864). Malformed -> InvalidDigest,
  mismatch -> BadDigest.
- `x-amz-checksum-crc32`, `-crc32c`, `-sha1`, `-sha256`: base64 of the big-endian
  digest (4 bytes for the CRCs), as a header or, with the aws-chunked trailer modes, as
  a trailing header (`atoll.gateway.sigv4`). Malformed -> InvalidRequest, mismatch ->
  BadDigest. `-crc64nvme` is recognised and refused as not implemented.

`new_checksum` gives one incremental object per algorithm behind a common interface
(`update`, `digest`); `DigestSet` runs several over the same stream in one pass, so a
PUT computes its ETag's MD5 and verifies its CRC32 without reading the bytes twice.
Each `update` is one call into C (zlib, the `crc32c` package, hashlib): no per-byte
Python. Large bodies should be fed from a worker thread (shared/STYLE.md §6); nothing
here cares which thread calls it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import zlib
from collections.abc import Iterable
from typing import Protocol

import crc32c

from atoll.gateway.errors import BadDigest, InvalidDigest, InvalidRequest, S3NotImplemented

Buffer = bytes | bytearray | memoryview

CHECKSUM_HEADER_PREFIX = "x-amz-checksum-"
CONTENT_MD5_HEADER = "content-md5"

UNSUPPORTED_CHECKSUMS = frozenset({"crc64nvme"})
"""Digest names S3 defines that Atoll does not compute (yet): refused, never ignored."""


class Algorithm(enum.Enum):
    """A digest S3 knows. The value is the suffix of its `x-amz-checksum-` header."""

    CRC32 = "crc32"
    CRC32C = "crc32c"
    SHA1 = "sha1"
    SHA256 = "sha256"
    MD5 = "md5"

    @property
    def digest_bytes(self) -> int:
        return _DIGEST_BYTES[self]

    @property
    def header(self) -> str:
        """The request header that carries this digest."""
        return CONTENT_MD5_HEADER if self is Algorithm.MD5 else CHECKSUM_HEADER_PREFIX + self.value

    @property
    def label(self) -> str:
        """The name S3 uses in messages: CRC32, CRC32C, SHA1, SHA256, Content-MD5."""
        return "Content-MD5" if self is Algorithm.MD5 else self.name


_DIGEST_BYTES = {
    Algorithm.CRC32: 4,
    Algorithm.CRC32C: 4,
    Algorithm.SHA1: 20,
    Algorithm.SHA256: 32,
    Algorithm.MD5: 16,
}

CHECKSUM_ALGORITHMS = (Algorithm.CRC32, Algorithm.CRC32C, Algorithm.SHA1, Algorithm.SHA256)
"""The algorithms of the `x-amz-checksum-*` headers and trailers (not Content-MD5)."""


class Checksum(Protocol):
    """An incremental digest."""

    @property
    def algorithm(self) -> Algorithm: ...

    def update(self, data: Buffer) -> None: ...

    def digest(self) -> bytes:
        """The digest of everything fed so far (callable more than once)."""
        ...


class Crc32Checksum:
    """CRC-32 (ISO-HDLC, zlib's), digest big-endian."""

    algorithm = Algorithm.CRC32

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: Buffer) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


class Crc32cChecksum:
    """CRC-32C (Castagnoli), digest big-endian."""

    algorithm = Algorithm.CRC32C

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: Buffer) -> None:
        self._crc = crc32c.crc32c(data, self._crc)

    def digest(self) -> bytes:
        return int(self._crc).to_bytes(4, "big")


class HashlibChecksum:
    """SHA-1, SHA-256 or MD5 through hashlib."""

    def __init__(self, algorithm: Algorithm) -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm.value)

    def update(self, data: Buffer) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()


def new_checksum(algorithm: Algorithm) -> Checksum:
    if algorithm is Algorithm.CRC32:
        return Crc32Checksum()
    if algorithm is Algorithm.CRC32C:
        return Crc32cChecksum()
    return HashlibChecksum(algorithm)


def b64(digest: bytes) -> str:
    """The base64 form S3 sends digests in."""
    return base64.b64encode(digest).decode("ascii")


class DigestSet:
    """Several digests of the same stream, computed in one pass."""

    def __init__(self, algorithms: Iterable[Algorithm]) -> None:
        self._checksums = {a: new_checksum(a) for a in algorithms}

    @property
    def algorithms(self) -> frozenset[Algorithm]:
        return frozenset(self._checksums)

    def update(self, data: Buffer) -> None:
        for checksum in self._checksums.values():
            checksum.update(data)

    def digests(self) -> dict[Algorithm, bytes]:
        return {a: c.digest() for a, c in self._checksums.items()}


# -- parsing what clients send -----------------------------------------------------------


def algorithm_of_header(name: str) -> Algorithm | None:
    """The digest a header (or trailer) named `name` carries, or None if it carries
    none. `x-amz-checksum-type`, `-mode` and `-algorithm` are settings, not digests.
    Raises S3NotImplemented for a digest Atoll does not compute."""
    name = name.lower()
    if name == CONTENT_MD5_HEADER:
        return Algorithm.MD5
    if not name.startswith(CHECKSUM_HEADER_PREFIX):
        return None
    suffix = name[len(CHECKSUM_HEADER_PREFIX) :]
    if suffix in UNSUPPORTED_CHECKSUMS:
        raise S3NotImplemented(f"The {suffix.upper()} checksum algorithm is not supported.")
    try:
        algorithm = Algorithm(suffix)
    except ValueError:
        return None
    return algorithm if algorithm in CHECKSUM_ALGORITHMS else None


def parse_content_md5(value: str) -> bytes:
    """The 16 bytes of a `Content-MD5` header; InvalidDigest unless it is exactly the
    base64 of 16 bytes."""
    digest = _strict_b64decode(value)
    if digest is None or len(digest) != Algorithm.MD5.digest_bytes:
        raise InvalidDigest(**{"Content-MD5": value})
    return digest


def parse_checksum_value(algorithm: Algorithm, value: str, *, trailer: bool = False) -> bytes:
    """The digest bytes of an `x-amz-checksum-*` header or trailer value; InvalidRequest
    (InvalidDigest for Content-MD5) unless it is the base64 of a digest of the right
    length."""
    if algorithm is Algorithm.MD5:
        return parse_content_md5(value)
    digest = _strict_b64decode(value)
    if digest is None or len(digest) != algorithm.digest_bytes:
        kind = "trailing header" if trailer else "header"
        raise InvalidRequest(f"Value for {algorithm.header} {kind} is invalid.")
    return digest


def _strict_b64decode(value: str) -> bytes | None:
    """Canonical base64 only: b64decode ignores the unused low bits of the last digit
    (`sOO8/Q==` and `sOO8/R==` decode alike), so the text must re-encode to itself."""
    try:
        text = value.strip(" \t").encode("ascii")
        digest = base64.b64decode(text, validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return digest if base64.b64encode(digest) == text else None


def checksum_headers(headers: Iterable[tuple[str, str]]) -> dict[Algorithm, bytes]:
    """The digests announced by `headers` (lower-case names): Content-MD5 and at most one
    `x-amz-checksum-*` (S3 refuses several, InvalidRequest). Malformed values raise as
    in `parse_checksum_value`."""
    found: dict[Algorithm, bytes] = {}
    for name, value in headers:
        algorithm = algorithm_of_header(name)
        if algorithm is None:
            continue
        if algorithm in found:
            raise InvalidRequest(f"Multiple {algorithm.header} headers.")
        found[algorithm] = parse_checksum_value(algorithm, value)
    if sum(a is not Algorithm.MD5 for a in found) > 1:
        raise InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    return found


def verify_digest(algorithm: Algorithm, expected: bytes, actual: bytes) -> None:
    """BadDigest unless the digest computed over the body equals the one sent."""
    if expected == actual:
        return
    if algorithm is Algorithm.MD5:
        message = "The Content-MD5 you specified did not match what we received."
    else:
        message = f"The {algorithm.label} you specified did not match the calculated checksum."
    raise BadDigest(message, ExpectedDigest=b64(expected), CalculatedDigest=b64(actual))
