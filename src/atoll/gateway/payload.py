"""The request payload: aws-chunked bodies (encoded and decoded) and the checks of
every digest and signature that covers a body. Pure: no I/O, no clock.

Implements the body half of Amazon S3's SigV4 (issue 5 §3; `atoll.gateway.sigv4` does
the request line and headers):

- aws-chunked, "Signature Calculations for the Authorization Header: Transferring
  Payload in Multiple Chunks" and "... Including Trailing Headers". A body is chunks
  `hex(size)[;chunk-signature=SIG]` CRLF, data, CRLF; a final zero-length chunk; the
  trailing headers (`name:value` CRLF each); an empty line. With
  `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` every chunk is signed, each signature chained
  from the previous one and the first from the request's (the seed); with
  `...-PAYLOAD-TRAILER` the trailing headers are signed too
  (`x-amz-trailer-signature`); with `STREAMING-UNSIGNED-PAYLOAD-TRAILER` the chunks
  are plain and the trailing `x-amz-checksum-*` is what protects the data.
- `BodyReader`: for any body, the SHA-256 that `x-amz-content-sha256` promises
  (XAmzContentSHA256Mismatch), Content-MD5 (InvalidDigest, BadDigest), one
  `x-amz-checksum-*` header or trailer (BadDigest), and the length (IncompleteBody),
  computed in the same pass as the digests the caller wants (MD5 for the ETag).

Trust order: bytes that `feed()` returns are not yet authenticated. They may be
written somewhere temporary but must not become visible (no manifest commit) before
`finish()` returns, which is when the last check has passed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from atoll.base.errors import invariant
from atoll.gateway.checksums import (
    Algorithm,
    DigestSet,
    algorithm_of_header,
    checksum_headers,
    parse_checksum_value,
    verify_digest,
)
from atoll.gateway.errors import (
    AccessDenied,
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    MalformedTrailerError,
    MissingContentLength,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
from atoll.gateway.sigv4 import (
    Authenticated,
    ChunkSigningContext,
    Headers,
    PayloadMode,
    Request,
    payload_mode,
)

CHUNK_LINE_BYTES_MAX = 4 * 1024
"""Longest chunk header or trailer line of an aws-chunked body, CRLF included."""
CHUNK_SIZE_MAX_BYTES = 16 * 1024 * 1024
"""Largest chunk accepted by default (SDKs send 64 KiB to 1 MiB)."""
TRAILERS_MAX = 8

_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_CHUNK_SIGNATURE_PREFIX = b"chunk-signature="
_TRAILER_SIGNATURE = "x-amz-trailer-signature"
_OPTIONAL_WHITESPACE = " \t"


class AwsChunkedEncoder:
    """Encodes a body as aws-chunked: signed chunks when given a context (from
    `sign_request_streaming`), plain ones (STREAMING-UNSIGNED-PAYLOAD-TRAILER) without.
    Call `chunk` for each chunk of data, then `finish` once."""

    def __init__(self, context: ChunkSigningContext | None = None) -> None:
        self._context = context
        self._previous = context.seed_signature if context else ""

    def chunk(self, data: bytes) -> bytes:
        """One chunk: header line, data, CRLF. Empty data is the final chunk: use
        `finish` for it."""
        invariant(len(data) > 0, "the zero-length chunk is written by finish()")
        return self._header(data) + data + b"\r\n"

    def finish(self, trailers: Mapping[str, str] | None = None) -> bytes:
        """The final zero-length chunk, then the trailing headers (signed if the
        chunks are, and the request declared `...-PAYLOAD-TRAILER`), then CRLF."""
        out = [self._header(b"")]
        if trailers:
            out += [f"{n}:{v}\r\n".encode() for n, v in trailers.items()]
            if self._context is not None:
                signature = self._context.trailer_signature(self._previous, trailers)
                out.append(f"{_TRAILER_SIGNATURE}:{signature}\r\n".encode())
        out.append(b"\r\n")
        return b"".join(out)

    def _header(self, data: bytes) -> bytes:
        size = f"{len(data):x}".encode()
        if self._context is None:
            return size + b"\r\n"
        digest = hashlib.sha256(data).hexdigest()
        self._previous = self._context.chunk_signature(self._previous, digest)
        return size + b";" + _CHUNK_SIGNATURE_PREFIX + self._previous.encode() + b"\r\n"


# -- reading aws-chunked bodies ----------------------------------------------------------------


class _State(enum.Enum):
    HEADER = enum.auto()
    DATA = enum.auto()
    DATA_END = enum.auto()
    TRAILER = enum.auto()
    DONE = enum.auto()


class AwsChunkedDecoder:
    """An incremental parser of an aws-chunked body: `feed` it the body in pieces of any
    size, split anywhere; it returns the decoded payload as memoryviews of the input
    (no copies). `finish` after the last piece returns the trailing headers (lower-case
    name -> value).

    Checked as the bytes arrive: chunk header syntax and length (`CHUNK_LINE_BYTES_MAX`),
    chunk size (`chunk_size_max_bytes`), each chunk signature when `context` is given
    (SignatureDoesNotMatch, as soon as the chunk's data is complete), the final
    zero-length chunk and its signature, the decoded length against
    `x-amz-decoded-content-length`, the trailing headers against `trailer_names` (those
    declared in `x-amz-trailer`) and, with signed chunks, the trailer signature. A body
    that does not parse, ends early or runs past its declared length is IncompleteBody;
    bad trailing headers are MalformedTrailerError. Verifying a trailing checksum
    against the data is `BodyReader`'s job.

    After the final chunk come the trailing headers, then an empty line. AWS's own
    published trailer example instead puts an empty line before the trailing headers
    and ends without one; both are accepted.
    """

    def __init__(
        self,
        *,
        decoded_length: int,
        context: ChunkSigningContext | None = None,
        trailers: bool = False,
        trailer_names: Iterable[str] = (),
        chunk_size_max_bytes: int = CHUNK_SIZE_MAX_BYTES,
    ) -> None:
        self._decoded_length = decoded_length
        self._context = context
        self._previous = context.seed_signature if context else ""
        self._trailers_expected = trailers
        self._trailer_names = frozenset(trailer_names)
        invariant(trailers or not self._trailer_names, "trailer names need a trailer mode")
        invariant(len(self._trailer_names) <= TRAILERS_MAX, "too many declared trailers")
        self._chunk_size_max = chunk_size_max_bytes
        self._state = _State.HEADER
        self._line = bytearray()
        self._remaining = 0
        self._provided = b""
        self._hash: hashlib._Hash | None = None
        self._chunks = 0
        self._decoded = 0
        self._trailers: dict[str, str] = {}
        self._trailer_signature: str | None = None
        self._blank_skipped = False

    @property
    def decoded_bytes(self) -> int:
        return self._decoded

    def feed(self, data: bytes) -> list[memoryview]:
        out: list[memoryview] = []
        view = memoryview(data)
        pos = 0
        while pos < len(data):
            if self._state is _State.DATA:
                pos = self._take_data(view, pos, out)
                continue
            if self._state is _State.DONE:
                raise IncompleteBody("Data follows the end of the aws-chunked body.")
            line, pos = self._take_line(data, pos)
            if line is not None:
                self._on_line(line)
        return out

    def finish(self) -> dict[str, str]:
        if self._state is _State.TRAILER and not self._line and self._trailers_expected:
            self._end_trailers()  # AWS's published form: no empty line at the end
        if self._state is not _State.DONE:
            raise IncompleteBody(
                f"The aws-chunked body ended early, in chunk {self._chunks} after "
                f"{self._decoded} decoded bytes."
            )
        if self._decoded != self._decoded_length:
            raise IncompleteBody(
                f"The aws-chunked body decoded to {self._decoded} bytes; "
                f"x-amz-decoded-content-length is {self._decoded_length}."
            )
        return dict(self._trailers)

    # -- parsing steps

    def _take_data(self, view: memoryview, pos: int, out: list[memoryview]) -> int:
        n = min(self._remaining, len(view) - pos)
        piece = view[pos : pos + n]
        if self._hash is not None:
            self._hash.update(piece)
        out.append(piece)
        self._remaining -= n
        self._decoded += n
        if self._remaining == 0:
            self._end_chunk()
            self._state = _State.DATA_END
        return pos + n

    def _take_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """A whole line without its CRLF, or None (and the rest buffered) if the line
        continues in a later piece."""
        end = data.find(b"\n", pos)
        stop = len(data) if end < 0 else end + 1
        if len(self._line) + stop - pos > CHUNK_LINE_BYTES_MAX:
            raise IncompleteBody(
                f"An aws-chunked header line is longer than {CHUNK_LINE_BYTES_MAX} bytes."
            )
        if end < 0:
            self._line += data[pos:]
            return None, stop
        if self._line:
            self._line += data[pos:stop]
            line = bytes(self._line)
            self._line.clear()
        else:
            line = data[pos:stop]
        if not line.endswith(b"\r\n"):
            raise IncompleteBody(
                f"A line of the aws-chunked body ends without CRLF: {line[:80]!r}."
            )
        return line[:-2], end + 1

    def _on_line(self, line: bytes) -> None:
        if self._state is _State.HEADER:
            self._on_chunk_header(line)
        elif self._state is _State.DATA_END:
            if line:
                raise IncompleteBody(f"Chunk {self._chunks} is longer than its declared size.")
            self._state = _State.HEADER
        else:
            self._on_trailer_line(line)

    def _on_chunk_header(self, line: bytes) -> None:
        size_text, _, extension = line.partition(b";")
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise IncompleteBody(f"Malformed aws-chunked chunk header: {line[:80]!r}.")
        size = int(size_text, 16)
        if size > self._chunk_size_max:
            raise IncompleteBody(f"Chunk of {size} bytes; the limit is {self._chunk_size_max}.")
        if self._decoded + size > self._decoded_length:
            raise IncompleteBody(
                f"The aws-chunked body holds more than its x-amz-decoded-content-length "
                f"({self._decoded_length} bytes)."
            )
        if self._context is not None:
            self._provided = self._chunk_signature_of(extension)
            self._hash = hashlib.sha256()
        self._chunks += 1
        if size == 0:
            self._end_chunk()
            self._state = _State.TRAILER
        else:
            self._remaining = size
            self._state = _State.DATA

    def _chunk_signature_of(self, extension: bytes) -> bytes:
        if not extension.startswith(_CHUNK_SIGNATURE_PREFIX):
            raise IncompleteBody(f"Chunk {self._chunks + 1} has no chunk-signature.")
        signature = extension[len(_CHUNK_SIGNATURE_PREFIX) :]
        if len(signature) != 64:
            raise IncompleteBody(f"Chunk {self._chunks + 1} has a malformed chunk-signature.")
        return bytes(signature)

    def _end_chunk(self) -> None:
        if self._context is None or self._hash is None:
            return
        expected = self._context.chunk_signature(self._previous, self._hash.hexdigest())
        if not hmac.compare_digest(expected.encode("ascii"), self._provided):
            raise SignatureDoesNotMatch(
                f"The signature of chunk {self._chunks} does not match.",
                SignatureProvided=self._provided.decode("ascii", errors="replace"),
            )
        self._previous = expected
        self._hash = None

    def _on_trailer_line(self, line: bytes) -> None:
        if not line:
            if self._trailers_expected and not self._blank_skipped and not self._trailers:
                self._blank_skipped = True  # AWS's published form (class docstring)
                if self._trailer_names or self._context is not None:
                    return
            self._end_trailers()
            return
        if not self._trailers_expected:
            raise IncompleteBody("Data follows the final chunk of the aws-chunked body.")
        name, value = self._parse_trailer(line)
        if name == _TRAILER_SIGNATURE and self._context is not None:
            if self._trailer_signature is not None:
                raise MalformedTrailerError("The trailer signature appears twice.")
            self._trailer_signature = value
        elif name not in self._trailer_names or self._trailer_signature is not None:
            raise MalformedTrailerError(
                f"Trailing header {name!r} is not declared in x-amz-trailer, or follows the "
                "trailer signature."
            )
        elif name in self._trailers:
            raise MalformedTrailerError(f"Trailing header {name!r} appears twice.")
        else:
            self._trailers[name] = value

    def _parse_trailer(self, line: bytes) -> tuple[str, str]:
        name, colon, value = line.partition(b":")
        try:
            text_name, text_value = name.decode("ascii").lower(), value.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedTrailerError("A trailing header is not ASCII.") from None
        if not colon or not _HEADER_NAME.fullmatch(text_name):
            raise MalformedTrailerError(f"Malformed trailing header line: {line[:80]!r}.")
        # Only spaces and tabs around a field value are optional (RFC 9110 §5.5).
        return text_name, text_value.strip(_OPTIONAL_WHITESPACE)

    def _end_trailers(self) -> None:
        missing = sorted(self._trailer_names - set(self._trailers))
        if missing:
            raise MalformedTrailerError(f"Declared trailing headers are missing: {missing}.")
        if self._context is not None and self._trailers_expected:
            if self._trailer_signature is None:
                raise MalformedTrailerError("The trailing headers have no x-amz-trailer-signature.")
            expected = self._context.trailer_signature(self._previous, self._trailers)
            if not hmac.compare_digest(expected, self._trailer_signature):
                raise SignatureDoesNotMatch(
                    "The trailer signature does not match.",
                    SignatureProvided=self._trailer_signature,
                )
        self._state = _State.DONE


# -- the whole body ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BodyResult:
    """What `BodyReader.finish` learnt: the payload's length, the digests asked for,
    the verified `x-amz-checksum-*` (header or trailer) if any, and the trailers."""

    length_bytes: int
    digests: dict[Algorithm, bytes]
    checksum: tuple[Algorithm, bytes] | None
    trailers: dict[str, str]


class BodyReader:
    """Between a request's raw body and the object's bytes: decodes aws-chunked bodies
    and checks every digest and signature the request carries (module docstring,
    "Trust order"). Build it with `open_body`."""

    def __init__(
        self,
        *,
        decoder: AwsChunkedDecoder | None,
        expected_length: int | None,
        content_sha256: bytes | None,
        header_digests: Mapping[Algorithm, bytes],
        trailer_algorithm: Algorithm | None,
        digests: Iterable[Algorithm] = (),
    ) -> None:
        self._decoder = decoder
        self._expected_length = expected_length
        self._content_sha256 = content_sha256
        self._header_digests = dict(header_digests)
        self._trailer_algorithm = trailer_algorithm
        self._wanted = frozenset(digests)
        needed = set(self._wanted) | set(self._header_digests)
        if trailer_algorithm is not None:
            needed.add(trailer_algorithm)
        if content_sha256 is not None:
            needed.add(Algorithm.SHA256)
        self._digest_set = DigestSet(needed)
        self._length = 0

    def feed(self, data: bytes) -> list[memoryview]:
        """The payload bytes in `data` (not yet authenticated: see the module)."""
        pieces = self._decoder.feed(data) if self._decoder else [memoryview(data)]
        for piece in pieces:
            self._digest_set.update(piece)
            self._length += len(piece)
        if self._expected_length is not None and self._length > self._expected_length:
            raise IncompleteBody(f"The body is longer than Content-Length {self._expected_length}.")
        return pieces

    def finish(self) -> BodyResult:
        """Verify everything; raises IncompleteBody, SignatureDoesNotMatch,
        MalformedTrailerError, XAmzContentSHA256Mismatch, InvalidRequest (a malformed
        trailing checksum) or BadDigest."""
        trailers = self._decoder.finish() if self._decoder else {}
        if self._expected_length is not None and self._length != self._expected_length:
            raise IncompleteBody(
                f"Received {self._length} bytes; Content-Length is {self._expected_length}."
            )
        computed = self._digest_set.digests()
        if self._content_sha256 is not None and computed[Algorithm.SHA256] != self._content_sha256:
            raise XAmzContentSHA256Mismatch(
                ClientComputedContentSHA256=self._content_sha256.hex(),
                S3ComputedContentSHA256=computed[Algorithm.SHA256].hex(),
            )
        expected = dict(self._header_digests)
        if self._trailer_algorithm is not None:
            value = trailers[self._trailer_algorithm.header]
            expected[self._trailer_algorithm] = parse_checksum_value(
                self._trailer_algorithm, value, trailer=True
            )
        for algorithm, digest in expected.items():
            verify_digest(algorithm, digest, computed[algorithm])
        checksum = next(((a, d) for a, d in expected.items() if a is not Algorithm.MD5), None)
        wanted = {a: d for a, d in computed.items() if a in self._wanted}
        return BodyResult(self._length, wanted, checksum, trailers)


def _declared_length(headers: Headers, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise InvalidArgument(f"{name} must be a non-negative integer.", ArgumentName=name)
    return int(value)


def _trailer_algorithm(headers: Headers) -> Algorithm | None:
    """The checksum announced by `x-amz-trailer` (at most one, not Content-MD5)."""
    names = [n.strip().lower() for n in ",".join(headers.get_all("x-amz-trailer")).split(",")]
    names = [n for n in names if n]
    algorithms = [algorithm_of_header(n) for n in names]
    if len(names) > 1 or any(a is None or a is Algorithm.MD5 for a in algorithms):
        raise InvalidRequest(
            f"The value specified in the x-amz-trailer header is not supported: {names}."
        )
    return algorithms[0] if algorithms else None


def open_body(
    request: Request,
    auth: Authenticated | None,
    *,
    digests: Iterable[Algorithm] = (Algorithm.MD5,),
    chunk_size_max_bytes: int = CHUNK_SIZE_MAX_BYTES,
) -> BodyReader:
    """The reader for `request`'s body. `auth` is what `authenticate` returned (None for
    an anonymous request, whose mode comes from its unsigned `x-amz-content-sha256`).
    `digests` are computed over the payload and returned by `finish` (MD5 for the ETag).

    Raises now, before any byte is read: MissingContentLength (an aws-chunked body
    without `x-amz-decoded-content-length`), InvalidArgument (a malformed length or
    `x-amz-content-sha256`), InvalidDigest / InvalidRequest (malformed digest headers,
    several checksums, a bad `x-amz-trailer`), AccessDenied (signed chunks on an
    unsigned request), S3NotImplemented (CRC64NVME, SigV4a).
    """
    headers = request.headers
    mode_value = auth.payload_hash if auth else headers.get("x-amz-content-sha256")
    mode = payload_mode(mode_value) if mode_value else PayloadMode.UNSIGNED
    header_digests = checksum_headers(headers)
    trailer = _trailer_algorithm(headers) if mode.trailer else None
    if headers.get("x-amz-trailer") and not mode.trailer:
        raise InvalidRequest(
            f"x-amz-trailer needs a *-TRAILER x-amz-content-sha256, not {mode_value}."
        )
    if trailer is not None and any(a is not Algorithm.MD5 for a in header_digests):
        raise InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    if not mode.chunked:
        return BodyReader(
            decoder=None,
            expected_length=_declared_length(headers, "content-length"),
            content_sha256=(
                bytes.fromhex(mode_value) if mode_value and mode is PayloadMode.SIGNED else None
            ),
            header_digests=header_digests,
            trailer_algorithm=None,
            digests=digests,
        )
    decoded_length = _declared_length(headers, "x-amz-decoded-content-length")
    if decoded_length is None:
        raise MissingContentLength("An aws-chunked body needs x-amz-decoded-content-length.")
    context = auth.chunk_context if auth else None
    if mode.signed_chunks and context is None:
        raise AccessDenied(f"{mode.value} needs a request signed in its Authorization header.")
    decoder = AwsChunkedDecoder(
        decoded_length=decoded_length,
        context=context,
        trailers=mode.trailer,
        trailer_names=[trailer.header] if trailer else [],
        chunk_size_max_bytes=chunk_size_max_bytes,
    )
    return BodyReader(
        decoder=decoder,
        expected_length=None,
        content_sha256=None,
        header_digests=header_digests,
        trailer_algorithm=trailer,
        digests=digests,
    )
