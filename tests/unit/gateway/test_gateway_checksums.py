"""atoll.gateway.checksums: each digest against its published check value, incremental
updates against one-shot digests, the base64 forms S3 sends, and the errors for
malformed and mismatching values."""

from __future__ import annotations

import base64
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.gateway.checksums import (
    Algorithm,
    DigestSet,
    algorithm_of_header,
    b64,
    checksum_headers,
    new_checksum,
    parse_checksum_value,
    parse_content_md5,
    verify_digest,
)
from atoll.gateway.errors import BadDigest, InvalidDigest, InvalidRequest, S3NotImplemented

CHECK_INPUT = b"123456789"

# Published check values: CRC-32/ISO-HDLC and CRC-32C/ISCSI from the CRC catalogue,
# the others from FIPS 180 / RFC 1321 test vectors ("abc", and MD5 of "").
KNOWN = [
    (Algorithm.CRC32, CHECK_INPUT, "cbf43926"),
    (Algorithm.CRC32C, CHECK_INPUT, "e3069283"),
    (Algorithm.SHA1, b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    (Algorithm.SHA256, b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (Algorithm.MD5, b"", "d41d8cd98f00b204e9800998ecf8427e"),
]


@pytest.mark.parametrize(("algorithm", "data", "digest_hex"), KNOWN)
def test_known_digests(algorithm: Algorithm, data: bytes, digest_hex: str) -> None:
    checksum = new_checksum(algorithm)
    checksum.update(data)
    assert checksum.algorithm is algorithm
    assert checksum.digest().hex() == digest_hex
    assert len(checksum.digest()) == algorithm.digest_bytes


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_incremental_updates_equal_one_shot(data: bytes, cuts: list[int]) -> None:
    whole = DigestSet(Algorithm)
    whole.update(data)
    pieces = DigestSet(Algorithm)
    start = 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        pieces.update(memoryview(data)[start:cut])
        start = cut
    assert pieces.digests() == whole.digests()
    assert pieces.digests()[Algorithm.CRC32] == zlib.crc32(data).to_bytes(4, "big")


def test_base64_forms_are_big_endian_digests() -> None:
    checksum = new_checksum(Algorithm.CRC32)
    checksum.update(b"abc")
    assert b64(checksum.digest()) == "NSRBwg=="  # crc32("abc") = 0x352441c2
    assert Algorithm.CRC32.header == "x-amz-checksum-crc32"
    assert Algorithm.MD5.header == "content-md5"


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("Content-MD5", Algorithm.MD5),
        ("x-amz-checksum-crc32", Algorithm.CRC32),
        ("X-Amz-Checksum-CRC32C", Algorithm.CRC32C),
        ("x-amz-checksum-sha1", Algorithm.SHA1),
        ("x-amz-checksum-sha256", Algorithm.SHA256),
        ("x-amz-checksum-type", None),
        ("x-amz-checksum-mode", None),
        ("x-amz-checksum-md5", None),
        ("x-amz-sdk-checksum-algorithm", None),
        ("x-amz-meta-x", None),
    ],
)
def test_which_headers_carry_digests(name: str, algorithm: Algorithm | None) -> None:
    assert algorithm_of_header(name) is algorithm


def test_crc64nvme_is_refused_not_ignored() -> None:
    with pytest.raises(S3NotImplemented) as caught:
        algorithm_of_header("x-amz-checksum-crc64nvme")
    assert caught.value.status == 501


def test_content_md5_parsing() -> None:
    assert parse_content_md5("1B2M2Y8AsgTpgAmY7PhCfg==").hex() == "d41d8cd98f00b204e9800998ecf8427e"
    for bad in ("", "not base64!", "AAAA", "1B2M2Y8AsgTpgAmY7PhCfh==", "1B2M2Y8AsgTpgAmY7PhCfg"):
        with pytest.raises(InvalidDigest) as caught:
            parse_content_md5(bad)
        assert caught.value.status == 400


def test_checksum_values_must_be_canonical_base64_of_the_right_length() -> None:
    assert parse_checksum_value(Algorithm.CRC32, "NSRBwg==") == bytes.fromhex("352441c2")
    # "NSRBwh==" decodes to the same bytes (unused low bits), but is not what was sent.
    for bad in ("NSRBwh==", "NSRB", "NSRBwg", "AAAAAAA=", "é"):
        with pytest.raises(InvalidRequest, match="x-amz-checksum-crc32 header"):
            parse_checksum_value(Algorithm.CRC32, bad)
    with pytest.raises(InvalidRequest, match="trailing header"):
        parse_checksum_value(Algorithm.CRC32C, "x", trailer=True)
    with pytest.raises(InvalidDigest):
        parse_checksum_value(Algorithm.MD5, "x")


def test_checksum_headers_allow_content_md5_and_one_checksum() -> None:
    sha = base64.b64encode(b"\x01" * 32).decode()
    found = checksum_headers(
        [("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="), ("x-amz-checksum-sha256", sha), ("host", "h")]
    )
    assert set(found) == {Algorithm.MD5, Algorithm.SHA256}
    with pytest.raises(InvalidRequest, match="single"):
        checksum_headers([("x-amz-checksum-sha256", sha), ("x-amz-checksum-crc32", "NSRBwg==")])
    with pytest.raises(InvalidRequest, match="Multiple"):
        checksum_headers(
            [("x-amz-checksum-crc32", "NSRBwg=="), ("x-amz-checksum-crc32", "NSRBwg==")]
        )


def test_a_mismatch_is_bad_digest_naming_both_values() -> None:
    verify_digest(Algorithm.CRC32, b"\x01\x02\x03\x04", b"\x01\x02\x03\x04")
    with pytest.raises(BadDigest, match="CRC32 you specified") as caught:
        verify_digest(Algorithm.CRC32, b"\x00\x00\x00\x01", b"\x00\x00\x00\x02")
    assert caught.value.details == {"ExpectedDigest": "AAAAAQ==", "CalculatedDigest": "AAAAAg=="}
    with pytest.raises(BadDigest, match="Content-MD5 you specified"):
        verify_digest(Algorithm.MD5, b"\x00" * 16, b"\x01" * 16)
