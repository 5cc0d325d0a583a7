"""The aws-chunked body reader (atoll.gateway.payload.AwsChunkedDecoder behind
`open_body`): Hypothesis checks that a valid body verifies however it is split, and
that any single changed byte fails with the error of the part it hit; then each limit
and error path by hand.

Valid bodies come from `AwsChunkedEncoder`, which reproduces AWS's published chunk and
trailer signatures (test_sigv4_examples.py); the hand-built bodies below do not use it.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from atoll.gateway import payload, sigv4
from atoll.gateway.checksums import Algorithm, new_checksum
from atoll.gateway.errors import (
    AccessDenied,
    BadDigest,
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    MalformedTrailerError,
    MissingContentLength,
    S3Error,
    S3NotImplemented,
    SignatureDoesNotMatch,
)

T = 1_767_225_600.0
SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def streaming_request(
    mode: str,
    decoded_length: int,
    trailer: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> tuple[sigv4.Request, sigv4.Authenticated]:
    headers = [
        ("Host", "127.0.0.1:9000"),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", str(decoded_length)),
        *extra,
    ]
    if trailer:
        headers.append(("x-amz-trailer", trailer))
    request, context = sigv4.sign_request_streaming(
        sigv4.Request.from_target("PUT", "/bucket/key", headers),
        access_key="AK",
        secret_key="secret-key",
        region="us-east-1",
        now_s=T,
        payload_hash=mode,
    )
    auth = sigv4.verify_header_auth(request, {"AK": "secret-key"}.get, T)
    assert auth.chunk_context == (context if mode != UNSIGNED_TRAILER else None)
    return request, auth


@dataclass
class Body:
    raw: bytes
    regions: list[tuple[int, int, str]]
    """(start, end, kind): kind is size, ext, data, crlf, final or trailer."""

    def region_of(self, position: int) -> str:
        return next(kind for start, end, kind in self.regions if start <= position < end)


def encode(
    content: bytes,
    sizes: list[int],
    context: sigv4.ChunkSigningContext | None,
    trailer: Algorithm | None,
) -> Body:
    """The body in chunks of `sizes`, each byte labelled with the part it belongs to."""
    encoder = payload.AwsChunkedEncoder(context)
    raw = bytearray()
    regions: list[tuple[int, int, str]] = []

    def add(part: bytes, kind: str) -> None:
        regions.append((len(raw), len(raw) + len(part), kind))
        raw.extend(part)

    pos = 0
    for size in sizes:
        data = content[pos : pos + size]
        pos += size
        chunk = encoder.chunk(data)
        header = chunk[: len(chunk) - len(data) - 2]
        size_text, semicolon, _ = header[:-2].partition(b";")
        add(size_text, "size")
        add(header[len(size_text) : -2], "ext" if semicolon else "size")
        add(b"\r\n", "crlf")
        add(data, "data")
        add(b"\r\n", "crlf")
    trailers = {}
    if trailer is not None:
        checksum = new_checksum(trailer)
        checksum.update(content)
        trailers[trailer.header] = base64.b64encode(checksum.digest()).decode()
    tail = encoder.finish(trailers)
    final_header = tail[: tail.index(b"\r\n") + 2]
    add(final_header, "final")
    add(tail[len(final_header) : -2], "trailer")
    add(tail[-2:], "final")
    return Body(bytes(raw), [r for r in regions if r[0] < r[1]])


def read(
    request: sigv4.Request, auth: sigv4.Authenticated | None, raw: bytes, cuts: list[int]
) -> tuple[bytes, payload.BodyResult]:
    reader = payload.open_body(request, auth)
    out = []
    start = 0
    for cut in [*sorted(set(cuts)), len(raw)]:
        out += [bytes(p) for p in reader.feed(raw[start:cut])]
        start = cut
    return b"".join(out), reader.finish()


MODES = [
    (SIGNED, None),
    (SIGNED_TRAILER, Algorithm.CRC32C),
    (SIGNED_TRAILER, Algorithm.SHA256),
    (UNSIGNED_TRAILER, Algorithm.CRC32),
    (UNSIGNED_TRAILER, Algorithm.CRC32C),
]


@st.composite
def bodies(draw: st.DrawFn) -> tuple[sigv4.Request, sigv4.Authenticated, bytes, Body]:
    mode, trailer = draw(st.sampled_from(MODES))
    content = draw(st.binary(min_size=0, max_size=3000))
    sizes = []
    left = len(content)
    while left:
        size = draw(st.integers(1, min(left, 1200)))
        sizes.append(size)
        left -= size
    request, auth = streaming_request(mode, len(content), trailer.header if trailer else None)
    return request, auth, content, encode(content, sizes, auth.chunk_context, trailer)


@settings(max_examples=200, deadline=None)
@given(body=bodies(), data=st.data())
def test_a_valid_body_verifies_however_it_is_split(
    body: tuple[sigv4.Request, sigv4.Authenticated, bytes, Body], data: st.DataObject
) -> None:
    request, auth, content, encoded = body
    cuts = data.draw(st.lists(st.integers(0, len(encoded.raw)), max_size=40))
    decoded, result = read(request, auth, encoded.raw, cuts)
    assert decoded == content
    assert result.length_bytes == len(content)
    assert result.digests[Algorithm.MD5] == hashlib.md5(content).digest()
    if auth.payload_mode.trailer:
        assert result.checksum is not None


def allowed_errors(kind: str, signed: bool) -> tuple[type[S3Error], ...]:
    if kind == "data":
        return (SignatureDoesNotMatch,) if signed else (BadDigest,)
    if kind == "crlf":
        return (IncompleteBody,)
    if kind in ("size", "ext"):
        return (IncompleteBody, SignatureDoesNotMatch, BadDigest, MalformedTrailerError)
    # The final chunk and the trailers.
    return (IncompleteBody, SignatureDoesNotMatch, MalformedTrailerError, InvalidRequest, BadDigest)


@settings(max_examples=300, deadline=None)
@given(body=bodies(), data=st.data())
def test_any_changed_byte_fails_with_the_error_of_its_part(
    body: tuple[sigv4.Request, sigv4.Authenticated, bytes, Body], data: st.DataObject
) -> None:
    request, auth, _, encoded = body
    position = data.draw(st.integers(0, len(encoded.raw) - 1))
    mask = data.draw(st.integers(1, 255))
    original = encoded.raw[position]
    kind = encoded.region_of(position)
    # Header names and hex digits are case-insensitive: such a change means the same.
    assume(not (kind in ("size", "trailer") and mask == 0x20 and chr(original).isalpha()))
    raw = bytearray(encoded.raw)
    raw[position] ^= mask
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    with pytest.raises(S3Error) as caught:
        read(request, auth, bytes(raw), cuts)
    assert isinstance(caught.value, allowed_errors(kind, auth.chunk_context is not None)), (
        kind,
        caught.value,
    )


# -- by hand ---------------------------------------------------------------------------------


def unsigned_request(
    decoded_length: int | str, trailer: str | None = "x-amz-checksum-crc32", **headers: str
) -> sigv4.Request:
    pairs = [
        ("Host", "h"),
        ("x-amz-content-sha256", UNSIGNED_TRAILER),
        ("x-amz-decoded-content-length", str(decoded_length)),
        *headers.items(),
    ]
    if trailer:
        pairs.append(("x-amz-trailer", trailer))
    return sigv4.Request.from_target("PUT", "/b/k", pairs)


ABC_CRC32 = "NSRBwg=="  # base64 of crc32(b"abc") = 0x352441c2, big-endian


def test_crc32_of_abc_is_the_known_value() -> None:
    assert base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big")).decode() == ABC_CRC32


def test_the_sdk_trailer_layout_decodes_byte_by_byte() -> None:
    body = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:" + ABC_CRC32.encode() + b"\r\n\r\n"
    decoded, result = read(unsigned_request(3), None, body, list(range(len(body))))
    assert decoded == b"abc"
    assert result.trailers == {"x-amz-checksum-crc32": ABC_CRC32}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"3\r\nabd\r\n0\r\nx-amz-checksum-crc32:" + ABC_CRC32.encode() + b"\r\n\r\n", BadDigest),
        (b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n", InvalidRequest),
        (b"3\r\nabc\r\n0\r\nx-amz-checksum-sha256:AAAA\r\n\r\n", MalformedTrailerError),
        (b"3\r\nabc\r\n0\r\n\r\n", MalformedTrailerError),
        (
            b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
            MalformedTrailerError,
        ),
        (b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:\xff\r\n\r\n", MalformedTrailerError),
        (b"3\r\nabc\r\n0\r\nno colon here\r\n\r\n", MalformedTrailerError),
        (b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\nmore", IncompleteBody),
        (b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==", IncompleteBody),
        (b"3\r\nabc\r\n", IncompleteBody),  # no final chunk
        (b"3\r\nab", IncompleteBody),  # ends inside a chunk
        (b"3\r\nabcd\r\n", IncompleteBody),  # chunk longer than its size
        (b"3\nabc\r\n", IncompleteBody),  # LF alone
        (b"x3\r\nabc\r\n", IncompleteBody),
        (b"0x3\r\nabc\r\n", IncompleteBody),  # int() would take it; the grammar does not
        (b"+3\r\nabc\r\n", IncompleteBody),
        (b"4\r\nabcd\r\n", IncompleteBody),  # more than x-amz-decoded-content-length
        (
            b"2\r\nab\r\n0\r\nx-amz-checksum-crc32:" + ABC_CRC32.encode() + b"\r\n\r\n",
            IncompleteBody,
        ),
    ],
)
def test_bad_unsigned_bodies(body: bytes, error: type[S3Error]) -> None:
    with pytest.raises(error):
        read(unsigned_request(3), None, body, [])


def test_line_and_chunk_size_limits() -> None:
    request = unsigned_request(10**9, trailer=None)
    long_line = b"1" + b";x" * payload.CHUNK_LINE_BYTES_MAX
    for cuts in ([], list(range(0, len(long_line), 100))):
        with pytest.raises(IncompleteBody, match="longer than"):
            read(request, None, long_line + b"\r\n", cuts)
    big = f"{payload.CHUNK_SIZE_MAX_BYTES + 1:x}\r\n".encode()
    with pytest.raises(IncompleteBody, match="limit"):
        read(request, None, big, [])
    small_limit = payload.open_body(request, None, chunk_size_max_bytes=16)
    with pytest.raises(IncompleteBody, match="limit"):
        small_limit.feed(b"11\r\n")


def signed_body(
    mode: str, content: bytes, sizes: list[int], trailer: Algorithm | None = None
) -> tuple[sigv4.Request, sigv4.Authenticated, Body]:
    request, auth = streaming_request(mode, len(content), trailer.header if trailer else None)
    return request, auth, encode(content, sizes, auth.chunk_context, trailer)


def test_chunks_in_another_order_do_not_match() -> None:
    # Each signature chains from the one before: swapping two chunks with their
    # headers breaks the chain even though each chunk is signed.
    request, auth, body = signed_body(SIGNED, b"x" * 10 + b"y" * 10, [10, 10])
    first = body.raw.index(b"\r\n", body.raw.index(b"x" * 10)) + 2
    second_end = body.raw.index(b"0;chunk-signature")
    swapped = body.raw[first:second_end] + body.raw[:first] + body.raw[second_end:]
    with pytest.raises(SignatureDoesNotMatch):
        read(request, auth, swapped, [])


def test_a_missing_final_chunk_or_chunk_signature_is_incomplete() -> None:
    request, auth, body = signed_body(SIGNED, b"abc", [3])
    without_final = body.raw[: body.raw.index(b"0;chunk-signature")]
    with pytest.raises(IncompleteBody):
        read(request, auth, without_final, [])
    unsigned_chunk = b"3\r\nabc\r\n" + body.raw[body.raw.index(b"0;chunk-signature") :]
    with pytest.raises(IncompleteBody, match="no chunk-signature"):
        read(request, auth, unsigned_chunk, [])


def test_a_signed_body_with_a_different_seed_does_not_match() -> None:
    _, auth, body = signed_body(SIGNED, b"abc", [3])
    other_request, other_auth = streaming_request(SIGNED, 3, extra=(("x-amz-meta-other", "1"),))
    assert other_auth.chunk_context != auth.chunk_context
    with pytest.raises(SignatureDoesNotMatch, match="chunk 1"):
        read(other_request, other_auth, body.raw, [])


def test_signed_trailers_need_their_signature() -> None:
    request, auth, body = signed_body(SIGNED_TRAILER, b"abc", [3], Algorithm.CRC32)
    raw = body.raw
    signature_line = raw[raw.index(b"x-amz-trailer-signature") : raw.rindex(b"\r\n\r\n") + 2]
    with pytest.raises(MalformedTrailerError, match="no x-amz-trailer-signature"):
        read(request, auth, raw.replace(signature_line, b""), [])
    wrong = signature_line[:-3] + (b"0" if signature_line[-3:-2] != b"0" else b"1") + b"\r\n"
    with pytest.raises(SignatureDoesNotMatch, match="trailer signature"):
        read(request, auth, raw.replace(signature_line, wrong), [])
    with pytest.raises(MalformedTrailerError, match="twice"):
        read(request, auth, raw.replace(signature_line, signature_line * 2), [])


# -- open_body: the headers that describe the body ----------------------------------------------


def test_open_body_refuses_inconsistent_streaming_headers() -> None:
    with pytest.raises(MissingContentLength):
        payload.open_body(
            sigv4.Request.from_target("PUT", "/b/k", [("x-amz-content-sha256", UNSIGNED_TRAILER)]),
            None,
        )
    with pytest.raises(InvalidArgument):
        payload.open_body(unsigned_request("-3"), None)
    for trailer in ("content-md5", "x-amz-meta-a", "x-amz-checksum-crc32,x-amz-checksum-sha256"):
        with pytest.raises(InvalidRequest):
            payload.open_body(unsigned_request(3, trailer=trailer), None)
    with pytest.raises(S3NotImplemented):
        payload.open_body(unsigned_request(3, trailer="x-amz-checksum-crc64nvme"), None)
    with pytest.raises(InvalidRequest, match="single"):
        payload.open_body(
            unsigned_request(3, **{"x-amz-checksum-sha256": base64.b64encode(b"x" * 32).decode()}),
            None,
        )
    with pytest.raises(InvalidRequest, match="TRAILER"):
        payload.open_body(
            sigv4.Request.from_target(
                "PUT",
                "/b/k",
                [
                    ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                    ("x-amz-trailer", "x-amz-checksum-crc32"),
                ],
            ),
            None,
        )
    anonymous_signed_chunks = sigv4.Request.from_target(
        "PUT", "/b/k", [("x-amz-content-sha256", SIGNED), ("x-amz-decoded-content-length", "3")]
    )
    with pytest.raises(AccessDenied):
        payload.open_body(anonymous_signed_chunks, None)
