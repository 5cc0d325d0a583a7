"""The wire format of `atoll.rpc`: frame header encoding and an incremental decoder.

Pure: no sockets, no clock, no `asyncio`. The format is specified in docs/rpc.md
(kept in step with the constants here); in short, every frame is a 32-byte header
followed by three byte strings, `name`, `message` and `payload`:

    magic u8 | version u8 | kind u8 | flags u8 | name_len u8 | reserved 3
    request_id u64 | message_len u32 | payload_len u32 | payload_crc u32 | header_crc u32

all little-endian. `header_crc` is the CRC-32C of header bytes 0..27. It does not
guard against bit rot (TCP's checksum and TLS do that): it catches a receiver that has
lost its place in the stream, which would otherwise read garbage lengths and wait for
gigabytes that never come. The payload is checked only when the sender sets
`FLAG_PAYLOAD_CRC`.

Streams (docs/rpc.md §5) use three more kinds: `STREAM_CHUNK` and `STREAM_END` carry
a stream's chunks and its end, and `STREAM_ACK` returns window credit to the sender
(`encode_ack`/`decode_ack`); a request opens a stream with `FLAG_CLIENT_STREAM` or
`FLAG_SERVER_STREAM`. The window (`STREAM_WINDOW_CHUNKS`) is part of the format, since
both ends must agree on it.

`FrameDecoder` is fed bytes, either with `feed(data)` or through the
`get_buffer`/`buffer_updated` pair that matches `asyncio.BufferedProtocol`, and
returns complete frames. A frame whose body is larger than `LARGE_BODY_BYTES` gets a
buffer of its own, into which the socket reads directly; its payload is handed out as
a `memoryview` of that buffer (no copy). Smaller frames are parsed out of a reused
read buffer and copied into `bytes` (cheap at that size).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

from crc32c import crc32c

from atoll.base.memory import unfilled_bytearray
from atoll.rpc.errors import FrameError

MAGIC = 0xA7
VERSION = 1

# Frame kinds. Numbers are permanent (shared/STYLE.md §8); retire, never reuse.
KIND_REQUEST = 1
KIND_RESPONSE = 2
KIND_ERROR = 3
KIND_STREAM_CHUNK = 4
KIND_STREAM_END = 5
KIND_CANCEL = 6
KIND_STREAM_ACK = 7
KINDS = frozenset(
    {
        KIND_REQUEST,
        KIND_RESPONSE,
        KIND_ERROR,
        KIND_STREAM_CHUNK,
        KIND_STREAM_END,
        KIND_CANCEL,
        KIND_STREAM_ACK,
    }
)

# Flag bits. A reader rejects a frame with a bit it does not know.
FLAG_PAYLOAD_CRC = 0x01
FLAG_CLIENT_STREAM = 0x02  # on a REQUEST: the caller's chunks follow (STREAM_CHUNK... STREAM_END)
FLAG_SERVER_STREAM = 0x04  # on a REQUEST: the caller reads a stream of reply chunks
# On a REQUEST: the caller wants no reply. The server runs the handler and sends
# nothing back for it, not even an error (docs/rpc.md §3).
FLAG_ONE_WAY = 0x08
FLAGS_KNOWN = FLAG_PAYLOAD_CRC | FLAG_CLIENT_STREAM | FLAG_SERVER_STREAM | FLAG_ONE_WAY
FLAGS_STREAM = FLAG_CLIENT_STREAM | FLAG_SERVER_STREAM

# Stream flow control. A sender has at most this many chunks of one stream sent and not
# yet acknowledged; a receiver acknowledges chunks as its consumer takes them, this many
# at a time. A receiver drops the connection if a sender overruns the window.
STREAM_WINDOW_CHUNKS = 16
STREAM_ACK_EVERY_CHUNKS = 8
_ACK = struct.Struct("<I")  # a STREAM_ACK's message: the count of chunks acknowledged

# Error codes carried in the `name` of an error frame.
ERROR_UNKNOWN_METHOD = "unknown_method"
ERROR_HANDLER_FAILED = "handler_failed"
ERROR_DUPLICATE_REQUEST = "duplicate_request"
ERROR_STREAM_MISMATCH = "stream_mismatch"  # the request's stream flags do not fit the method
ERROR_TOO_MANY_STREAMS = "too_many_streams"  # the connection has its limit of streams open

HEADER_BYTES = 32
NAME_BYTES_MAX = 255  # the name length is a u8
MESSAGE_BYTES_MAX = 4 * 1024 * 1024
PAYLOAD_BYTES_MAX = 64 * 1024 * 1024
# Bodies above this get a buffer of their own; smaller frames are copied out of the
# shared read buffer.
LARGE_BODY_BYTES = 64 * 1024
READ_BUFFER_BYTES = 256 * 1024
# Compact the read buffer when less than this is free at its end; a partial small frame
# (at most HEADER_BYTES + LARGE_BODY_BYTES) always fits in what compaction frees.
_COMPACT_BELOW_BYTES = 64 * 1024

_FIELDS = struct.Struct("<BBBBB3xQIII")  # header bytes 0..27; the header CRC follows
_CRC = struct.Struct("<I")

Payload = bytes | bytearray | memoryview
# What a sender may pass as a payload: one buffer, or parts sent one after another
# without being joined (their concatenation is the payload).
OutPayload = Payload | Sequence[Payload]


class Frame(NamedTuple):
    """One decoded frame. `name` is the method of a request, the error code of an error
    frame, and empty otherwise. `payload` is `bytes` for small frames and a read-only
    `memoryview` of a buffer owned by this frame for large ones."""

    kind: int
    flags: int
    request_id: int
    name: str
    message: bytes
    payload: bytes | memoryview


def encode_header(
    kind: int,
    request_id: int,
    *,
    name_len: int = 0,
    message_len: int = 0,
    payload_len: int = 0,
    flags: int = 0,
    payload_crc: int = 0,
    message_bytes_max: int = MESSAGE_BYTES_MAX,
    payload_bytes_max: int = PAYLOAD_BYTES_MAX,
) -> bytes:
    """The 32-byte header of a frame. Raises `FrameError` for a value the format cannot
    carry or a length over its limit (nothing is sent in that case)."""
    if kind not in KINDS:
        raise FrameError(f"unknown frame kind {kind}")
    if flags & ~FLAGS_KNOWN:
        raise FrameError(f"unknown flags {flags:#04x}")
    if flags & FLAG_ONE_WAY and (flags & FLAGS_STREAM or kind != KIND_REQUEST):
        raise FrameError(f"flags {flags:#04x}: only a plain request can be one-way")
    if not 0 <= request_id < 1 << 64:
        raise FrameError(f"request id {request_id} does not fit in a u64")
    if not 0 <= name_len <= NAME_BYTES_MAX:
        raise FrameError(f"name of {name_len} bytes, over {NAME_BYTES_MAX}")
    if not 0 <= message_len <= message_bytes_max:
        raise FrameError(f"message of {message_len} bytes, over {message_bytes_max}")
    if not 0 <= payload_len <= payload_bytes_max:
        raise FrameError(f"payload of {payload_len} bytes, over {payload_bytes_max}")
    fields = _FIELDS.pack(
        MAGIC, VERSION, kind, flags, name_len, request_id, message_len, payload_len, payload_crc
    )
    return fields + _CRC.pack(crc32c(fields))


def encode_frame(
    kind: int,
    request_id: int,
    name: bytes = b"",
    message: bytes = b"",
    payload: OutPayload | None = None,
    *,
    flags: int = 0,
    payload_crc: bool = False,
    message_bytes_max: int = MESSAGE_BYTES_MAX,
    payload_bytes_max: int = PAYLOAD_BYTES_MAX,
) -> Sequence[bytes | memoryview]:
    """A whole frame as buffers to write one after another: the header with the name
    and message in one `bytes`, then the payload untouched (not copied): one buffer, or
    each of its parts if it is a sequence of buffers. `flags` are the stream or one-way flags;
    `payload_crc` sets `FLAG_PAYLOAD_CRC` and computes the payload's CRC-32C."""
    if payload is None:
        views: list[memoryview] = []
    elif isinstance(payload, bytes | bytearray | memoryview):
        views = [_byte_view(payload)]
    else:
        views = [view for view in map(_byte_view, payload) if view.nbytes]
    payload_len = sum(view.nbytes for view in views)
    crc = 0
    if payload_crc:
        for view in views:
            crc = crc32c(view, crc)
        flags |= FLAG_PAYLOAD_CRC
    header = encode_header(
        kind,
        request_id,
        name_len=len(name),
        message_len=len(message),
        payload_len=payload_len,
        flags=flags,
        payload_crc=crc,
        message_bytes_max=message_bytes_max,
        payload_bytes_max=payload_bytes_max,
    )
    head = b"".join((header, name, message))
    return (head,) if payload_len == 0 else (head, *views)


def encode_ack(request_id: int, count: int) -> Sequence[bytes]:
    """A `STREAM_ACK` frame returning `count` chunks of window to the sender."""
    if not 0 < count <= STREAM_WINDOW_CHUNKS:
        raise FrameError(f"stream ack of {count} chunks, outside 1..{STREAM_WINDOW_CHUNKS}")
    message = _ACK.pack(count)
    return (encode_header(KIND_STREAM_ACK, request_id, message_len=len(message)) + message,)


def decode_ack(frame: Frame) -> int:
    """The count of chunks a `STREAM_ACK` frame acknowledges (`FrameError` if its
    message is not a u32 in 1..`STREAM_WINDOW_CHUNKS`)."""
    if len(frame.message) != _ACK.size:
        raise FrameError(f"stream ack with a {len(frame.message)}-byte message, expected 4")
    (count,) = _ACK.unpack(frame.message)
    if not 0 < count <= STREAM_WINDOW_CHUNKS:
        raise FrameError(f"stream ack of {count} chunks, outside 1..{STREAM_WINDOW_CHUNKS}")
    return int(count)


def _byte_view(payload: Payload) -> memoryview:
    view = memoryview(payload)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class _Header(NamedTuple):
    kind: int
    flags: int
    request_id: int
    name_len: int
    message_len: int
    payload_len: int
    payload_crc: int
    offset: int  # of the frame in the stream


class FrameDecoder:
    """Turns a byte stream into frames; one per connection and direction.

    Either `feed(data)`, or ask `get_buffer()` for a writable view, fill a prefix of it
    and report the count with `buffer_updated(n)` (the `asyncio.BufferedProtocol`
    pattern, which lets the socket read straight into a large payload's buffer). Both
    return the frames completed so far, in order. After a `FrameError` the stream is
    out of step and the decoder raises the same error for every further input.
    """

    def __init__(
        self,
        *,
        message_bytes_max: int = MESSAGE_BYTES_MAX,
        payload_bytes_max: int = PAYLOAD_BYTES_MAX,
        read_buffer_bytes: int = READ_BUFFER_BYTES,
    ) -> None:
        if read_buffer_bytes < HEADER_BYTES + LARGE_BODY_BYTES + _COMPACT_BELOW_BYTES:
            raise ValueError(f"read buffer of {read_buffer_bytes} bytes is too small")
        self._message_bytes_max = message_bytes_max
        self._payload_bytes_max = payload_bytes_max
        self._buf = bytearray(read_buffer_bytes)
        self._view = memoryview(self._buf)
        self._start = 0  # first unconsumed byte in _buf
        self._end = 0  # one past the last byte received into _buf
        self._pos = 0  # stream offset of _buf[_start]
        # The frame whose body is being received into a buffer of its own.
        self._large_header: _Header | None = None
        self._large = bytearray()
        self._large_filled = 0
        self._error: FrameError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return self._end - self._start + self._large_filled

    def get_buffer(self) -> memoryview:
        """A writable, non-empty view for the next received bytes."""
        if self._large_header is not None:
            return memoryview(self._large)[self._large_filled :]
        if len(self._buf) - self._end < _COMPACT_BELOW_BYTES:
            self._compact()
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """Record that the first `nbytes` of the last `get_buffer()` view were filled."""
        if self._error is not None:
            raise self._error
        frames: list[Frame] = []
        if self._large_header is not None:
            self._large_filled += nbytes
            if self._large_filled < len(self._large):
                return frames
            frames.append(self._finish_large())
        else:
            self._end += nbytes
        self._parse(frames)
        return frames

    def feed(self, data: Payload) -> list[Frame]:
        """Copy `data` in and return the frames it completes."""
        source = _byte_view(data)
        frames: list[Frame] = []
        while source:
            target = self.get_buffer()
            n = min(len(target), len(source))
            target[:n] = source[:n]
            frames += self.buffer_updated(n)
            source = source[n:]
        return frames

    def _compact(self) -> None:
        live = self._end - self._start
        self._buf[:live] = self._view[self._start : self._end]
        self._start, self._end = 0, live

    def _parse(self, frames: list[Frame]) -> None:
        view = self._view
        while self._end - self._start >= HEADER_BYTES:
            start = self._start
            header = self._check_header(start)
            body = header.name_len + header.message_len + header.payload_len
            if body > LARGE_BODY_BYTES:
                self._start_large(header, body)
                if self._large_filled < body:
                    return  # the rest of the body comes straight into its own buffer
                frames.append(self._finish_large())
                continue
            end = start + HEADER_BYTES + body
            if end > self._end:
                return
            at = start + HEADER_BYTES
            name = view[at : at + header.name_len]
            at += header.name_len
            message = bytes(view[at : at + header.message_len])
            at += header.message_len
            payload = bytes(view[at:end])
            frames.append(self._frame(header, name, message, payload))
            self._start = end
            self._pos += end - start
        if self._start == self._end:
            self._start = self._end = 0

    def _start_large(self, header: _Header, body: int) -> None:
        """Move a large frame's body into a buffer of its own."""
        at = self._start + HEADER_BYTES
        take = min(self._end - at, body)
        # Every byte is written (received into) before the frame is handed on.
        self._large = unfilled_bytearray(body)
        self._large[:take] = self._view[at : at + take]
        self._large_filled = take
        self._large_header = header
        self._start = at + take
        if self._start == self._end:
            self._start = self._end = 0

    def _finish_large(self) -> Frame:
        header = self._large_header
        if header is None:
            raise AssertionError("no large frame in progress")  # pragma: no cover
        body = memoryview(self._large).toreadonly()
        if self._large_filled < len(self._large):
            raise AssertionError("large frame finished early")  # pragma: no cover
        name_end = header.name_len
        message_end = name_end + header.message_len
        self._pos = header.offset + HEADER_BYTES + len(self._large)
        self._large_header = None
        self._large = bytearray()
        self._large_filled = 0
        return self._frame(
            header, body[:name_end], bytes(body[name_end:message_end]), body[message_end:]
        )

    def _frame(
        self, header: _Header, name: memoryview, message: bytes, payload: bytes | memoryview
    ) -> Frame:
        if header.flags & FLAG_PAYLOAD_CRC:
            actual = crc32c(payload)
            if actual != header.payload_crc:
                self._fail(
                    f"payload crc32c {actual:#010x}, header says {header.payload_crc:#010x}",
                    header.offset,
                )
        try:
            text = str(name, "utf-8")
        except UnicodeDecodeError as err:
            self._fail(f"name is not UTF-8: {err}", header.offset, err)
        return Frame(header.kind, header.flags, header.request_id, text, message, payload)

    def _check_header(self, start: int) -> _Header:
        offset = self._pos
        view = self._view
        if view[start] != MAGIC:
            self._fail(f"magic {view[start]:#04x}, expected {MAGIC:#04x}", offset)
        (expected,) = _CRC.unpack_from(view, start + 28)
        actual = crc32c(view[start : start + 28])
        if actual != expected:
            self._fail(f"header crc32c {actual:#010x}, header says {expected:#010x}", offset)
        _, version, kind, flags, name_len, request_id, message_len, payload_len, payload_crc = (
            _FIELDS.unpack_from(view, start)
        )
        if version != VERSION:
            self._fail(f"unsupported version {version}, this node speaks {VERSION}", offset)
        if kind not in KINDS:
            self._fail(f"unknown frame kind {kind}", offset)
        if flags & ~FLAGS_KNOWN:
            self._fail(f"unknown flags {flags:#04x}", offset)
        if flags & FLAG_ONE_WAY and (flags & FLAGS_STREAM or kind != KIND_REQUEST):
            self._fail(f"flags {flags:#04x}: only a plain request can be one-way", offset)
        if message_len > self._message_bytes_max:
            self._fail(f"message of {message_len} bytes, over {self._message_bytes_max}", offset)
        if payload_len > self._payload_bytes_max:
            self._fail(f"payload of {payload_len} bytes, over {self._payload_bytes_max}", offset)
        return _Header(
            kind, flags, request_id, name_len, message_len, payload_len, payload_crc, offset
        )

    def _fail(self, reason: str, offset: int, cause: Exception | None = None) -> NoReturn:
        self._error = FrameError(reason, offset=offset)
        raise self._error from cause
