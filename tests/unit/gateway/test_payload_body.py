"""atoll.gateway.payload.BodyReader for plain (not aws-chunked) bodies: the SHA-256 of
`x-amz-content-sha256`, Content-MD5, `x-amz-checksum-*` headers and Content-Length,
each verified at `finish()` with its S3 error."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from atoll.gateway import payload, sigv4
from atoll.gateway.checksums import Algorithm
from atoll.gateway.errors import (
    BadDigest,
    IncompleteBody,
    InvalidDigest,
    InvalidRequest,
    XAmzContentSHA256Mismatch,
)

BODY = b"The quick brown fox jumps over the lazy dog" * 100


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def request(*headers: tuple[str, str]) -> sigv4.Request:
    return sigv4.Request.from_target("PUT", "/b/k", [("Host", "h"), *headers])


def auth_for(content_sha256: str) -> sigv4.Authenticated:
    # What verify_header_auth returns for a request signed with this payload hash
    # (tested in test_sigv4_verify.py); the body checks need only the hash.
    return sigv4.Authenticated("AK", False, content_sha256)


def read(
    req: sigv4.Request, body: bytes, auth: sigv4.Authenticated | None = None
) -> payload.BodyResult:
    reader = payload.open_body(req, auth)
    for start in range(0, len(body), 1000):
        reader.feed(body[start : start + 1000])
    return reader.finish()


def test_a_plain_body_yields_its_bytes_and_the_digests_asked_for() -> None:
    reader = payload.open_body(request(), None, digests=[Algorithm.MD5, Algorithm.CRC32C])
    assert b"".join(reader.feed(BODY)) == BODY
    result = reader.finish()
    assert result.length_bytes == len(BODY)
    assert result.digests[Algorithm.MD5] == hashlib.md5(BODY).digest()
    assert set(result.digests) == {Algorithm.MD5, Algorithm.CRC32C}
    assert result.checksum is None


def test_x_amz_content_sha256_must_match_the_body() -> None:
    digest = hashlib.sha256(BODY).hexdigest()
    read(request(), BODY, auth_for(digest))
    with pytest.raises(XAmzContentSHA256Mismatch) as caught:
        read(request(), BODY[:-1] + b"?", auth_for(digest))
    assert caught.value.details["ClientComputedContentSHA256"] == digest
    assert (
        caught.value.details["S3ComputedContentSHA256"]
        == hashlib.sha256(BODY[:-1] + b"?").hexdigest()
    )
    # UNSIGNED-PAYLOAD promises nothing.
    read(request(), BODY[:-1] + b"?", auth_for("UNSIGNED-PAYLOAD"))


def test_content_md5_is_verified_when_sent() -> None:
    md5 = b64(hashlib.md5(BODY).digest())
    read(request(("Content-MD5", md5)), BODY)
    with pytest.raises(BadDigest, match="Content-MD5") as caught:
        read(request(("Content-MD5", md5)), BODY + b"!")
    assert caught.value.details["ExpectedDigest"] == md5
    with pytest.raises(InvalidDigest):
        payload.open_body(request(("Content-MD5", "abc")), None)


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        (Algorithm.CRC32, zlib.crc32(BODY).to_bytes(4, "big")),
        (Algorithm.SHA256, hashlib.sha256(BODY).digest()),
        (Algorithm.SHA1, hashlib.sha1(BODY).digest()),
    ],
)
def test_a_checksum_header_is_verified_and_returned(algorithm: Algorithm, digest: bytes) -> None:
    result = read(request((algorithm.header, b64(digest))), BODY)
    assert result.checksum == (algorithm, digest)
    with pytest.raises(BadDigest, match=algorithm.name):
        read(request((algorithm.header, b64(digest))), BODY[1:])
    with pytest.raises(InvalidRequest):
        payload.open_body(request((algorithm.header, "!!")), None)


def test_content_length_is_checked_both_ways() -> None:
    read(request(("Content-Length", str(len(BODY)))), BODY)
    with pytest.raises(IncompleteBody):
        read(request(("Content-Length", str(len(BODY) + 1))), BODY)
    reader = payload.open_body(request(("Content-Length", "3")), None)
    with pytest.raises(IncompleteBody):
        reader.feed(b"four")


def test_the_sha256_mismatch_is_reported_before_other_digests() -> None:
    # A body that differs from the signed one is reported as such, whatever else it breaks.
    md5 = b64(hashlib.md5(BODY).digest())
    with pytest.raises(XAmzContentSHA256Mismatch):
        read(request(("Content-MD5", md5)), b"other", auth_for(hashlib.sha256(BODY).hexdigest()))
