"""atoll.gateway.sigv4 against AWS's published SigV4 examples for S3 (aws_examples.py):
the verifier accepts each example request, and the signer reproduces each signature,
both from the example's inputs only."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import aws_examples as ex

from atoll.gateway import payload, sigv4
from atoll.gateway.checksums import Algorithm
from atoll.gateway.errors import SignatureDoesNotMatch


def example_request(example: ex.HeaderExample, signature: str | None = None) -> sigv4.Request:
    auth = ex.authorization(example.signed_headers, signature or example.signature)
    return sigv4.Request.from_target(
        example.method, example.target, [*example.headers, ("Authorization", auth)]
    )


@pytest.mark.parametrize("example", ex.HEADER_EXAMPLES, ids=lambda e: e.name)
def test_the_verifier_accepts_the_published_header_examples(example: ex.HeaderExample) -> None:
    auth = sigv4.verify_header_auth(example_request(example), ex.secrets, ex.NOW_S)
    assert auth.access_key == ex.ACCESS_KEY
    assert not auth.presigned


@pytest.mark.parametrize("example", ex.HEADER_EXAMPLES, ids=lambda e: e.name)
def test_a_changed_signature_digit_is_refused(example: ex.HeaderExample) -> None:
    wrong = example.signature[:-1] + ("0" if example.signature[-1] != "0" else "1")
    with pytest.raises(SignatureDoesNotMatch) as caught:
        sigv4.verify_header_auth(example_request(example, wrong), ex.secrets, ex.NOW_S)
    # S3 reports what it signed, so a client can see where it differs.
    assert caught.value.details["SignatureProvided"] == wrong
    assert caught.value.details["StringToSign"].startswith(
        f"AWS4-HMAC-SHA256\n{ex.AMZ_DATE}\n20130524/us-east-1/s3/aws4_request\n"
    )


@pytest.mark.parametrize(
    "example", [e for e in ex.HEADER_EXAMPLES if e.canonical_request_sha256], ids=lambda e: e.name
)
def test_the_canonical_request_hashes_to_the_published_value(example: ex.HeaderExample) -> None:
    request = example_request(example)
    signed = example.signed_headers.split(";")
    canonical = sigv4.canonical_request(
        request.method,
        sigv4.canonical_uri(request.path),
        sigv4.canonical_query(request.query),
        sigv4.canonical_headers(request.headers, signed),
        signed,
        request.headers.get("x-amz-content-sha256") or "",
    )
    assert hashlib.sha256(canonical.encode()).hexdigest() == example.canonical_request_sha256


@pytest.mark.parametrize("example", ex.HEADER_EXAMPLES, ids=lambda e: e.name)
def test_the_signer_reproduces_the_published_signatures(example: ex.HeaderExample) -> None:
    request = sigv4.Request.from_target(example.method, example.target, example.headers)
    signed = sigv4.sign_request(
        request,
        access_key=ex.ACCESS_KEY,
        secret_key=ex.SECRET_KEY,
        region=ex.REGION,
        now_s=ex.NOW_S,
        payload_hash=request.headers.get("x-amz-content-sha256") or "",
    )
    assert signed.headers.get("authorization") == (
        f"AWS4-HMAC-SHA256 Credential={ex.ACCESS_KEY}/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders={example.signed_headers}, Signature={example.signature}"
    )


def test_the_put_example_payload_hash_is_its_body() -> None:
    # The example's x-amz-content-sha256 is the SHA-256 of its body: the body reader
    # accepts that body and refuses any other.
    example = next(e for e in ex.HEADER_EXAMPLES if e.name == "put-object")
    request = example_request(example)
    auth = sigv4.verify_header_auth(request, ex.secrets, ex.NOW_S)
    reader = payload.open_body(request, auth)
    assert b"".join(reader.feed(ex.PUT_OBJECT_BODY)) == ex.PUT_OBJECT_BODY
    assert reader.finish().digests[Algorithm.MD5] == hashlib.md5(ex.PUT_OBJECT_BODY).digest()


def test_the_presigned_example_verifies_and_is_reproduced() -> None:
    request = sigv4.Request.from_target("GET", ex.PRESIGNED_TARGET, [("Host", ex.VHOST)])
    auth = sigv4.verify_presigned(request, ex.secrets, ex.NOW_S)
    assert (auth.access_key, auth.presigned, auth.payload_hash) == (
        ex.ACCESS_KEY,
        True,
        "UNSIGNED-PAYLOAD",
    )
    url = sigv4.presign_url(
        method="GET",
        endpoint="https://" + ex.VHOST,
        path="/test.txt",
        access_key=ex.ACCESS_KEY,
        secret_key=ex.SECRET_KEY,
        region=ex.REGION,
        now_s=ex.NOW_S,
        expires_s=ex.PRESIGNED_EXPIRES_S,
    )
    assert url == ex.PRESIGNED_URL


def signed_chunked_request() -> sigv4.Request:
    auth = ex.authorization(ex.SIGNED_CHUNKED_SIGNED_HEADERS, ex.SEED_SIGNATURE)
    return sigv4.Request.from_target(
        "PUT", ex.CHUNKED_TARGET, [*ex.SIGNED_CHUNKED_HEADERS, ("Authorization", auth)]
    )


def trailer_chunked_request() -> sigv4.Request:
    auth = ex.authorization(ex.TRAILER_CHUNKED_SIGNED_HEADERS, ex.TRAILER_SEED_SIGNATURE)
    return sigv4.Request.from_target(
        "PUT", ex.CHUNKED_TARGET, [*ex.TRAILER_CHUNKED_HEADERS, ("Authorization", auth)]
    )


def test_the_chunked_example_seed_signature_verifies() -> None:
    auth = sigv4.verify_header_auth(signed_chunked_request(), ex.secrets, ex.NOW_S)
    assert auth.chunk_context is not None
    assert auth.chunk_context.seed_signature == ex.SEED_SIGNATURE


def test_the_chunked_example_body_decodes_with_its_chunk_signatures() -> None:
    request = signed_chunked_request()
    body = ex.chunked_body(ex.CHUNK_SIGNATURES)
    assert len(body) == ex.SIGNED_CHUNKED_CONTENT_LENGTH
    reader = payload.open_body(request, sigv4.verify_header_auth(request, ex.secrets, ex.NOW_S))
    assert b"".join(reader.feed(body)) == ex.CHUNKED_PAYLOAD
    result = reader.finish()
    assert (result.length_bytes, result.checksum, result.trailers) == (66560, None, {})


def test_the_encoder_reproduces_the_chunked_example() -> None:
    request = sigv4.Request.from_target("PUT", ex.CHUNKED_TARGET, ex.SIGNED_CHUNKED_HEADERS)
    signed, context = sigv4.sign_request_streaming(
        request,
        access_key=ex.ACCESS_KEY,
        secret_key=ex.SECRET_KEY,
        region=ex.REGION,
        now_s=ex.NOW_S,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    )
    assert context.seed_signature == ex.SEED_SIGNATURE
    encoder = payload.AwsChunkedEncoder(context)
    body = encoder.chunk(b"a" * 65536) + encoder.chunk(b"a" * 1024) + encoder.finish()
    assert body == ex.chunked_body(ex.CHUNK_SIGNATURES)
    assert (signed.headers.get("authorization") or "").endswith(ex.SEED_SIGNATURE)


def test_the_trailer_example_verifies_its_chunks_trailer_signature_and_crc32c() -> None:
    request = trailer_chunked_request()
    auth = sigv4.verify_header_auth(request, ex.secrets, ex.NOW_S)
    assert auth.chunk_context is not None
    assert auth.chunk_context.seed_signature == ex.TRAILER_SEED_SIGNATURE
    reader = payload.open_body(request, auth)
    assert b"".join(reader.feed(ex.trailer_body())) == ex.CHUNKED_PAYLOAD
    result = reader.finish()
    assert result.trailers == {"x-amz-checksum-crc32c": ex.TRAILER_CRC32C}
    assert result.checksum == (Algorithm.CRC32C, bytes.fromhex("b0e3bcfd"))


def test_the_encoder_reproduces_the_trailer_example_signatures() -> None:
    request = sigv4.Request.from_target("PUT", ex.CHUNKED_TARGET, ex.TRAILER_CHUNKED_HEADERS)
    _, context = sigv4.sign_request_streaming(
        request,
        access_key=ex.ACCESS_KEY,
        secret_key=ex.SECRET_KEY,
        region=ex.REGION,
        now_s=ex.NOW_S,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    )
    assert context.seed_signature == ex.TRAILER_SEED_SIGNATURE
    encoder = payload.AwsChunkedEncoder(context)
    body = (
        encoder.chunk(b"a" * 65536)
        + encoder.chunk(b"a" * 1024)
        + encoder.finish({"x-amz-checksum-crc32c": ex.TRAILER_CRC32C})
    )
    # The SDKs' layout: trailers right after the final chunk, then an empty line.
    assert body == ex.chunked_body(
        ex.TRAILER_CHUNK_SIGNATURES,
        b"x-amz-checksum-crc32c:" + ex.TRAILER_CRC32C.encode() + b"\r\n"
        b"x-amz-trailer-signature:" + ex.TRAILER_SIGNATURE.encode() + b"\r\n\r\n",
    )
