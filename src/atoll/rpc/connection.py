"""The shared part of `atoll.rpc`'s asyncio shell: `FrameProtocol` (decoding,
coalesced writes, write-side flow control), the handler types and the limits.

Does network I/O (through the transport it is given); the wire format lives in
`atoll.rpc.frame` (docs/rpc.md), the two ends in `atoll.rpc.server` (`RpcServer`) and
`atoll.rpc.client` (`RpcClient`). One connection carries many calls at once, told
apart by request id. Reads go through `asyncio.BufferedProtocol`, so a large payload
is received straight into the buffer the handler (or caller) gets. Frames queued in one
event-loop iteration leave in one `transport.write` (small frames joined); large
payloads are written as they are, never joined into a message.

Besides one-reply calls there are streams (docs/rpc.md §5): a handler may return an
async iterator of chunks, read with `RpcClient.stream`; and a method registered as a
client-stream handler receives the chunks of `RpcClient.call_stream`. Each stream is
flow-controlled on its own by a window of chunks (`atoll.rpc.streams`).

Limits (shared/STYLE.md §6): a client has at most `inflight_max` calls and streams
outstanding (further ones wait, within their timeout, for a slot) and waits while its
transport's write buffer is above the high-water mark; a server connection stops
reading while it runs `handlers_inflight_max` one-reply handlers or while its own
write buffer is full, and refuses streams beyond `streams_inflight_max`. Stream
handlers are not counted towards pausing: a stream makes progress only while acks and
chunks are read, so pausing for them could stall every stream on the connection.

Calls flow one way, client to server, on a connection.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import cast

from atoll.rpc.errors import ConnectionLost, FrameError, RpcError
from atoll.rpc.frame import (
    KIND_STREAM_ACK,
    KIND_STREAM_CHUNK,
    KIND_STREAM_END,
    Frame,
    FrameDecoder,
    OutPayload,
    decode_ack,
)
from atoll.rpc.streams import Reply, StreamInbox, StreamWindow

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
INFLIGHT_CALLS_MAX = 1024
HANDLERS_INFLIGHT_MAX = 1024
# Streams (either direction) one server connection runs at once; more are refused.
STREAMS_INFLIGHT_MAX = 64
# A server ends a stream whose caller neither takes a chunk (server streams) nor sends
# one (client streams) for this long.
STREAM_IDLE_TIMEOUT_S = 60.0
# Buffers at least this large are written on their own rather than joined with the
# small frames around them, so a bulk payload is not copied into a new `bytes`.
WRITE_ALONE_BYTES = 64 * 1024
# An error frame's text is cut to this many bytes.
ERROR_TEXT_BYTES_MAX = 4096

# A message and its raw payload (None or b"" if none; a sequence of buffers is sent as
# their concatenation without joining them): a reply, or a chunk of a stream.
Chunk = tuple[bytes, OutPayload | None]
# A handler gets a request's message and payload and returns (or returns an awaitable
# of) one reply chunk, or an async iterator of chunks for a streamed reply.
Handler = Callable[
    [bytes, bytes | memoryview], Awaitable[Chunk | AsyncIterator[Chunk]] | AsyncIterator[Chunk]
]
# A client-stream handler gets the caller's chunks and returns the one reply.
ClientStreamHandler = Callable[[AsyncIterator[Reply]], Awaitable[Chunk]]


_STREAM_METHODS = ("write", "pause_reading", "resume_reading", "is_closing", "close")


def stream_transport(transport: object) -> asyncio.Transport:
    """`transport` as a stream transport, TypeError if it is not one. By what it can
    do, not by class: uvloop's transports do not derive from `asyncio.Transport`."""
    if not all(hasattr(transport, name) for name in _STREAM_METHODS):
        raise TypeError(f"rpc needs a stream transport, got {transport!r}")
    return cast(asyncio.Transport, transport)


class FrameProtocol(asyncio.BufferedProtocol, ABC):
    """What both ends share: decoding, coalesced writes and write-side flow control."""

    def __init__(self, message_bytes_max: int, payload_bytes_max: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder(
            message_bytes_max=message_bytes_max, payload_bytes_max=payload_bytes_max
        )
        self._message_bytes_max = message_bytes_max
        self._payload_bytes_max = payload_bytes_max
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.write_paused = False
        self._peer = "?"
        self.lost: ConnectionLost | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = stream_transport(transport)
        self._peer = str(transport.get_extra_info("peername"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            frames = self._decoder.buffer_updated(nbytes)
        except FrameError as err:
            self._protocol_error(err)
            return
        for frame in frames:
            if self.lost is not None:
                return  # a frame before this one broke the protocol
            self.frame_received(frame)

    @abstractmethod
    def frame_received(self, frame: Frame) -> None:
        """Handle one decoded frame (the server and client sides differ here)."""

    def _stream_frame(
        self,
        frame: Frame,
        inboxes: Mapping[int, StreamInbox],
        windows: Mapping[int, StreamWindow],
    ) -> bool:
        """Handle a stream chunk, end or ack frame, the same on both ends; False for
        any other kind. A frame for a stream that is over (answered, refused or
        cancelled) is dropped: it crossed the answer or the cancel on the wire."""
        kind = frame.kind
        request_id = frame.request_id
        if kind == KIND_STREAM_CHUNK:
            inbox = inboxes.get(request_id)
            if inbox is not None and not inbox.push(Reply(frame.message, frame.payload)):
                self._protocol_error(FrameError(f"stream {request_id} overran its window"))
        elif kind == KIND_STREAM_END:
            inbox = inboxes.get(request_id)
            if inbox is not None:
                inbox.end()
        elif kind == KIND_STREAM_ACK:
            window = windows.get(request_id)
            try:
                if window is not None and not window.ack(decode_ack(frame)):
                    raise FrameError(f"stream {request_id}: ack for chunks never sent")
            except FrameError as err:
                self._protocol_error(err)
        else:
            return False
        return True

    def _protocol_error(self, err: RpcError) -> None:
        log.warning("rpc: dropping connection to %s: %s", self._peer, err)
        self.lost = ConnectionLost(f"connection to {self._peer} dropped: {err}")
        if self._transport is not None:
            self._transport.abort()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            reason = f"{type(exc).__name__}: {exc}" if exc is not None else "closed"
            self.lost = ConnectionLost(f"connection to {self._peer} lost ({reason})")
        self._out.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake_drain_waiters()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self, timeout_s: float) -> None:
        """Wait, at most `timeout_s`, until the transport takes writes again."""
        while self.write_paused and self.lost is None:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await asyncio.wait_for(waiter, timeout_s)

    def send(self, parts: Sequence[bytes | memoryview]) -> None:
        """Queue one frame's buffers; everything queued in this loop iteration is
        written together once it ends."""
        self._out.extend(parts)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        small: list[bytes | memoryview] = []
        for part in out:
            if len(part) >= WRITE_ALONE_BYTES:
                if small:
                    transport.write(b"".join(small))
                    small = []
                transport.write(part)
            else:
                small.append(part)
        if small:
            transport.write(small[0] if len(small) == 1 else b"".join(small))
