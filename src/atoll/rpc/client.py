"""The client end of `atoll.rpc`: `RpcClient` and its per-connection protocol.

Does network I/O (connects, reads and writes a socket; docs/rpc.md). Multiplexes calls
(`call`), server streams (`stream`) and client streams (`call_stream`) on one
connection, at most `inflight_max` outstanding, each bounded by its `timeout_s`.
Limits and flow control are described in `atoll.rpc.connection`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import AsyncGenerator, AsyncIterable, Sequence

from atoll.rpc.connection import (
    CALL_TIMEOUT_S,
    CLOSE_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    INFLIGHT_CALLS_MAX,
    Chunk,
    FrameProtocol,
    stream_transport,
)
from atoll.rpc.errors import ConnectionLost, FrameError, RpcRemoteError, RpcTimeout
from atoll.rpc.frame import (
    FLAG_CLIENT_STREAM,
    FLAG_ONE_WAY,
    FLAG_SERVER_STREAM,
    KIND_CANCEL,
    KIND_ERROR,
    KIND_REQUEST,
    KIND_RESPONSE,
    KIND_STREAM_CHUNK,
    KIND_STREAM_END,
    MESSAGE_BYTES_MAX,
    NAME_BYTES_MAX,
    PAYLOAD_BYTES_MAX,
    Frame,
    OutPayload,
    encode_ack,
    encode_frame,
)
from atoll.rpc.streams import Reply, StreamInbox, StreamWindow

log = logging.getLogger(__name__)


def _remote_error(frame: Frame, method: str) -> RpcRemoteError:
    text = frame.message.decode("utf-8", "replace")
    return RpcRemoteError(
        frame.name, text, method=method, request_id=frame.request_id, detail=frame.message
    )


class _ClientConnection(FrameProtocol):
    def __init__(self, message_bytes_max: int, payload_bytes_max: int) -> None:
        super().__init__(message_bytes_max, payload_bytes_max)
        self.pending: dict[int, asyncio.Future[Reply]] = {}  # calls and client streams
        self.methods: dict[int, str] = {}
        self.inboxes: dict[int, StreamInbox] = {}  # server streams being received
        self.windows: dict[int, StreamWindow] = {}  # client streams being sent

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        if kind in (KIND_RESPONSE, KIND_ERROR):
            self._answer_received(frame)
        elif not self._stream_frame(frame, self.inboxes, self.windows):
            self._protocol_error(FrameError(f"a client does not accept frames of kind {kind}"))

    def _answer_received(self, frame: Frame) -> None:
        """A response or an error: the end of a call, of a client stream (whose
        sender stops), or of a server stream (a one-reply answer is its only chunk)."""
        request_id = frame.request_id
        method = self.methods.get(request_id, "?")
        inbox = self.inboxes.get(request_id)
        if inbox is not None:
            if frame.kind == KIND_ERROR:
                inbox.fail(_remote_error(frame, method))
            elif inbox.push(Reply(frame.message, frame.payload)):
                inbox.end()
            else:
                self._protocol_error(FrameError(f"stream {request_id}: a response mid-stream"))
            return
        window = self.windows.pop(request_id, None)
        if window is not None:
            window.close()
        future = self.pending.pop(request_id, None)
        if future is None or future.done():
            return
        if frame.kind == KIND_ERROR:
            future.set_exception(_remote_error(frame, method))
        else:
            future.set_result(Reply(frame.message, frame.payload))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        pending, self.pending = self.pending, {}
        for request_id, future in pending.items():
            if not future.done():
                method = self.methods.get(request_id, "?")
                future.set_exception(
                    ConnectionLost(f"call {method!r} (request {request_id}): {self.lost}")
                )
        for request_id, inbox in self.inboxes.items():
            method = self.methods.get(request_id, "?")
            inbox.fail(ConnectionLost(f"stream {method!r} (request {request_id}): {self.lost}"))
        for window in self.windows.values():
            window.close(self.lost)


class RpcClient:
    """One connection to one `RpcServer`; make it with `await RpcClient.connect(...)`.

    Any number of tasks may `call`, `stream` and `call_stream` at once; they are
    multiplexed on the connection, at most `inflight_max` outstanding. `send` makes a
    one-way request, which takes no slot since nothing comes back. Close with
    `await client.close()` (or use it as an async context manager).
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        protocol: _ClientConnection,
        *,
        inflight_max: int,
        message_bytes_max: int,
        payload_bytes_max: int,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._slots = asyncio.Semaphore(inflight_max)
        self._message_bytes_max = message_bytes_max
        self._payload_bytes_max = payload_bytes_max
        self._next_request_id = 1
        self._names: dict[str, bytes] = {}
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        inflight_max: int = INFLIGHT_CALLS_MAX,
        message_bytes_max: int = MESSAGE_BYTES_MAX,
        payload_bytes_max: int = PAYLOAD_BYTES_MAX,
    ) -> RpcClient:
        """Connect to `host`:`port` (TLS if `ssl` is given). Raises `RpcTimeout` after
        `connect_timeout_s` and `ConnectionLost` if the connection is refused."""
        if inflight_max < 1:
            raise ValueError(f"inflight_max must be >= 1, got {inflight_max}")
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _ClientConnection(message_bytes_max, payload_bytes_max),
                    host,
                    port,
                    ssl=ssl,
                    server_hostname=server_hostname if ssl is not None else None,
                ),
                connect_timeout_s,
            )
        except TimeoutError as err:
            raise RpcTimeout(
                f"connecting to {host}:{port}: no answer in {connect_timeout_s}s"
            ) from err
        except OSError as err:
            raise ConnectionLost(f"connecting to {host}:{port}: {err}") from err
        return cls(
            stream_transport(transport),
            protocol,
            inflight_max=inflight_max,
            message_bytes_max=message_bytes_max,
            payload_bytes_max=payload_bytes_max,
        )

    @property
    def is_closed(self) -> bool:
        return self._protocol.closed.done() or self._transport.is_closing()

    @property
    def pending_calls(self) -> int:
        """Calls and streams outstanding."""
        protocol = self._protocol
        return len(protocol.pending) + len(protocol.inboxes)

    async def call(
        self,
        method: str,
        message: bytes,
        payload: OutPayload | None = None,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> Reply:
        """Call `method` on the server and return its `Reply`.

        `payload` (one buffer, or a sequence of buffers sent as their concatenation)
        is sent beside the message without being copied; do not change it until the
        call returns. The whole call, including waiting for an in-flight slot and for
        write buffer space, is bounded by `timeout_s` (`RpcTimeout`, after which a
        cancel frame goes to the server). A handler's exception is raised as
        `RpcRemoteError`; a lost connection as `ConnectionLost`.
        """
        name = self._start(method)
        deadline = self._loop.time() + timeout_s
        await self._wait_for_room(method, deadline, timeout_s)
        try:
            request_id = self._take_request_id()
            parts = encode_frame(
                KIND_REQUEST,
                request_id,
                name,
                message,
                payload,
                payload_crc=payload_crc,
                message_bytes_max=self._message_bytes_max,
                payload_bytes_max=self._payload_bytes_max,
            )
            return await self._call(method, request_id, parts, deadline, timeout_s)
        finally:
            self._slots.release()

    async def send(
        self,
        method: str,
        message: bytes,
        payload: OutPayload | None = None,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        """Send a one-way request to `method`: the server runs its handler and answers
        nothing, not even an error (docs/rpc.md §3). Returns once the frame is queued
        for writing, after waiting at most `timeout_s` for write buffer space
        (`RpcTimeout`). Nothing confirms delivery: frames in flight when the connection
        is lost are lost with it (`ConnectionLost` is raised only for a connection
        already lost). Frames sent on one connection arrive in order, and the server
        starts their handlers in that order."""
        name = self._start(method)
        protocol = self._protocol
        if protocol.write_paused:
            try:
                await protocol.drain(timeout_s)
            except TimeoutError as err:
                raise RpcTimeout(f"send {method!r}: send buffer full for {timeout_s}s") from err
            if protocol.lost is not None:
                raise ConnectionLost(f"send {method!r}: {protocol.lost}")
        protocol.send(
            encode_frame(
                KIND_REQUEST,
                self._take_request_id(),
                name,
                message,
                payload,
                flags=FLAG_ONE_WAY,
                message_bytes_max=self._message_bytes_max,
                payload_bytes_max=self._payload_bytes_max,
            )
        )

    async def stream(
        self,
        method: str,
        message: bytes,
        payload: OutPayload | None = None,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> AsyncGenerator[Reply, None]:
        """Call `method`, whose handler streams its reply, and yield the chunks.

        The request is sent when iteration starts. `timeout_s` bounds the wait for a
        slot and each wait for the next chunk (`RpcTimeout`); time the consumer spends
        between chunks does not count, but the server gives up on a caller that takes
        no chunk for its stream idle timeout (60 s by default). Chunks are
        acknowledged as they are taken, so a slow consumer slows this stream only.
        Stopping early (`break`, an exception, `aclose()`) sends a cancel frame: wrap
        the iterator in `contextlib.aclosing` to have that happen at once rather than
        when the generator is collected. A handler that answers with one reply yields
        it as the only chunk.
        """
        name = self._start(method)
        deadline = self._loop.time() + timeout_s
        await self._wait_for_room(method, deadline, timeout_s)
        protocol = self._protocol
        request_id = self._take_request_id()
        inbox = StreamInbox(lambda count: protocol.send(encode_ack(request_id, count)))
        sent = False
        try:
            parts = encode_frame(
                KIND_REQUEST,
                request_id,
                name,
                message,
                payload,
                flags=FLAG_SERVER_STREAM,
                payload_crc=payload_crc,
                message_bytes_max=self._message_bytes_max,
                payload_bytes_max=self._payload_bytes_max,
            )
            if protocol.lost is not None:
                raise ConnectionLost(f"stream {method!r}: {protocol.lost}")
            protocol.inboxes[request_id] = inbox
            protocol.methods[request_id] = method
            protocol.send(parts)
            sent = True
            while True:
                try:
                    item = await inbox.next(timeout_s)
                except TimeoutError as err:
                    raise RpcTimeout(
                        f"stream {method!r} (request {request_id}): no chunk in {timeout_s}s"
                    ) from err
                if item is None:
                    return
                yield item
        finally:
            protocol.inboxes.pop(request_id, None)
            protocol.methods.pop(request_id, None)
            if sent and not inbox.finished and protocol.lost is None:
                protocol.send(encode_frame(KIND_CANCEL, request_id))
            self._slots.release()

    async def call_stream(
        self,
        method: str,
        chunks: AsyncIterable[Chunk],
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> Reply:
        """Send `chunks` to the client-stream handler of `method`; return its reply.

        Each chunk is sent once the stream's window has room (the server acknowledges
        chunks as its handler takes them); a chunk's buffers must not change until the
        call returns. `timeout_s` bounds the wait for a slot, each wait for window
        room or write buffer space, and the wait for the reply after the last chunk
        (`RpcTimeout`; a cancel frame goes to the server). Time spent producing the
        chunks does not count, but the server gives up on a caller that sends none for
        its stream idle timeout (60 s by default). If the handler answers before the
        chunks run out, sending stops and its answer is returned (or raised). Does not
        close `chunks`.
        """
        name = self._start(method)
        deadline = self._loop.time() + timeout_s
        await self._wait_for_room(method, deadline, timeout_s)
        protocol = self._protocol
        try:
            request_id = self._take_request_id()
            head = encode_frame(KIND_REQUEST, request_id, name, flags=FLAG_CLIENT_STREAM)
            if protocol.lost is not None:
                raise ConnectionLost(f"call_stream {method!r}: {protocol.lost}")
            future: asyncio.Future[Reply] = self._loop.create_future()
            window = StreamWindow()
            protocol.pending[request_id] = future
            protocol.methods[request_id] = method
            protocol.windows[request_id] = window
            protocol.send(head)
            try:
                what = f"call_stream {method!r} (request {request_id})"
                await self._send_chunks(
                    what, request_id, chunks, window, future, timeout_s, payload_crc
                )
                if not future.done():
                    timer = self._loop.call_later(
                        timeout_s, self._expire, request_id, method, timeout_s
                    )
                    try:
                        return await future
                    finally:
                        timer.cancel()
                return future.result()
            except BaseException:
                if protocol.pending.pop(request_id, None) is not None and protocol.lost is None:
                    protocol.send(encode_frame(KIND_CANCEL, request_id))
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: the error raised here is the caller's
                raise
            finally:
                protocol.pending.pop(request_id, None)
                protocol.methods.pop(request_id, None)
                protocol.windows.pop(request_id, None)
        finally:
            self._slots.release()

    async def _send_chunks(
        self,
        what: str,
        request_id: int,
        chunks: AsyncIterable[Chunk],
        window: StreamWindow,
        answered: asyncio.Future[Reply],
        timeout_s: float,
        payload_crc: bool,
    ) -> None:
        """Send each chunk once the window has room, then the stream's end; stop
        early once the server has answered."""
        protocol = self._protocol
        async for message, payload in chunks:
            try:
                await window.wait_for_room(timeout_s)
                if protocol.write_paused and not answered.done():
                    await protocol.drain(timeout_s)
            except TimeoutError as err:
                raise RpcTimeout(f"{what}: no room to send in {timeout_s}s") from err
            if answered.done():
                return
            parts = encode_frame(
                KIND_STREAM_CHUNK,
                request_id,
                b"",
                message,
                payload,
                payload_crc=payload_crc,
                message_bytes_max=self._message_bytes_max,
                payload_bytes_max=self._payload_bytes_max,
            )
            protocol.send(parts)
            window.sent()
        if not answered.done():
            protocol.send(encode_frame(KIND_STREAM_END, request_id))

    def _start(self, method: str) -> bytes:
        """Check the connection is usable; the method's name as sent."""
        protocol = self._protocol
        if protocol.lost is not None or self._transport.is_closing():
            raise ConnectionLost(f"call {method!r}: {protocol.lost or 'the client is closed'}")
        name = self._names.get(method)
        if name is None:
            name = method.encode()
            if not 0 < len(name) <= NAME_BYTES_MAX:
                raise ValueError(f"method name {method!r} must be 1..{NAME_BYTES_MAX} bytes")
            self._names[method] = name
        return name

    def _take_request_id(self) -> int:
        request_id = self._next_request_id
        self._next_request_id += 1
        return request_id

    async def _wait_for_room(self, method: str, deadline: float, timeout_s: float) -> None:
        """Take an in-flight slot, then wait for write buffer space, by `deadline`."""
        try:
            if self._slots.locked():
                await asyncio.wait_for(self._slots.acquire(), deadline - self._loop.time())
            else:
                await self._slots.acquire()  # free: returns without suspending
        except TimeoutError as err:
            raise RpcTimeout(f"call {method!r}: no free slot in {timeout_s}s") from err
        if self._protocol.write_paused:
            try:
                await self._protocol.drain(max(deadline - self._loop.time(), 0.0))
            except BaseException as err:
                self._slots.release()
                if isinstance(err, TimeoutError):
                    raise RpcTimeout(f"call {method!r}: send buffer full for {timeout_s}s") from err
                raise

    async def _call(
        self,
        method: str,
        request_id: int,
        parts: Sequence[bytes | memoryview],
        deadline: float,
        timeout_s: float,
    ) -> Reply:
        protocol = self._protocol
        if protocol.lost is not None:
            raise ConnectionLost(f"call {method!r}: {protocol.lost}")
        future: asyncio.Future[Reply] = self._loop.create_future()
        protocol.pending[request_id] = future
        protocol.methods[request_id] = method
        protocol.send(parts)
        timer = self._loop.call_at(deadline, self._expire, request_id, method, timeout_s)
        try:
            return await future
        except asyncio.CancelledError:
            if protocol.pending.pop(request_id, None) is not None:
                protocol.send(encode_frame(KIND_CANCEL, request_id))
            raise
        finally:
            timer.cancel()
            protocol.methods.pop(request_id, None)

    def _expire(self, request_id: int, method: str, timeout_s: float) -> None:
        future = self._protocol.pending.pop(request_id, None)
        if future is None or future.done():
            return
        future.set_exception(
            RpcTimeout(f"call {method!r} (request {request_id}): no reply in {timeout_s}s")
        )
        self._protocol.send(encode_frame(KIND_CANCEL, request_id))

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close the connection; outstanding calls fail with `ConnectionLost`."""
        self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._protocol.closed), timeout_s)
        except TimeoutError:
            log.warning("rpc: connection did not close in %ss; aborting", timeout_s)
            self._transport.abort()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
