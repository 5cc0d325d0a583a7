"""The S3 API over HTTP against a real cluster (issue 5 §2, §3): every operation the
gateway serves, through boto3 and through raw requests signed with `atoll.gateway.
sigv4` and sent with aiohttp (so the bytes on the wire are exactly the test's: aws-
chunked bodies with chunk signatures, unsigned trailers, expired presigned URLs).

Every negative test checks the S3 error code and HTTP status, and that nothing was
stored. One cluster (3 nodes x 2 devices, S3 on every node) serves the whole module;
each test works in buckets of its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import aiohttp
import boto3
import crc32c
import pytest
import yarl
from botocore.config import Config
from botocore.exceptions import ClientError
from kv_cluster import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, Cluster
from multidict import CIMultiDict

from atoll.gateway import payload, sigv4

SRC = str(Path(__file__).resolve().parents[2] / "src")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

REGION = "us-east-1"
ACCESS_KEY = ROOT_ACCESS_KEY
SECRET_KEY = ROOT_SECRET_KEY
REQUEST_TIMEOUT_S = 30.0
MiB = 1024 * 1024
PART_BYTES = 5 * MiB


# -- the endpoint ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    @property
    def code(self) -> str | None:
        """The S3 error code of an error document, else None."""
        if not self.body.startswith(b"<?xml"):
            return None
        return ElementTree.fromstring(self.body).findtext("Code")


@dataclass(frozen=True)
class Endpoint:
    """One node's S3 endpoint and the root credentials."""

    url: str  # http://127.0.0.1:PORT
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    others: Sequence[str] = field(default_factory=tuple)  # the other nodes' endpoints
    rpc: Sequence[str] = field(default_factory=tuple)  # the nodes' atoll.rpc addresses

    @property
    def host(self) -> str:
        return yarl.URL(self.url).raw_authority

    def client(
        self, *, secret_key: str | None = None, url: str | None = None, **config: Any
    ) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=url or self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 1},
                s3={"addressing_style": "path"},
                **config,
            ),
        )

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        payload_hash: str | None = None,
        sign: bool = True,
        secret_key: str | None = None,
        now_s: float | None = None,
    ) -> RawResponse:
        """`method target` with exactly these headers and body, header-signed (the
        payload hash defaults to the body's SHA-256) unless `sign` is False."""
        request = sigv4.Request.from_target(method, target, [("host", self.host), *headers])
        if sign:
            request = sigv4.sign_request(
                request,
                access_key=self.access_key,
                secret_key=secret_key or self.secret_key,
                region=self.region,
                now_s=time.time() if now_s is None else now_s,
                payload_hash=payload_hash or hashlib.sha256(body).hexdigest(),
            )
        return send(method, self.url + target, list(request.headers), body)

    def stream_request(
        self, target: str, headers: Sequence[tuple[str, str]], payload_hash: str
    ) -> tuple[list[tuple[str, str]], sigv4.ChunkSigningContext]:
        """Headers of a PUT signed for an aws-chunked body, and the chunk context."""
        request = sigv4.Request.from_target("PUT", target, [("host", self.host), *headers])
        signed, context = sigv4.sign_request_streaming(
            request,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            now_s=time.time(),
            payload_hash=payload_hash,
        )
        return list(signed.headers), context


def send(method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> RawResponse:
    async def go() -> RawResponse:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session,
            session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers,
                data=body if body or method in ("PUT", "POST") else None,
                skip_auto_headers=("Content-Type",),
            ) as response,
        ):
            return RawResponse(
                response.status, CIMultiDict(response.headers), await response.read()
            )

    return asyncio.run(go())


@contextlib.contextmanager
def open_endpoint(root: Path) -> Iterator[Endpoint]:
    """A 3-node cluster (2 devices each) with an S3 gateway on every node, once every
    gateway answers; stopped at the end."""
    cluster = Cluster(root, size=3, devices_per_node=2, bootstrap=True, s3=True)
    cluster.start_all()
    try:

        async def wait_all() -> None:
            for node_id in cluster.nodes:
                await cluster.wait_s3(node_id)

        asyncio.run(wait_all())
        urls = [f"http://{node.s3}" for node in cluster.nodes.values()]
        rpc = tuple(node.rpc for node in cluster.nodes.values())
        yield Endpoint(urls[0], others=tuple(urls[1:]), rpc=rpc)
    finally:
        cluster.stop_all()


@pytest.fixture(scope="module")
def s3e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    with open_endpoint(tmp_path_factory.mktemp("s3")) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3(s3e: Endpoint) -> Any:
    return s3e.client()


_bucket_numbers = itertools.count(1)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"test-{os.getpid()}-{next(_bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name


# -- helpers -----------------------------------------------------------------------------------


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, int, dict[str, Any]]:
    """(code, HTTP status, the error response) of a boto3 call that must fail."""
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response


def assert_absent(s3: Any, bucket: str, key: str) -> None:
    """Nothing is stored under `key`: HEAD is 404 and a listing does not show it."""
    _, status, _ = error_of(s3.head_object, Bucket=bucket, Key=key)
    assert status == 404
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key[:1000])
    assert all(item["Key"] != key for item in listed.get("Contents", []))


def get_bytes(s3: Any, bucket: str, key: str, **kwargs: Any) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()
    return data


def quote_key(key: str) -> str:
    return sigv4.uri_encode(key, keep_slash=True)


# -- buckets -----------------------------------------------------------------------------------


def test_bucket_lifecycle(s3: Any, s3e: Endpoint) -> None:
    name = f"life-{os.getpid()}"
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_location(Bucket=name).get("LocationConstraint") is None
    code, status, _ = error_of(s3.create_bucket, Bucket=name)
    assert (code, status) == ("BucketAlreadyOwnedByYou", 409)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    code, status, _ = error_of(s3.delete_bucket, Bucket=name)
    assert (code, status) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=name, Key="k")
    response = s3.delete_bucket(Bucket=name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    code, status, _ = error_of(s3.head_bucket, Bucket=name)
    assert status == 404
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_parses_and_ignores_a_location_constraint(s3e: Endpoint, s3: Any) -> None:
    name = f"located-{os.getpid()}"
    body = (
        b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"
    )
    assert s3e.request("PUT", f"/{name}", body=body).status == 200
    s3.head_bucket(Bucket=name)
    bad = s3e.request("PUT", f"/{name}-bad", body=b"<CreateBucketConfiguration>")
    assert (bad.status, bad.code) == (400, "MalformedXML")
    assert error_of(s3.head_bucket, Bucket=f"{name}-bad")[1] == 404


def test_invalid_bucket_name_and_missing_bucket(s3: Any) -> None:
    code, status, _ = error_of(s3.create_bucket, Bucket="Not_A_Bucket")
    assert (code, status) == ("InvalidBucketName", 400)
    missing = f"missing-{os.getpid()}"
    code, status, _ = error_of(s3.put_object, Bucket=missing, Key="k", Body=b"x")
    assert (code, status) == ("NoSuchBucket", 404)
    code, status, _ = error_of(s3.list_objects_v2, Bucket=missing)
    assert (code, status) == ("NoSuchBucket", 404)
    assert error_of(s3.head_bucket, Bucket=missing)[1] == 404
    assert missing not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# -- objects: put, get, head ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 5 * MiB + 1])
def test_put_get_round_trip(s3: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert get_bytes(s3, bucket, f"obj-{size}") == data
    head = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
    assert head["ContentLength"] == size
    assert head["ETag"] == put["ETag"]


def test_metadata_and_content_headers(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="doc",
        Body=b"<p>hi</p>",
        ContentType="text/html",
        ContentLanguage="en",
        ContentDisposition='attachment; filename="a.html"',
        CacheControl="no-cache",
        Metadata={"Colour": "blue", "shape": "round"},
    )
    head = s3.head_object(Bucket=bucket, Key="doc")
    assert head["ContentType"] == "text/html"
    assert head["ContentLanguage"] == "en"
    assert head["ContentDisposition"] == 'attachment; filename="a.html"'
    assert head["CacheControl"] == "no-cache"
    assert head["Metadata"] == {"colour": "blue", "shape": "round"}
    assert head["AcceptRanges"] == "bytes"
    assert "StorageClass" not in head  # STANDARD is not announced
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="plain")["ContentType"] == "binary/octet-stream"
    got = s3.get_object(
        Bucket=bucket, Key="doc", ResponseContentType="text/plain", ResponseCacheControl="max-age=1"
    )
    assert (got["ContentType"], got["CacheControl"]) == ("text/plain", "max-age=1")


def test_special_keys(s3: Any, bucket: str) -> None:
    keys = ["a b", "a+b", "ü/ñ/字", "x%2Fy", "dots/../..", "q?x=1&y", "~tilde", "semi;colon"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert get_bytes(s3, bucket, key) == key.encode()
    listed = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())


def test_key_too_long_stores_nothing(s3: Any, bucket: str) -> None:
    code, status, _ = error_of(s3.put_object, Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert (code, status) == ("KeyTooLong", 400)
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")  # the limit itself is fine
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k" * 1024]


def test_ranges(s3: Any, bucket: str) -> None:
    data = os.urandom(300 * 1024)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    for spec, expected in [
        ("bytes=0-0", data[:1]),
        ("bytes=100-199", data[100:200]),
        ("bytes=-10", data[-10:]),
        ("bytes=1000-", data[1000:]),
        ("bytes=299000-999999999", data[299000:]),
    ]:
        got = s3.get_object(Bucket=bucket, Key="r", Range=spec)
        assert got["Body"].read() == expected, spec
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"].endswith(f"/{len(data)}")
    code, status, _ = error_of(s3.get_object, Bucket=bucket, Key="r", Range="bytes=400000-")
    assert (code, status) == ("InvalidRange", 416)


def test_conditional_reads(s3: Any, s3e: Endpoint, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")["ETag"]
    response = s3e.request("GET", f"/{bucket}/c", headers=[("if-none-match", etag)])
    assert response.status == 304
    assert response.headers["ETag"] == etag
    assert response.body == b""
    assert response.headers.get("x-amz-request-id")
    head = s3e.request("HEAD", f"/{bucket}/c", headers=[("if-none-match", etag)])
    assert (head.status, head.headers["ETag"]) == (304, etag)
    failed = s3e.request("GET", f"/{bucket}/c", headers=[("if-match", '"0000"')])
    assert (failed.status, failed.code) == (412, "PreconditionFailed")
    future = "Sat, 01 Jan 2101 00:00:00 GMT"
    past = "Thu, 01 Jan 1970 00:00:00 GMT"
    assert s3e.request("GET", f"/{bucket}/c", headers=[("if-modified-since", future)]).status == 304
    assert s3e.request("GET", f"/{bucket}/c", headers=[("if-unmodified-since", past)]).status == 412
    ok = s3e.request("GET", f"/{bucket}/c", headers=[("if-match", etag)])
    assert (ok.status, ok.body) == (200, b"conditional")


def test_conditional_writes(s3: Any, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="w", Body=b"one", IfNoneMatch="*")
    code, status, _ = error_of(s3.put_object, Bucket=bucket, Key="w", Body=b"two", IfNoneMatch="*")
    assert (code, status) == ("PreconditionFailed", 412)
    code, status, _ = error_of(s3.put_object, Bucket=bucket, Key="w", Body=b"two", IfMatch='"0123"')
    assert (code, status) == ("PreconditionFailed", 412)
    assert get_bytes(s3, bucket, "w") == b"one"
    s3.put_object(Bucket=bucket, Key="w", Body=b"three", IfMatch=first["ETag"])
    assert get_bytes(s3, bucket, "w") == b"three"


def test_head_errors_have_no_body(s3e: Endpoint, bucket: str) -> None:
    response = s3e.request("HEAD", f"/{bucket}/missing")
    assert response.status == 404
    assert response.body == b""
    assert response.headers.get("x-amz-request-id")
    assert response.headers.get("x-amz-id-2")
    get = s3e.request("GET", f"/{bucket}/missing")
    assert (get.status, get.code) == (404, "NoSuchKey")
    assert ElementTree.fromstring(get.body).findtext("RequestId") == get.headers["x-amz-request-id"]


def test_checksum_mode_returns_the_stored_checksum(s3: Any, bucket: str) -> None:
    data = b"checksummed" * 1000
    crc = b64(zlib.crc32(data).to_bytes(4, "big"))
    put = s3.put_object(Bucket=bucket, Key="sum", Body=data, ChecksumAlgorithm="CRC32")
    assert put["ChecksumCRC32"] == crc
    got = s3.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc
    assert got["Body"].read() == data
    head = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc


# -- authentication ------------------------------------------------------------------------


def test_wrong_secret_is_refused_and_stores_nothing(s3e: Endpoint, s3: Any, bucket: str) -> None:
    bad = s3e.client(secret_key="not-the-secret-at-all")
    code, status, _ = error_of(bad.put_object, Bucket=bucket, Key="k", Body=b"x")
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert_absent(s3, bucket, "k")


def test_unknown_key_anonymous_and_skewed_requests(s3e: Endpoint, s3: Any, bucket: str) -> None:
    unknown = Endpoint(s3e.url, access_key="nobody")
    response = unknown.request("PUT", f"/{bucket}/k", body=b"x")
    assert (response.status, response.code) == (403, "InvalidAccessKeyId")
    anonymous = s3e.request("PUT", f"/{bucket}/k", body=b"x", sign=False)
    assert (anonymous.status, anonymous.code) == (403, "AccessDenied")
    skewed = s3e.request("PUT", f"/{bucket}/k", body=b"x", now_s=time.time() - 3600)
    assert (skewed.status, skewed.code) == (403, "RequestTimeTooSkewed")
    assert_absent(s3, bucket, "k")


def test_presigned_get_and_put_with_a_plain_http_client(s3: Any, bucket: str) -> None:
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p k"})
    request = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        assert response.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p k"})
    with urllib.request.urlopen(get_url, timeout=REQUEST_TIMEOUT_S) as response:
        assert response.read() == b"presigned body"


def test_expired_presigned_url_is_refused(s3e: Endpoint, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="e", Body=b"x")
    for method, key in (("GET", "e"), ("PUT", "new")):
        url = sigv4.presign_url(
            method=method,
            endpoint=s3e.url,
            path=f"/{bucket}/{key}",
            access_key=s3e.access_key,
            secret_key=s3e.secret_key,
            region=s3e.region,
            now_s=time.time() - 3600,
            expires_s=60,
        )
        response = send(method, url, [], b"y" if method == "PUT" else b"")
        assert (response.status, response.code) == (403, "AccessDenied")
        assert b"expired" in response.body
    assert_absent(s3, bucket, "new")
    assert get_bytes(s3, bucket, "e") == b"x"


def test_bad_content_md5_stores_nothing(s3e: Endpoint, s3: Any, bucket: str) -> None:
    wrong = b64(hashlib.md5(b"other").digest())
    response = s3e.request(
        "PUT", f"/{bucket}/md5", headers=[("content-md5", wrong)], body=b"the body"
    )
    assert (response.status, response.code) == (400, "BadDigest")
    malformed = s3e.request(
        "PUT", f"/{bucket}/md5", headers=[("content-md5", "not base64")], body=b"the body"
    )
    assert (malformed.status, malformed.code) == (400, "InvalidDigest")
    code, status, _ = error_of(s3.put_object, Bucket=bucket, Key="md5", Body=b"a", ContentMD5=wrong)
    assert (code, status) == ("BadDigest", 400)
    assert_absent(s3, bucket, "md5")
    right = b64(hashlib.md5(b"the body").digest())
    ok = s3e.request("PUT", f"/{bucket}/md5", headers=[("content-md5", right)], body=b"the body")
    assert ok.status == 200
    assert get_bytes(s3, bucket, "md5") == b"the body"


def _chunked_body(context: sigv4.ChunkSigningContext | None, data: bytes, size: int) -> list[bytes]:
    encoder = payload.AwsChunkedEncoder(context)
    return [encoder.chunk(data[i : i + size]) for i in range(0, len(data), size)] + [
        encoder.finish()
    ]


def test_aws_chunked_signed_body(s3e: Endpoint, s3: Any, bucket: str) -> None:
    data = os.urandom(200 * 1024)
    for key, tamper in (("good", False), ("tampered", True)):
        headers, context = s3e.stream_request(
            f"/{bucket}/{key}",
            [
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", str(len(data))),
            ],
            sigv4.PayloadMode.STREAMING_SIGNED.value,
        )
        chunks = _chunked_body(context, data, 64 * 1024)
        if tamper:  # flip one data byte of the second chunk; its signature stays
            second = bytearray(chunks[1])
            second[-3] ^= 0x01
            chunks[1] = bytes(second)
        response = send("PUT", f"{s3e.url}/{bucket}/{key}", headers, b"".join(chunks))
        if tamper:
            assert (response.status, response.code) == (403, "SignatureDoesNotMatch")
            assert_absent(s3, bucket, key)
        else:
            assert response.status == 200, response.body
            assert response.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
            head = s3.head_object(Bucket=bucket, Key=key)
            assert "ContentEncoding" not in head  # aws-chunked is not the object's
            assert get_bytes(s3, bucket, key) == data


TRAILER_DIGESTS = {
    "crc32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "crc32c": lambda data: crc32c.crc32c(data).to_bytes(4, "big"),
    "sha256": lambda data: hashlib.sha256(data).digest(),
}


@pytest.mark.parametrize("algorithm", sorted(TRAILER_DIGESTS))
def test_unsigned_payload_with_a_checksum_trailer(
    s3e: Endpoint, s3: Any, bucket: str, algorithm: str
) -> None:
    data = os.urandom(150 * 1024)
    trailer = f"x-amz-checksum-{algorithm}"
    good = b64(TRAILER_DIGESTS[algorithm](data))
    bad = b64(TRAILER_DIGESTS[algorithm](data + b"!"))
    for key, value in (("good", good), ("bad", bad)):
        target = f"/{bucket}/{key}"
        headers = [
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", str(len(data))),
            ("x-amz-trailer", trailer),
        ]
        encoder = payload.AwsChunkedEncoder()
        body = b"".join(
            [encoder.chunk(data[i : i + 65536]) for i in range(0, len(data), 65536)]
            + [encoder.finish({trailer: value})]
        )
        response = s3e.request(
            "PUT",
            target,
            headers=headers,
            body=body,
            payload_hash=sigv4.PayloadMode.STREAMING_UNSIGNED_TRAILER.value,
        )
        if key == "bad":
            assert (response.status, response.code) == (400, "BadDigest")
            assert_absent(s3, bucket, key)
        else:
            assert response.status == 200, response.body
            assert response.headers[trailer] == good
            assert get_bytes(s3, bucket, key) == data
            head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
            assert head[f"Checksum{algorithm.upper()}"] == good


def test_content_sha256_mismatch_stores_nothing(s3e: Endpoint, s3: Any, bucket: str) -> None:
    response = s3e.request(
        "PUT", f"/{bucket}/sha", body=b"body", payload_hash=hashlib.sha256(b"other").hexdigest()
    )
    assert (response.status, response.code) == (400, "XAmzContentSHA256Mismatch")
    assert_absent(s3, bucket, "sha")


async def _exchange(
    s3e: Endpoint, target: str, body: bytes
) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """Send the head of a PUT with `Expect: 100-continue` (not yet its body); the
    first response head the server sends back, and the connection."""
    headers = [("content-length", str(len(body))), ("expect", "100-continue")]
    request = sigv4.sign_request(
        sigv4.Request.from_target("PUT", target, [("host", s3e.host), *headers]),
        access_key=s3e.access_key,
        secret_key=s3e.secret_key,
        region=s3e.region,
        now_s=time.time(),
        payload_hash=hashlib.sha256(body).hexdigest(),
    )
    url = yarl.URL(s3e.url)
    assert url.host is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    lines = [f"PUT {target} HTTP/1.1", *(f"{n}: {v}" for n, v in request.headers)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
    return head, reader, writer


def test_expect_100_continue(s3e: Endpoint, s3: Any, bucket: str) -> None:
    data = os.urandom(100_000)
    missing = f"missing-{os.getpid()}"

    async def go() -> None:
        # Refused before the body: a final answer, no 100, and the connection closes.
        head, reader, writer = await _exchange(s3e, f"/{missing}/k", data)
        assert head.startswith(b"HTTP/1.1 404 "), head
        assert b"connection: close" in head.lower()
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert b"<Code>NoSuchBucket</Code>" in await reader.readexactly(length)
        assert await asyncio.wait_for(reader.read(), REQUEST_TIMEOUT_S) == b""  # closed
        writer.close()
        # Accepted: 100 Continue, then the body, then 200.
        head, reader, writer = await _exchange(s3e, f"/{bucket}/k", data)
        assert head == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(data)
        await writer.drain()
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
        assert final.startswith(b"HTTP/1.1 200 "), final
        writer.close()

    asyncio.run(go())
    assert get_bytes(s3, bucket, "k") == data
    assert error_of(s3.head_bucket, Bucket=missing)[1] == 404


# -- copies, deletes ---------------------------------------------------------------------------


def test_copy_object_metadata_directives(s3: Any, bucket: str) -> None:
    data = os.urandom(100 * 1024)
    etag = s3.put_object(
        Bucket=bucket, Key="src", Body=data, ContentType="text/x-src", Metadata={"a": "1"}
    )["ETag"]
    copied = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == etag
    head = s3.head_object(Bucket=bucket, Key="copy")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-src", {"a": "1"})
    assert get_bytes(s3, bucket, "copy") == data
    s3.copy_object(
        Bucket=bucket,
        Key="replaced",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        ContentType="text/x-new",
        Metadata={"b": "2"},
    )
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-new", {"b": "2"})
    code, status, _ = error_of(
        s3.copy_object,
        Bucket=bucket,
        Key="cond",
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceIfMatch='"00000000000000000000000000000000"',
    )
    assert (code, status) == ("PreconditionFailed", 412)
    assert_absent(s3, bucket, "cond")
    code, status, _ = error_of(
        s3.copy_object, Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "nope"}
    )
    assert (code, status) == ("NoSuchKey", 404)
    assert_absent(s3, bucket, "x")
    code, status, _ = error_of(
        s3.copy_object, Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"}
    )
    assert (code, status) == ("InvalidRequest", 400)


def test_delete_object_and_delete_objects(s3: Any, s3e: Endpoint, bucket: str) -> None:
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="a")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="a")["ResponseMetadata"]["HTTPStatusCode"] == 204
    result = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "b"}, {"Key": "never-there"}]}
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == ["b", "never-there"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_delete_objects_needs_a_digest_and_well_formed_xml(
    s3e: Endpoint, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    document = b"<Delete><Object><Key>keep</Key></Object></Delete>"
    undigested = s3e.request("POST", f"/{bucket}?delete", body=document)
    assert (undigested.status, undigested.code) == (400, "InvalidRequest")
    garbage = b"<Delete><Object><Key>keep</Key></Object>"
    malformed = s3e.request(
        "POST",
        f"/{bucket}?delete",
        headers=[("content-md5", b64(hashlib.md5(garbage).digest()))],
        body=garbage,
    )
    assert (malformed.status, malformed.code) == (400, "MalformedXML")
    crc = b64(zlib.crc32(document).to_bytes(4, "big"))
    wrong_crc = s3e.request(
        "POST",
        f"/{bucket}?delete",
        headers=[("x-amz-checksum-crc32", b64(b"\0\0\0\0"))],
        body=document,
    )
    assert (wrong_crc.status, wrong_crc.code) == (400, "BadDigest")
    assert get_bytes(s3, bucket, "keep") == b"x"
    ok = s3e.request(
        "POST", f"/{bucket}?delete", headers=[("x-amz-checksum-crc32", crc)], body=document
    )
    assert ok.status == 200
    assert_absent(s3, bucket, "keep")


# -- listings ----------------------------------------------------------------------------------


def _fill(s3: Any, bucket: str, keys: Sequence[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")


def test_list_objects_v1_and_v2_with_delimiters_and_pages(s3: Any, bucket: str) -> None:
    keys = [f"dir{d}/file{f:02d}" for d in range(3) for f in range(4)] + ["top1", "top2"]
    _fill(s3, bucket, keys)
    v2 = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["dir0/", "dir1/", "dir2/"]
    assert [c["Key"] for c in v2["Contents"]] == ["top1", "top2"]
    assert v2["KeyCount"] == 5
    seen: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 5}
    ):
        assert page["KeyCount"] <= 5
        seen += [c["Key"] for c in page.get("Contents", [])]
    assert seen == sorted(keys)
    seen = []
    for page in s3.get_paginator("list_objects").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 3}
    ):
        seen += [c["Key"] for c in page.get("Contents", [])]
        assert all("Owner" in c for c in page.get("Contents", []))
    assert seen == sorted(keys)
    prefixes: list[str] = []
    for page in s3.get_paginator("list_objects").paginate(
        Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}
    ):
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert prefixes == ["dir0/", "dir1/", "dir2/"]
    v2 = s3.list_objects_v2(Bucket=bucket, Prefix="dir1/", StartAfter="dir1/file01")
    assert [c["Key"] for c in v2["Contents"]] == ["dir1/file02", "dir1/file03"]
    owned = s3.list_objects_v2(Bucket=bucket, MaxKeys=1, FetchOwner=True)
    assert owned["Contents"][0]["Owner"]["ID"] and owned["IsTruncated"]
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket, MaxKeys=1)["Contents"][0]


def test_list_encoding_type_url(s3e: Endpoint, s3: Any, bucket: str) -> None:
    _fill(s3, bucket, ["a b/c+d", "x\x01y"])
    response = s3e.request("GET", f"/{bucket}?list-type=2&encoding-type=url")
    assert response.status == 200
    root = ElementTree.fromstring(response.body)
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    assert [k.text for k in root.findall("s3:Contents/s3:Key", ns)] == ["a%20b/c%2Bd", "x%01y"]
    # boto3 asks for encoding-type=url by itself, and decodes what it asked for.
    listed = [c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["a b/c+d", "x\x01y"]
    bad = s3e.request("GET", f"/{bucket}?list-type=2&encoding-type=base64")
    assert (bad.status, bad.code) == (400, "InvalidArgument")
    bad_token = s3e.request("GET", f"/{bucket}?list-type=2&continuation-token=garbage")
    assert (bad_token.status, bad_token.code) == (400, "InvalidArgument")


def test_list_object_versions_on_an_unversioned_bucket(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, ["v1", "v2", "v3"])
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [
        ("v1", "null", True),
        ("v2", "null", True),
        ("v3", "null", True),
    ]
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert page["IsTruncated"] and page["NextKeyMarker"] == "v2"
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker=page["NextKeyMarker"])
    assert [v["Key"] for v in rest["Versions"]] == ["v3"]
    # What bucket-emptying tools do next: DeleteObjects with VersionId null.
    s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]},
    )
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)


# -- multipart uploads ---------------------------------------------------------------------


def test_multipart_upload(s3: Any, bucket: str) -> None:
    parts_data = [os.urandom(PART_BYTES), os.urandom(PART_BYTES), os.urandom(1234)]
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key="mp", ContentType="video/x-test", Metadata={"m": "v"}
    )
    upload_id = upload["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("mp", upload_id)]
    etags = []
    for number, data in enumerate(parts_data, 1):
        part = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number, Body=data
        )
        assert part["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        etags.append(part["ETag"])
    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in parts["Parts"]] == [1, 2] and parts["IsTruncated"]
    rest = s3.list_parts(
        Bucket=bucket, Key="mp", UploadId=upload_id, PartNumberMarker=parts["NextPartNumberMarker"]
    )
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, 1234)]
    assert_absent(s3, bucket, "mp")  # not an object until completed
    completed = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    md5s = b"".join(hashlib.md5(d).digest() for d in parts_data)
    assert completed["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    whole = b"".join(parts_data)
    assert get_bytes(s3, bucket, "mp") == whole
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert (head["ContentType"], head["Metadata"], head["ContentLength"]) == (
        "video/x-test",
        {"m": "v"},
        len(whole),
    )
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert second["PartsCount"] == 3
    assert second["Body"].read() == parts_data[1]
    assert get_bytes(s3, bucket, "mp", Range=f"bytes={PART_BYTES - 5}-{PART_BYTES + 5}") == whole[PART_BYTES - 5 : PART_BYTES + 6]  # fmt: skip
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_multipart_errors_store_nothing(s3e: Endpoint, s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="bad")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="bad", UploadId=upload_id, PartNumber=1, Body=b"s")
    last = s3.upload_part(Bucket=bucket, Key="bad", UploadId=upload_id, PartNumber=2, Body=b"t")

    def complete(parts: list[dict[str, Any]]) -> tuple[str, int, dict[str, Any]]:
        return error_of(
            s3.complete_multipart_upload,
            Bucket=bucket,
            Key="bad",
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )

    assert complete([{"PartNumber": 1, "ETag": small["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}])[:2] == ("EntityTooSmall", 400)  # fmt: skip
    assert complete([{"PartNumber": 1, "ETag": last["ETag"]}])[:2] == ("InvalidPart", 400)
    assert complete([{"PartNumber": 3, "ETag": last["ETag"]}])[:2] == ("InvalidPart", 400)
    assert complete([{"PartNumber": 2, "ETag": last["ETag"]}, {"PartNumber": 1, "ETag": small["ETag"]}])[:2] == ("InvalidPartOrder", 400)  # fmt: skip
    malformed = s3e.request("POST", f"/{bucket}/bad?uploadId={upload_id}", body=b"<Complete")
    assert (malformed.status, malformed.code) == (400, "MalformedXML")
    assert_absent(s3, bucket, "bad")
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="bad", UploadId=upload_id)["Parts"]] == [1, 2]  # fmt: skip
    aborted = s3.abort_multipart_upload(Bucket=bucket, Key="bad", UploadId=upload_id)
    assert aborted["ResponseMetadata"]["HTTPStatusCode"] == 204
    code, status, _ = error_of(
        s3.upload_part, Bucket=bucket, Key="bad", UploadId=upload_id, PartNumber=1, Body=b"x"
    )
    assert (code, status) == ("NoSuchUpload", 404)
    code, status, _ = error_of(s3.abort_multipart_upload, Bucket=bucket, Key="bad", UploadId="0" * 32)  # fmt: skip
    assert (code, status) == ("NoSuchUpload", 404)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert_absent(s3, bucket, "bad")


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    source = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    whole = s3.upload_part_copy(
        Bucket=bucket,
        Key="assembled",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "source"},
    )
    ranged = s3.upload_part_copy(
        Bucket=bucket,
        Key="assembled",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange="bytes=10-109",
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="assembled",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": whole["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": ranged["CopyPartResult"]["ETag"]},
            ]
        },
    )
    assert get_bytes(s3, bucket, "assembled") == source + source[10:110]


def test_conditional_complete_multipart_upload(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="exists", Body=b"x")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="exists")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="exists", UploadId=upload_id, PartNumber=1, Body=b"y")
    code, status, _ = error_of(
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="exists",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        IfNoneMatch="*",
    )
    assert (code, status) == ("PreconditionFailed", 412)
    assert get_bytes(s3, bucket, "exists") == b"x"


# -- the rest of the protocol ----------------------------------------------------------------


def test_unknown_operations_are_not_implemented(s3e: Endpoint, bucket: str) -> None:
    for target in (f"/{bucket}?acl", f"/{bucket}?tagging", f"/{bucket}/k?acl"):
        response = s3e.request("GET", target)
        assert (response.status, response.code) == (501, "NotImplemented"), target
    response = s3e.request("PUT", f"/{bucket}/k?tagging", body=b"<Tagging/>")
    assert (response.status, response.code) == (501, "NotImplemented")
    response = s3e.request("PATCH", f"/{bucket}/k")
    assert (response.status, response.code) == (405, "MethodNotAllowed")


def test_object_tags_read_as_an_empty_set(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    code, status, _ = error_of(s3.get_object_tagging, Bucket=bucket, Key="missing")
    assert (code, status) == ("NoSuchKey", 404)


def test_storage_classes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="rr", Body=b"x" * 100_000, StorageClass="REDUCED_REDUNDANCY")
    assert s3.head_object(Bucket=bucket, Key="rr")["StorageClass"] == "REDUCED_REDUNDANCY"
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert listed[0]["StorageClass"] == "REDUCED_REDUNDANCY"
    code, status, _ = error_of(
        s3.put_object, Bucket=bucket, Key="odd", Body=b"x", StorageClass="DEEP_ARCHIVE"
    )
    assert (code, status) == ("InvalidStorageClass", 400)
    assert_absent(s3, bucket, "odd")


def test_bucket_set_pool_sends_new_objects_to_that_pool(s3e: Endpoint, bucket: str) -> None:
    """`atoll bucket set-pool` (the real command): objects written after it go to the
    pool, whatever gateway takes them; an unknown pool or bucket fails with exit 1."""
    env = {**os.environ, "PYTHONPATH": SRC}
    atoll = [sys.executable, "-m", "atoll.cli", "bucket", "set-pool"]
    where = ["--rpc", ",".join(s3e.rpc)]
    done = subprocess.run(
        [*atoll, bucket, "replicated", *where], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr + done.stdout
    for url in (s3e.url, *s3e.others):
        s3e.client(url=url).put_object(Bucket=bucket, Key=f"k-{url}", Body=b"x" * 100_000)
        head = s3e.client().head_object(Bucket=bucket, Key=f"k-{url}")
        assert head["StorageClass"] == "REDUCED_REDUNDANCY"
    for args in ([bucket, "no-such-pool"], ["no-such-bucket", "standard"]):
        failed = subprocess.run(
            [*atoll, *args, *where], env=env, capture_output=True, text=True, timeout=60
        )
        assert failed.returncode == 1, failed.stdout


def test_every_node_serves_every_request(s3e: Endpoint, bucket: str) -> None:
    data = os.urandom(200 * 1024)
    s3e.client().put_object(Bucket=bucket, Key="shared", Body=data)
    for url in s3e.others:
        other = s3e.client(url=url)
        assert get_bytes(other, bucket, "shared") == data
        other.put_object(Bucket=bucket, Key=f"from-{yarl.URL(url).port}", Body=b"x")
    keys = [c["Key"] for c in s3e.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 1 + len(s3e.others)


def test_request_ids_are_distinct(s3e: Endpoint) -> None:
    ids = {s3e.request("GET", "/").headers["x-amz-request-id"] for _ in range(5)}
    assert len(ids) == 5
