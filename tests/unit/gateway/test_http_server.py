"""atoll.gateway.http.S3Server without sockets: requests made with aiohttp's
`make_mocked_request` (a request object over an in-memory body and a recording
writer) go through `S3Server.handle` to a small in-memory store. Covers the shell's
own decisions: request ids, authentication before anything else, the error table
(S3 errors, object-format values, outages, bugs), HEAD errors without a body, the
in-flight limit, 100-continue, and bodies streamed through the payload checks. The
full API against the real store is tests/integration/test_s3_api.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any
from xml.etree import ElementTree

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from atoll.gateway import http, sigv4
from atoll.gateway.checksums import Algorithm
from atoll.gateway.errors import InvalidStorageClass, InvalidURI, NoSuchKey, S3Error
from atoll.gateway.http import S3Limits
from atoll.gateway.store import Body, ObjectStore
from atoll.kv.errors import KvUnavailable
from atoll.objects import errors as objects_errors
from atoll.objects.index import ListQuery, ObjectPage
from atoll.objects.manifest import (
    BucketRecord,
    Manifest,
    ManifestSummary,
    ObjectMetadata,
)

NOW_S = 1_700_000_000.0
ACCESS_KEY, SECRET_KEY = "AKID", "secret-key-for-tests"
HOST = "s3.test:9000"
REQUEST_ID = "0001020304050607"


class MemoryStore(ObjectStore):
    """Just enough of the store: buckets, whole-object puts and gets. `fail` makes
    every call raise it; `gate` makes list_buckets wait."""

    def __init__(self) -> None:
        self.buckets = {"bkt": BucketRecord("bkt", "standard", "atoll", 1_000)}
        self.objects: dict[str, tuple[Manifest, bytes]] = {}
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.pieces_taken = 0

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    async def list_buckets(self) -> list[BucketRecord]:
        self._check()
        if self.gate is not None:
            self.entered.set()
            await self.gate.wait()
        return list(self.buckets.values())

    async def list_objects(self, bucket: str, query: ListQuery) -> ObjectPage[ManifestSummary]:
        self._check()
        return ObjectPage((), (), False, None)

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        metadata: ObjectMetadata,
        storage_class: str | None = None,
        conditions: Any = None,
    ) -> Manifest:
        self._check()
        if storage_class not in (None, "STANDARD"):
            raise InvalidStorageClass()
        data = bytearray()
        async for piece in body:
            self.pieces_taken += 1
            data += piece
        result = body.result()  # only now is the body known to be good
        manifest = Manifest(
            bucket,
            key,
            "v1",
            result.length_bytes,
            result.digests[Algorithm.MD5].hex(),
            2_000,
            "STANDARD",
            metadata,
            inline=bytes(data),
        )
        self.objects[key] = (manifest, bytes(data))
        return manifest

    async def head_object(self, bucket: str, key: str) -> Manifest:
        self._check()
        if key not in self.objects:
            raise NoSuchKey()
        return self.objects[key][0]

    async def read_object(  # type: ignore[override]
        self, manifest: Manifest, first: int = 0, end: int | None = None
    ) -> AsyncIterator[memoryview]:
        data = memoryview(self.objects[manifest.key][1])[first:end]
        for at in range(0, len(data), 3):
            yield data[at : at + 3]


class RecordingWriter:
    """The response writer `make_mocked_request` needs: keeps what is written."""

    def __init__(self) -> None:
        self.status_line = ""
        self.headers: Any = None
        self.body = bytearray()
        self.length: int | None = None
        self.output_size = 0
        self.buffer_size = 0
        self.eof = False

    async def write_headers(self, status_line: str, headers: Any) -> None:
        self.status_line, self.headers = status_line, headers

    def send_headers(self) -> None:
        pass

    async def write(self, data: bytes) -> None:
        self.body += data
        self.output_size += len(data)

    async def write_eof(self, data: bytes = b"") -> None:
        self.body += data
        self.eof = True

    async def drain(self) -> None:
        pass

    def enable_chunking(self) -> None:
        pass


class _Protocol:
    """What aiohttp's StreamReader asks of its protocol."""

    _reading_paused = False
    connected = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


def make_server(store: ObjectStore, **kwargs: Any) -> http.S3Server:
    return http.S3Server(
        store,
        {ACCESS_KEY: SECRET_KEY}.get,
        clock_s=lambda: NOW_S,
        entropy=lambda n: bytes(range(n)),
        **kwargs,
    )


def signed_headers(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    host: str = HOST,
) -> list[tuple[str, str]]:
    request = sigv4.Request.from_target(method, target, [("host", host), *headers])
    signed = sigv4.sign_request(
        request,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region="us-east-1",
        now_s=NOW_S,
        payload_hash=hashlib.sha256(body).hexdigest(),
    )
    return list(signed.headers)


async def call(
    server: http.S3Server,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    sign: bool = True,
    host: str = HOST,
    eof: bool = True,
) -> tuple[web.StreamResponse, RecordingWriter, bytes]:
    """(response, writer, body): the body is what the writer got for a streamed
    response, else the response's own."""
    all_headers = (
        signed_headers(method, target, headers, body, host=host)
        if sign
        else [("host", host), *headers]
    )
    if body and not any(name.lower() == "content-length" for name, _ in all_headers):
        all_headers.append(("content-length", str(len(body))))
    reader = StreamReader(_Protocol(), 1 << 20, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    if body:
        reader.feed_data(body)
    if eof:
        reader.feed_eof()
    writer = RecordingWriter()
    request = make_mocked_request(method, target, all_headers, payload=reader, writer=writer)
    response = await server.handle(request)
    if response.prepared:
        return response, writer, bytes(writer.body)
    assert isinstance(response, web.Response)
    return response, writer, response.body or b""  # type: ignore[return-value]


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def code_of(body: bytes) -> str | None:
    return ElementTree.fromstring(body).findtext("Code")


# -- authentication and request ids ------------------------------------------------------------


def test_anonymous_requests_are_access_denied_with_the_request_id() -> None:
    async def body() -> None:
        response, _, document = await call(make_server(MemoryStore()), "GET", "/", sign=False)
        assert response.status == 403
        assert code_of(document) == "AccessDenied"
        assert response.headers["x-amz-request-id"] == REQUEST_ID
        assert ElementTree.fromstring(document).findtext("RequestId") == REQUEST_ID
        assert response.headers["x-amz-id-2"]

    run(body())


def test_a_signed_list_buckets() -> None:
    async def body() -> None:
        response, _, document = await call(make_server(MemoryStore()), "GET", "/")
        assert response.status == 200
        assert response.headers["x-amz-request-id"] == REQUEST_ID
        assert response.content_type == "application/xml"
        assert b"<Name>bkt</Name>" in document

    run(body())


def test_authentication_comes_before_routing() -> None:
    async def body() -> None:
        server = make_server(MemoryStore())
        unsigned = await call(server, "GET", "/bkt?tagging", sign=False)
        assert code_of(unsigned[2]) == "AccessDenied"
        signed = await call(server, "GET", "/bkt?tagging")
        assert (signed[0].status, code_of(signed[2])) == (501, "NotImplemented")

    run(body())


def test_virtual_host_style_addressing() -> None:
    async def body() -> None:
        server = make_server(MemoryStore(), base_domain="s3.test")
        response, _, document = await call(server, "GET", "/?list-type=2", host="bkt.s3.test:9000")
        assert response.status == 200
        assert b"<Name>bkt</Name>" in document

    run(body())


# -- the error table -----------------------------------------------------------------------------


def test_a_bug_is_internal_error_logged_but_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    store.fail = RuntimeError("secret detail of the bug")

    async def body() -> None:
        response, _, document = await call(make_server(store), "GET", "/")
        assert (response.status, code_of(document)) == (500, "InternalError")
        assert b"secret detail" not in document and b"Traceback" not in document

    with caplog.at_level(logging.ERROR, logger="atoll.gateway.http"):
        run(body())
    assert REQUEST_ID in caplog.text and "secret detail of the bug" in caplog.text
    assert caplog.records[0].exc_info is not None


def test_outages_are_service_unavailable() -> None:
    store = MemoryStore()
    store.fail = KvUnavailable("no leader")

    async def body() -> None:
        response, _, document = await call(make_server(store), "GET", "/")
        assert (response.status, code_of(document)) == (503, "ServiceUnavailable")

    run(body())


def test_head_errors_have_no_body() -> None:
    async def body() -> None:
        response, _, document = await call(make_server(MemoryStore()), "HEAD", "/bkt/missing")
        assert response.status == 404
        assert document == b""
        assert response.headers["x-amz-request-id"] == REQUEST_ID

    run(body())


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (objects_errors.InvalidBucketName("B", "uppercase"), "InvalidBucketName"),
        (objects_errors.KeyTooLong(1025, 1024), "KeyTooLong"),
        (objects_errors.MetadataTooLarge(3000, 2048), "MetadataTooLarge"),
        (objects_errors.InvalidUploadId("x"), "NoSuchUpload"),
        (objects_errors.InvalidObjectKey("empty"), "InvalidArgument"),
        (objects_errors.InvalidListArgument("max-keys"), "InvalidArgument"),
        (objects_errors.InvalidContinuationToken("bad"), "InvalidArgument"),
        (objects_errors.InvalidPartNumber(0), "InvalidArgument"),
    ],
)
def test_object_format_values_have_s3_codes(error: Exception, code: str) -> None:
    mapped = http.s3_error_for(error)
    assert mapped is not None and mapped.code == code


def test_every_request_value_error_of_the_object_formats_is_mapped() -> None:
    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    values = [
        c
        for c in subclasses(objects_errors.ObjectsError)
        if not issubclass(c, objects_errors.RecordError) and c is not objects_errors.ObjectsError
    ]
    assert values, "the object formats define request-value errors"
    for cls in values:
        assert isinstance(http.s3_error_for(_instance(cls)), S3Error), cls


def _instance(cls: type) -> objects_errors.ObjectsError:
    samples: dict[type, objects_errors.ObjectsError] = {
        objects_errors.InvalidBucketName: objects_errors.InvalidBucketName("B", "r"),
        objects_errors.KeyTooLong: objects_errors.KeyTooLong(2000, 1024),
        objects_errors.MetadataTooLarge: objects_errors.MetadataTooLarge(3000, 2048),
        objects_errors.InvalidUploadId: objects_errors.InvalidUploadId("u"),
        objects_errors.InvalidPartNumber: objects_errors.InvalidPartNumber(0),
    }
    error = samples.get(cls)
    return error if error is not None else cls("sample")  # type: ignore[no-any-return]


def test_record_errors_and_the_unknown_are_not_mapped() -> None:
    assert http.s3_error_for(objects_errors.RecordError("damaged")) is None
    assert http.s3_error_for(ValueError("bug")) is None


# -- limits ------------------------------------------------------------------------------------


def test_past_the_in_flight_limit_requests_are_slow_down() -> None:
    store = MemoryStore()

    async def body() -> None:
        store.gate = asyncio.Event()
        server = make_server(store, limits=S3Limits(requests_in_flight_max=1))
        first = asyncio.create_task(call(server, "GET", "/"))
        await store.entered.wait()
        assert server.requests_in_flight == 1
        response, _, document = await call(server, "GET", "/")
        assert (response.status, code_of(document)) == (503, "SlowDown")
        store.gate.set()
        assert (await first)[0].status == 200
        assert server.requests_in_flight == 0

    run(body())


def test_a_refused_request_awaiting_100_continue_closes_the_connection() -> None:
    async def body() -> None:
        server = make_server(MemoryStore())
        headers = [("expect", "100-continue"), ("x-amz-storage-class", "GLACIER")]
        response, writer, _ = await call(server, "PUT", "/bkt/k", headers, b"data")
        assert response.status == 400  # InvalidStorageClass, before the body was asked for
        assert response.keep_alive is False
        assert b"100 Continue" not in writer.body
        ok, writer, _ = await call(server, "PUT", "/bkt/k", [("expect", "100-continue")], b"data")
        assert ok.status == 200 and ok.keep_alive is not False
        assert writer.body.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")

    run(body())


# -- bodies ------------------------------------------------------------------------------------


def test_put_streams_the_body_and_get_streams_it_back() -> None:
    data = b"the quick brown fox"

    async def body() -> None:
        store = MemoryStore()
        server = make_server(store, limits=S3Limits(whole_response_bytes_max=1))
        response, _, _ = await call(server, "PUT", "/bkt/fox", [("content-type", "text/plain")], data)  # fmt: skip
        assert response.status == 200
        assert response.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        got, writer, streamed = await call(server, "GET", "/bkt/fox")
        assert got.prepared and got.status == 200
        assert streamed == data and writer.eof
        assert got.headers["Content-Length"] == str(len(data))
        assert got.headers["Content-Type"] == "text/plain"
        assert got.headers["x-amz-request-id"] == REQUEST_ID
        ranged, _, streamed = await call(server, "GET", "/bkt/fox", [("range", "bytes=4-8")])
        assert (ranged.status, streamed) == (206, data[4:9])
        small, _, whole = await call(make_server(store), "GET", "/bkt/fox")
        assert not small.prepared and whole == data  # gathered: one write
        assert small.headers["Content-Type"] == "text/plain"

    run(body())


def test_a_bad_body_is_refused_and_nothing_is_stored() -> None:
    data = b"payload"
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()

    async def body() -> None:
        store = MemoryStore()
        server = make_server(store)
        response, _, document = await call(
            server, "PUT", "/bkt/k", [("content-md5", wrong_md5)], data
        )
        assert (response.status, code_of(document)) == (400, "BadDigest")
        assert store.pieces_taken == 1 and store.objects == {}
        short, _, document = await call(server, "PUT", "/bkt/k", [("content-length", "100")], data)
        assert (short.status, code_of(document)) == (400, "IncompleteBody")
        assert store.objects == {}

    run(body())


def test_a_failure_while_streaming_cuts_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenReads(MemoryStore):
        async def read_object(  # type: ignore[override]
            self, manifest: Manifest, first: int = 0, end: int | None = None
        ) -> AsyncIterator[memoryview]:
            yield memoryview(b"abc")
            raise RuntimeError("shard lost mid-stream")

    async def body() -> None:
        store = BrokenReads()
        server = make_server(store, limits=S3Limits(whole_response_bytes_max=1))
        await call(server, "PUT", "/bkt/k", (), b"abcdef")
        response, writer, streamed = await call(server, "GET", "/bkt/k")
        assert response.prepared and streamed == b"abc"  # short of Content-Length 6
        assert response.keep_alive is False and not writer.eof
        # Gathered into one answer, the same failure is still an error document.
        whole = make_server(store)
        response, _, document = await call(whole, "GET", "/bkt/k")
        assert (response.status, code_of(document)) == (500, "InternalError")

    with caplog.at_level(logging.ERROR, logger="atoll.gateway.http"):
        run(body())
    assert "shard lost mid-stream" in caplog.text


def test_header_values_that_are_not_utf8_are_read_as_latin1() -> None:
    # What aiohttp hands over for the ISO-8859-1 byte 0xE9, which is not UTF-8.
    request = http.received_request("PUT", "/b/k", [("X-Amz-Meta-Name", "caf\udce9")])
    assert request.headers.get("x-amz-meta-name") == "caf\u00e9"
    utf8 = http.received_request("PUT", "/b/k", [("x-amz-meta-name", "caf\u00e9")])
    assert utf8.headers.get("x-amz-meta-name") == "caf\u00e9"
    with pytest.raises(InvalidURI):
        http.received_request("GET", "/b/caf\udce9", [])


def test_a_body_that_stops_arriving_is_request_timeout() -> None:
    async def body() -> None:
        store = MemoryStore()
        server = make_server(store, limits=S3Limits(body_read_timeout_s=0.05))
        headers = [("content-length", "100")]
        response, _, document = await call(server, "PUT", "/bkt/k", headers, b"part", eof=False)
        assert (response.status, code_of(document)) == (400, "RequestTimeout")
        assert store.objects == {}

    run(body())
