"""atoll.gateway.sigv4 against botocore, the signer boto3 and the AWS CLI use: requests
and presigned URLs signed by botocore verify, and Atoll's signer produces exactly what
botocore produces (the benchmark's lean client is checked against boto3 this way).

botocore reads the real clock when it signs; each test takes the time botocore signed
at from the request (`X-Amz-Date`) and passes it as `now_s`, so nothing here depends on
when the test runs. The last group lets a real boto3 client build its requests
(PutObject over http and https, with boto3's default checksum behaviour) and captures
them at botocore's `before-send` event, answering with a canned 200 so that nothing is
sent; the verifier and body reader then check what boto3 would have put on the wire.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, Sha256Checksum

from atoll.gateway import payload, sigv4
from atoll.gateway.checksums import Algorithm
from atoll.gateway.errors import (
    AccessDenied,
    BadDigest,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)

AK = "AKIDATOLLTEST"
SK = "botocore-test-secret/+="
REGION = "us-east-1"
ENDPOINT = "http://127.0.0.1:9000"


def lookup(access_key: str) -> str | None:
    return SK if access_key == AK else None


def text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def as_request(
    method: str, url: str, headers: Iterable[tuple[str | bytes, str | bytes]] = ()
) -> sigv4.Request:
    """What the HTTP server would see: the path and query as sent, every header, and
    the Host header the HTTP client adds from the URL."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    pairs = [(text(n), text(v)) for n, v in headers]
    return sigv4.Request.from_target(method, target, [("Host", parts.netloc), *pairs])


def now_of(request: sigv4.Request) -> float:
    amz_date = request.headers.get("x-amz-date") or dict(sigv4.decoded_query(request)).get(
        "X-Amz-Date", ""
    )
    when = sigv4.parse_amz_date(amz_date)
    assert when is not None
    return when


def botocore_signed(
    method: str, url: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
) -> AWSRequest:
    request = AWSRequest(method, url, data=body)
    for name, value in headers or []:
        request.headers[name] = value  # a repeated name adds a second value
    S3SigV4Auth(Credentials(AK, SK), "s3", REGION).add_auth(request)
    return request


CASES = [
    ("GET", "/bucket/key", b"", []),
    ("GET", "/bucket?list-type=2&prefix=a%2Fb%20c&delimiter=%2F&encoding-type=url", b"", []),
    ("PUT", "/bucket/a%20key%2Bwith%24odd~chars/%E2%82%AC.txt", b"data", []),
    ("PUT", "/bucket/k?partNumber=3&uploadId=abc%2Bdef%3D%3D", b"x" * 1000, []),
    ("POST", "/bucket/k?uploads", b"", [("Content-Type", "application/octet-stream")]),
    ("POST", "/bucket?delete", b"<Delete/>", [("Content-MD5", "ePbrFwvNFIRnzBrIv+T8Ag==")]),
    ("DELETE", "/bucket/k?versionId=null", b"", [("x-amz-meta-a", "  spaced    out  ")]),
    ("PUT", "/bucket/k", b"", [("x-amz-meta-r", "one"), ("x-amz-meta-r", "two")]),
    ("GET", "/bucket/k", b"", [("Range", "bytes=0-9"), ("If-None-Match", '"abc"')]),
    ("HEAD", "/", b"", []),
]


@pytest.mark.parametrize(("method", "target", "body", "headers"), CASES)
def test_requests_signed_by_botocore_verify(
    method: str, target: str, body: bytes, headers: list[tuple[str, str]]
) -> None:
    signed = botocore_signed(method, ENDPOINT + target, body, headers)
    request = as_request(method, signed.url, signed.headers.items())
    auth = sigv4.verify_header_auth(request, lookup, now_of(request))
    assert auth.access_key == AK
    reader = payload.open_body(request, auth)
    assert b"".join(reader.feed(body)) == body
    reader.finish()  # botocore signed the payload's SHA-256: it matches


@pytest.mark.parametrize(("method", "target", "body", "headers"), CASES)
def test_atoll_signs_exactly_as_botocore(
    method: str, target: str, body: bytes, headers: list[tuple[str, str]]
) -> None:
    theirs = botocore_signed(method, ENDPOINT + target, body, headers)
    mine = sigv4.sign_request(
        as_request(method, ENDPOINT + target, headers),
        access_key=AK,
        secret_key=SK,
        region=REGION,
        now_s=now_of(as_request(method, theirs.url, theirs.headers.items())),
        payload_hash=text(theirs.headers["X-Amz-Content-SHA256"]),
    )
    assert mine.headers.get("authorization") == text(theirs.headers["Authorization"])


def test_a_path_botocore_signs_as_sent_verifies_through_the_as_sent_form() -> None:
    # botocore signs an S3 path exactly as given; these characters are not encoded
    # here, though the canonical form encodes them: the verifier's second form.
    signed = botocore_signed("GET", ENDPOINT + "/bucket/a!b(c)*'d")
    request = as_request("GET", signed.url, signed.headers.items())
    assert sigv4.canonical_uri(request.path) != request.path
    assert sigv4.verify_header_auth(request, lookup, now_of(request)).access_key == AK


def test_a_date_header_signed_by_botocore_verifies() -> None:
    # With a Date header botocore signs Date instead of adding X-Amz-Date.
    signed = botocore_signed("GET", ENDPOINT + "/b/k", headers=[("Date", "x")])
    assert "X-Amz-Date" not in signed.headers
    request = as_request("GET", signed.url, signed.headers.items())
    when = parsedate_to_datetime(request.headers.get("date") or "").timestamp()
    assert sigv4.verify_header_auth(request, lookup, when).access_key == AK


def test_a_wrong_secret_in_botocore_is_refused() -> None:
    request_ = AWSRequest("GET", ENDPOINT + "/b/k")
    S3SigV4Auth(Credentials(AK, "another-secret"), "s3", REGION).add_auth(request_)
    request = as_request("GET", request_.url, request_.headers.items())
    with pytest.raises(SignatureDoesNotMatch):
        sigv4.verify_header_auth(request, lookup, now_of(request))


# -- presigned URLs ------------------------------------------------------------------------


def botocore_presigned(method: str, url: str, expires_s: int) -> str:
    request = AWSRequest(method, url)
    S3SigV4QueryAuth(Credentials(AK, SK), "s3", REGION, expires=expires_s).add_auth(request)
    return str(request.url)


@pytest.mark.parametrize(
    "target",
    ["/bucket/key", "/bucket/k%20x/%E2%82%AC?versionId=null", "/b/k?partNumber=2&uploadId=u%2Fv"],
)
def test_urls_presigned_by_botocore_verify_until_they_expire(target: str) -> None:
    url = botocore_presigned("GET", ENDPOINT + target, 300)
    request = as_request("GET", url)
    now_s = now_of(request)
    assert sigv4.verify_presigned(request, lookup, now_s + 300).presigned
    with pytest.raises(AccessDenied, match="expired"):
        sigv4.verify_presigned(request, lookup, now_s + 301)


@pytest.mark.parametrize("target", ["/bucket/key", "/b/k?partNumber=2&uploadId=u%2Fv"])
def test_atoll_presigns_exactly_as_botocore(target: str) -> None:
    theirs = botocore_presigned("PUT", ENDPOINT + target, 900)
    path, _, query = target.partition("?")
    mine = sigv4.presign_url(
        method="PUT",
        endpoint=ENDPOINT,
        path=path,
        query=sigv4.parse_query(query),
        access_key=AK,
        secret_key=SK,
        region=REGION,
        now_s=now_of(as_request("PUT", theirs)),
        expires_s=900,
    )
    assert mine == theirs


def test_boto3_generate_presigned_url_verifies() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name=REGION,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    for operation in ("get_object", "put_object"):
        url = client.generate_presigned_url(
            operation, Params={"Bucket": "bucket", "Key": "dir/a key+€.txt"}, ExpiresIn=60
        )
        method = "GET" if operation == "get_object" else "PUT"
        request = as_request(method, url)
        assert sigv4.authenticate(request, lookup, now_of(request)) is not None


# -- boto3's own requests, captured before they are sent -------------------------------------


class _Empty:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


def client_for(endpoint: str, captured: list[tuple[sigv4.Request, bytes]]) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )

    def before_send(request: AWSRequest, **_: Any) -> AWSResponse:
        body = request.body
        data = body.read() if hasattr(body, "read") else (body or b"")
        captured.append((as_request(request.method, request.url, request.headers.items()), data))
        return AWSResponse(request.url, 200, {"ETag": '"0"'}, _Empty())

    client.meta.events.register("before-send.s3.*", before_send)
    return client


def read_body(
    request: sigv4.Request, raw: bytes, split: int = 7919
) -> tuple[bytes, payload.BodyResult]:
    auth = sigv4.authenticate(request, lookup, now_of(request))
    assert auth is not None
    reader = payload.open_body(request, auth, digests=[Algorithm.MD5])
    out = []
    for start in range(0, len(raw), split):
        out += [bytes(p) for p in reader.feed(raw[start : start + split])]
    return b"".join(out), reader.finish()


PAYLOAD = bytes(range(256)) * 300  # 76,800 bytes


def test_boto3_put_object_over_http_signs_the_payload_and_sends_a_crc32_header() -> None:
    captured: list[tuple[sigv4.Request, bytes]] = []
    client_for("http://127.0.0.1:9000", captured).put_object(
        Bucket="bucket", Key="dir/a key$+.bin", Body=PAYLOAD
    )
    ((request, raw),) = captured
    assert (
        sigv4.payload_mode(request.headers.get("x-amz-content-sha256") or "")
        is sigv4.PayloadMode.SIGNED
    )
    assert request.headers.get("x-amz-checksum-crc32") is not None
    data, result = read_body(request, raw)
    assert data == PAYLOAD
    assert result.checksum == (Algorithm.CRC32, zlib.crc32(PAYLOAD).to_bytes(4, "big"))
    tampered = raw[:100] + bytes([raw[100] ^ 1]) + raw[101:]
    with pytest.raises(XAmzContentSHA256Mismatch):
        read_body(request, tampered)


@pytest.mark.parametrize("algorithm", [None, "SHA256", "CRC32"])
def test_boto3_put_object_over_https_streams_an_unsigned_trailer(algorithm: str | None) -> None:
    captured: list[tuple[sigv4.Request, bytes]] = []
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    client_for("https://127.0.0.1:9000", captured).put_object(
        Bucket="bucket", Key="k", Body=io.BytesIO(PAYLOAD), **extra
    )
    ((request, raw),) = captured
    assert request.headers.get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    data, result = read_body(request, raw)
    assert data == PAYLOAD
    assert result.checksum is not None
    assert result.checksum[0] is Algorithm((algorithm or "CRC32").lower())
    flipped = raw.index(PAYLOAD[:64]) + 10
    tampered = raw[:flipped] + bytes([raw[flipped] ^ 0x41]) + raw[flipped + 1 :]
    with pytest.raises(BadDigest):
        read_body(request, tampered)


def test_boto3_reads_and_listings_verify() -> None:
    captured: list[tuple[sigv4.Request, bytes]] = []
    client = client_for("http://127.0.0.1:9000", captured)
    client.list_objects_v2(Bucket="bucket", Prefix="a/b c+", Delimiter="/", StartAfter="é")
    client.get_object(Bucket="bucket", Key="a/b c", Range="bytes=0-1")
    client.head_object(Bucket="bucket", Key="~tilde")
    client.delete_objects(Bucket="bucket", Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    for request, raw in captured:
        data, _ = read_body(request, raw)
        assert data == raw


@pytest.mark.parametrize("chunk_size", [1, 1000, 65536, 1 << 20])
@pytest.mark.parametrize("checksum", [Crc32Checksum, Sha256Checksum])
def test_bodies_encoded_by_botocore_aws_chunked_wrapper_decode(
    chunk_size: int, checksum: type[Any]
) -> None:
    name = "x-amz-checksum-crc32" if checksum is Crc32Checksum else "x-amz-checksum-sha256"
    content = PAYLOAD[: 5000 if chunk_size == 1 else None]
    raw = AwsChunkedWrapper(io.BytesIO(content), checksum, name, chunk_size).read()
    request = sigv4.Request.from_target(
        "PUT",
        "/b/k",
        [
            ("Host", "h"),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("x-amz-trailer", name),
            ("x-amz-decoded-content-length", str(len(content))),
        ],
    )
    reader = payload.open_body(request, None)
    assert b"".join(reader.feed(raw)) == content
    assert reader.finish().checksum is not None
