"""`S3Server`: the S3 API over HTTP (issue 5 §2, §3), an aiohttp low-level server.
Does I/O: listens on a socket and serves requests through `atoll.gateway.handlers`
and the object store.

Each request goes through the same steps, in this order:

1. a request id (16 hex digits from the injected entropy) for the `x-amz-request-id`
   header every response carries, and the in-flight limit (503 SlowDown past it);
2. `sigv4.authenticate` on the request line and headers exactly as received
   (header auth or a presigned URL; an anonymous request is AccessDenied), with the
   injected clock;
3. `s3proto.route` to an `Operation` (path-style or virtual-host-style);
4. the operation's handler (`atoll.gateway.handlers`), given a `RequestContext`; a
   body reaches the store as a `RequestBody`, which streams aiohttp's request stream
   through `payload.open_body`'s checks, so a body that fails them is refused before
   anything commits. `Expect: 100-continue` is answered when the body is first read,
   after the store has accepted the request line and headers.

Failures become S3 error documents through one table (`s3_error_for`): every
`S3Error` as it is, the object formats' value errors by their S3 codes, KV and RPC
outages as 503 ServiceUnavailable, and anything else as 500 InternalError, logged
with its traceback and the request id (the client sees only the id). HEAD answers
carry no body. aiohttp's parser limits header sizes; the routing is `s3proto`'s, not
aiohttp's (`web.Server` hands every request to one function).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from aiohttp import HttpVersion11, web

from atoll.base.errors import invariant
from atoll.gateway import s3proto, sigv4
from atoll.gateway.checksums import Algorithm
from atoll.gateway.errors import (
    AccessDenied,
    CodedS3Error,
    IncompleteBody,
    InternalError,
    InvalidArgument,
    InvalidURI,
    KeyTooLongError,
    MalformedXML,
    MetadataTooLarge,
    NoSuchUpload,
    S3Error,
    S3NotImplemented,
    ServiceUnavailable,
    SlowDown,
)
from atoll.gateway.errors import InvalidBucketName as S3InvalidBucketName
from atoll.gateway.handlers import HANDLERS
from atoll.gateway.payload import BodyReader, BodyResult, open_body
from atoll.gateway.store import ObjectStore
from atoll.kv.errors import KvClientError
from atoll.objects import errors as objects_errors
from atoll.rpc.errors import ConnectionLost, RpcTimeout

logger = logging.getLogger(__name__)

SERVER_NAME = "AtollS3"
REQUEST_ID_ENTROPY_BYTES = 8

OUTAGES: tuple[type[BaseException], ...] = (KvClientError, RpcTimeout, ConnectionLost)
"""Failures of the services behind the gateway that a retry may cure: 503."""


# -- limits and the errors of the HTTP layer --------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class S3Limits:
    """The HTTP shell's limits (shared/STYLE.md §6: a limit on everything)."""

    requests_in_flight_max: int = 256
    """Beyond this many requests being served, new ones are answered 503 SlowDown."""
    body_read_timeout_s: float = 30.0
    """A request body that sends nothing for this long is RequestTimeout."""
    body_piece_bytes_max: int = 1024 * 1024
    """The most bytes taken from the socket buffer at once and handed to the store."""
    request_buffer_bytes: int = 256 * 1024
    """aiohttp's read buffer: it stops reading a request body from the socket once
    twice this much is waiting to be taken."""
    digest_in_thread_bytes_min: int = 256 * 1024
    """Pieces at least this large are digested (MD5, CRC, SHA-256) in a worker thread."""
    whole_response_bytes_max: int = 256 * 1024
    """GetObject answers up to this size are gathered and sent in one write (one
    system call for a small object); larger ones stream."""
    header_line_bytes_max: int = 8190
    header_field_bytes_max: int = 8190
    headers_max: int = 128
    keepalive_timeout_s: float = 75.0
    lingering_time_s: float = 10.0
    """How long an unread request body is drained after an early answer."""
    shutdown_timeout_s: float = 10.0
    """How long `stop()` waits for requests in progress."""

    def __post_init__(self) -> None:
        for limit in dataclasses.fields(self):
            value = getattr(self, limit.name)
            if not value > 0:
                raise ValueError(f"S3Limits.{limit.name} must be positive, not {value!r}")


class RequestTimeout(CodedS3Error):
    CODE = "RequestTimeout"
    STATUS = 400
    MESSAGE = (
        "Your socket connection to the server was not read from or written to within "
        "the timeout period."
    )


# -- the error table -----------------------------------------------------------------------


def _objects_error(error: objects_errors.ObjectsError) -> S3Error | None:
    """The S3 error for a value the object formats refused, or None for a record
    error (damage or a bug: InternalError)."""
    if isinstance(error, objects_errors.InvalidBucketName):
        return S3InvalidBucketName(BucketName=error.bucket)
    if isinstance(error, objects_errors.KeyTooLong):
        return KeyTooLongError(Size=str(error.length_bytes), MaxSizeAllowed=str(error.limit_bytes))
    if isinstance(error, objects_errors.MetadataTooLarge):
        return MetadataTooLarge(Size=str(error.size_bytes), MaxSizeAllowed=str(error.limit_bytes))
    if isinstance(error, objects_errors.InvalidUploadId):
        return NoSuchUpload(UploadId=error.upload_id)
    if isinstance(
        error,
        objects_errors.InvalidObjectKey
        | objects_errors.InvalidListArgument
        | objects_errors.InvalidPartNumber,
    ):
        return InvalidArgument(str(error))
    return None


def s3_error_for(error: Exception) -> S3Error | None:
    """The S3 error a failure is answered with; None for an unexpected one (a bug or
    damage: the caller logs it and answers InternalError)."""
    if isinstance(error, S3Error):
        return error
    if isinstance(error, objects_errors.ObjectsError):
        return _objects_error(error)
    if isinstance(error, OUTAGES):
        return ServiceUnavailable()
    return None


def error_document(error: S3Error, *, method: str, resource: str, request_id: str) -> web.Response:
    """The error response; HEAD answers have no body (HTTP forbids one)."""
    if method == "HEAD":
        return web.Response(status=error.status)
    body = s3proto.render_error(error, resource=resource, request_id=request_id)
    return web.Response(status=error.status, body=body, content_type="application/xml")


def received_request(method: str, target: str, headers: Iterable[tuple[str, str]]) -> sigv4.Request:
    """The request as `sigv4` reads it: the request-target and headers as received.
    aiohttp decodes them as UTF-8, keeping undecodable bytes as surrogates: a header
    value that is not UTF-8 is read as ISO-8859-1 (what HTTP/1.1 clients such as
    Python's http.client send), a request-target that is not is InvalidURI."""
    if not _encodable(target):
        raise InvalidURI()
    decoded = [(name, value if _encodable(value) else _latin1(value)) for name, value in headers]
    return sigv4.Request.from_target(method, target, decoded)


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _latin1(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _awaits_continue(request: web.BaseRequest, context: RequestContext | None) -> bool:
    """The client sent `Expect: 100-continue` and was not told to go on."""
    expect = request.headers.get("Expect", "").strip().lower() == "100-continue"
    return expect and not (context is not None and context.continue_sent)


# -- the request, its body, and the response --------------------------------------------------


@dataclasses.dataclass(slots=True)
class RequestContext:
    """One authenticated, routed request as its handler sees it."""

    request: web.BaseRequest
    signed: sigv4.Request
    auth: sigv4.Authenticated
    route: s3proto.Route
    store: ObjectStore
    owner: str
    region: str
    limits: S3Limits
    common_headers: list[tuple[str, str]]
    """Headers every response carries (x-amz-request-id, x-amz-id-2)."""
    streaming: web.StreamResponse | None = None
    """The response whose headers went out: an error can no longer be answered."""
    continue_sent: bool = False
    body_opened: bool = False

    @property
    def headers(self) -> sigv4.Headers:
        return self.signed.headers

    @property
    def query(self) -> Mapping[str, str]:
        return self.route.query

    @property
    def bucket(self) -> str:
        invariant(self.route.bucket is not None, f"{self.route.operation} without a bucket")
        return self.route.bucket or ""

    @property
    def key(self) -> str:
        invariant(self.route.key is not None, f"{self.route.operation} without a key")
        return self.route.key or ""

    def body(self, digests: Iterable[Algorithm] = (Algorithm.MD5,)) -> RequestBody:
        """The request's body as the store's `Body`; raises now for bad digest or
        length headers (payload.open_body)."""
        invariant(not self.body_opened, "a request body is opened once")
        self.body_opened = True
        return RequestBody(self, open_body(self.signed, self.auth, digests=digests))

    async def small_body(self, bytes_max: int) -> bytes:
        """The whole body of a request whose body is a small XML document, verified
        (Content-MD5, checksums, signatures); MalformedXML past `bytes_max`."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > bytes_max:
            raise MalformedXML(f"The XML body is larger than {bytes_max} bytes.")
        pieces: list[bytes] = []
        size = 0
        async for piece in self.body(digests=()):
            size += len(piece)
            if size > bytes_max:
                raise MalformedXML(f"The XML body is larger than {bytes_max} bytes.")
            pieces.append(bytes(piece))
        return b"".join(pieces)

    def response(
        self,
        status: int = 200,
        *,
        body: bytes | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> web.Response:
        """A complete response; XML when it has a body."""
        response = web.Response(status=status, body=body)
        for name, value in headers:
            response.headers.add(name, value)
        if body is not None:
            response.content_type = "application/xml"
        return response

    def stamp(self, response: web.StreamResponse) -> None:
        for name, value in self.common_headers:
            response.headers[name] = value

    async def start(self, response: web.StreamResponse) -> None:
        """Send the status and headers of a streamed response."""
        self.stamp(response)
        self.streaming = response
        await response.prepare(self.request)

    async def send_continue(self) -> None:
        """`Expect: 100-continue`: tell the client to send the body, once the request
        line and headers have been accepted (so a refused upload costs no upload)."""
        if self.continue_sent:
            return
        self.continue_sent = True
        expect = (self.headers.get("expect") or "").strip().lower()
        if expect == "100-continue" and self.request.version == HttpVersion11:
            await self.request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.request.writer.output_size = 0  # the response proper has not started


class RequestBody:
    """The store's `Body` over aiohttp's request stream: pieces of up to
    `body_piece_bytes_max`, each fed through the `BodyReader` (large pieces digested
    in a worker thread), the reader's `finish()` run when the stream ends, so a bad
    body raises before the store has taken its last piece."""

    def __init__(self, context: RequestContext, reader: BodyReader) -> None:
        self._context = context
        self._reader = reader
        self._result: BodyResult | None = None

    async def __aiter__(self) -> AsyncIterator[memoryview]:
        invariant(self._result is None, "a request body is read once")
        await self._context.send_continue()
        limits = self._context.limits
        loop = asyncio.get_running_loop()
        while data := await self._read():
            if len(data) >= limits.digest_in_thread_bytes_min:
                pieces = await loop.run_in_executor(None, self._reader.feed, data)
            else:
                pieces = self._reader.feed(data)
            for piece in pieces:
                yield piece
        self._result = self._reader.finish()

    async def _read(self) -> bytes:
        stream = self._context.request.content
        limits = self._context.limits
        try:
            async with asyncio.timeout(limits.body_read_timeout_s):
                return await stream.read(limits.body_piece_bytes_max)
        except TimeoutError:
            raise RequestTimeout() from None
        except (web.RequestPayloadError, ConnectionError) as err:
            raise IncompleteBody(f"The request body could not be read: {err}.") from None

    def result(self) -> BodyResult:
        invariant(self._result is not None, "body result asked for before the body ended")
        assert self._result is not None
        return self._result


# -- the server ------------------------------------------------------------------------------


class S3Server:
    """The S3 endpoint of a node. `credentials(access_key)` returns the secret key or
    None; `clock_s` is the wall clock (Unix seconds) that signatures are checked
    against; `entropy(n)` returns n random bytes (request ids). `base_domain`, when
    set, enables virtual-host-style addressing (`bucket.<base_domain>`)."""

    def __init__(
        self,
        store: ObjectStore,
        credentials: Callable[[str], str | None],
        *,
        clock_s: Callable[[], float],
        entropy: Callable[[int], bytes],
        region: str = "us-east-1",
        base_domain: str | None = None,
        owner: str = "atoll",
        limits: S3Limits | None = None,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._clock_s = clock_s
        self._entropy = entropy
        self._region = region
        self._base_domain = base_domain
        self._owner = owner
        self._limits = limits or S3Limits()
        self._key_cache = sigv4.SigningKeyCache()
        self._runner: web.ServerRunner | None = None
        self._in_flight = 0

    @property
    def requests_in_flight(self) -> int:
        return self._in_flight

    async def start(self, host: str, port: int) -> int:
        """Listen on `host:port` (port 0: any free one); returns the bound port."""
        invariant(self._runner is None, "S3Server started twice")
        limits = self._limits
        server = web.Server(
            self.handle,
            handler_cancellation=False,  # a client that leaves does not cut a commit short
            access_log=None,
            auto_decompress=False,  # a gzip body is an object's bytes, stored as sent
            max_line_size=limits.header_line_bytes_max,
            max_field_size=limits.header_field_bytes_max,
            max_headers=limits.headers_max,
            keepalive_timeout=limits.keepalive_timeout_s,
            lingering_time=limits.lingering_time_s,
            read_bufsize=limits.request_buffer_bytes,
        )
        runner = web.ServerRunner(server, shutdown_timeout=limits.shutdown_timeout_s)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound: int = runner.addresses[0][1]
        logger.info("S3 endpoint listening on %s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        """Stop listening; requests in progress get `shutdown_timeout_s` to finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- one request

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Serve one request (aiohttp's handler; tests call it with a made-up request)."""
        request_id = self._entropy(REQUEST_ID_ENTROPY_BYTES).hex().upper()
        common = [
            ("x-amz-request-id", request_id),
            ("x-amz-id-2", base64.b64encode(request_id.encode("ascii")).decode("ascii")),
            ("Server", SERVER_NAME),
        ]
        response: web.StreamResponse
        if self._in_flight >= self._limits.requests_in_flight_max:
            response = self._error(request, SlowDown(), request_id)
            if _awaits_continue(request, None):
                response.force_close()
        else:
            self._in_flight += 1
            try:
                response = await self._serve(request, request_id, common)
            finally:
                self._in_flight -= 1
        if not response.prepared:
            for name, value in common:
                response.headers[name] = value
        return response

    async def _serve(
        self, request: web.BaseRequest, request_id: str, common: list[tuple[str, str]]
    ) -> web.StreamResponse:
        context: RequestContext | None = None
        try:
            signed = received_request(request.method, request.raw_path, request.headers.items())
            auth = sigv4.authenticate(
                signed,
                self._credentials,
                self._clock_s(),
                region=self._region,
                key_cache=self._key_cache,
            )
            if auth is None:
                raise AccessDenied("Anonymous access is not allowed.")
            route = s3proto.route(
                signed.method,
                signed.host or "",
                signed.path,
                sigv4.decoded_query(signed),
                dict(signed.headers),
                base_domain=self._base_domain,
            )
            context = RequestContext(
                request=request,
                signed=signed,
                auth=auth,
                route=route,
                store=self._store,
                owner=self._owner,
                region=self._region,
                limits=self._limits,
                common_headers=common,
            )
            handler = HANDLERS.get(route.operation)
            if handler is None:
                raise S3NotImplemented(f"{route.operation.value} is not implemented.")
            return await handler(context)
        except Exception as err:  # the request's boundary: every failure is answered
            if context is not None and context.streaming is not None:
                return self._broken_stream(request, request_id, err, context.streaming)
            error = s3_error_for(err)
            if error is None:
                logger.exception(
                    "request %s: %s %s failed", request_id, request.method, request.path
                )
                error = InternalError()
            elif isinstance(err, OUTAGES):
                logger.warning("request %s: %s %s: %s", request_id, request.method, request.path, err)  # fmt: skip
            response = self._error(request, error, request_id)
            if _awaits_continue(request, context):
                # The client holds its body back until 100 Continue, which it will not
                # get: the connection cannot carry another request (RFC 9110 §10.1.1).
                response.force_close()
            return response

    def _error(self, request: web.BaseRequest, error: S3Error, request_id: str) -> web.Response:
        return error_document(
            error, method=request.method, resource=request.path, request_id=request_id
        )

    def _broken_stream(
        self,
        request: web.BaseRequest,
        request_id: str,
        err: Exception,
        response: web.StreamResponse,
    ) -> web.StreamResponse:
        """A failure after a response's headers went out: the only way left to tell
        the client is to cut the connection (its Content-Length is then not met)."""
        if not isinstance(err, ConnectionError) or isinstance(err, OUTAGES):
            logger.error(
                "request %s: %s %s failed while streaming its response",
                request_id,
                request.method,
                request.path,
                exc_info=err,
            )
        if request.transport is not None:
            request.transport.abort()
        response.force_close()
        return response
