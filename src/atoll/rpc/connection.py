"""The asyncio shell of `atoll.rpc`: `RpcServer` and `RpcClient` over TCP (or TLS).

Does network I/O; the wire format lives in `atoll.rpc.frame` (docs/rpc.md). One
connection carries many calls at once, told apart by request id. Reads go through
`asyncio.BufferedProtocol`, so a large payload is received straight into the buffer
the handler (or caller) gets. Frames queued in one event-loop iteration leave in one
`transport.write` (small frames joined); large payloads are written as they are, never
joined into a message.

Limits (shared/STYLE.md §6): a client has at most `inflight_max` calls outstanding
(further calls wait, within their timeout, for a slot) and waits while its transport's
write buffer is above the high-water mark; a server connection stops reading while it
runs `handlers_inflight_max` handlers or while its own write buffer is full.

Not yet: stream frames (`KIND_STREAM_CHUNK`, `KIND_STREAM_END`) are part of the format
but neither end sends them; receiving one drops the connection as a protocol error.
Calls flow one way, client to server, on a connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple

from atoll.rpc.errors import ConnectionLost, FrameError, RpcError, RpcRemoteError, RpcTimeout
from atoll.rpc.frame import (
    ERROR_DUPLICATE_REQUEST,
    ERROR_HANDLER_FAILED,
    ERROR_UNKNOWN_METHOD,
    KIND_CANCEL,
    KIND_ERROR,
    KIND_REQUEST,
    KIND_RESPONSE,
    MESSAGE_BYTES_MAX,
    NAME_BYTES_MAX,
    PAYLOAD_BYTES_MAX,
    Frame,
    FrameDecoder,
    Payload,
    encode_frame,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
INFLIGHT_CALLS_MAX = 1024
HANDLERS_INFLIGHT_MAX = 1024
# Buffers at least this large are written on their own rather than joined with the
# small frames around them, so a bulk payload is not copied into a new `bytes`.
WRITE_ALONE_BYTES = 64 * 1024
# An error frame's text is cut to this many bytes.
ERROR_TEXT_BYTES_MAX = 4096

Handler = Callable[[bytes, bytes | memoryview], Awaitable[tuple[bytes, Payload | None]]]


class Reply(NamedTuple):
    """A call's result: the reply message and the raw reply payload (`b""` if none)."""

    message: bytes
    payload: bytes | memoryview


class _FrameProtocol(asyncio.BufferedProtocol, ABC):
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
        self.write_paused = False
        self._peer = "?"
        self.lost: ConnectionLost | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise TypeError(f"rpc needs a stream transport, got {transport!r}")
        self._transport = transport
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
            self.frame_received(frame)

    @abstractmethod
    def frame_received(self, frame: Frame) -> None:
        """Handle one decoded frame (the server and client sides differ here)."""

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

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False

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


# -- server --------------------------------------------------------------------------------


class _ServerConnection(_FrameProtocol):
    def __init__(self, server: RpcServer) -> None:
        super().__init__(server.message_bytes_max, server.payload_bytes_max)
        self._server = server
        self._handlers = server.handlers
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._reading_paused = False

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._server.connections.discard(self)
        for task in self._tasks.values():
            task.cancel()

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        if self._transport is not None:
            self._transport.close()

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        if kind == KIND_REQUEST:
            self._start_handler(frame)
        elif kind == KIND_CANCEL:
            task = self._tasks.get(frame.request_id)
            if task is not None:
                task.cancel()
        else:
            self._protocol_error(FrameError(f"a server does not accept frames of kind {kind}"))

    def _start_handler(self, frame: Frame) -> None:
        request_id = frame.request_id
        handler = self._handlers.get(frame.name)
        if handler is None:
            self._send_error(request_id, ERROR_UNKNOWN_METHOD, f"no method {frame.name!r}")
            return
        if request_id in self._tasks:
            self._send_error(request_id, ERROR_DUPLICATE_REQUEST, "request id already running")
            return
        task = self._loop.create_task(self._run(handler, frame))
        self._tasks[request_id] = task
        task.add_done_callback(lambda _: self._handler_done(request_id))
        self._update_reading()

    async def _run(self, handler: Handler, frame: Frame) -> None:
        try:
            message, payload = await handler(frame.message, frame.payload)
            parts = encode_frame(
                KIND_RESPONSE,
                frame.request_id,
                b"",
                message,
                payload,
                message_bytes_max=self._message_bytes_max,
                payload_bytes_max=self._payload_bytes_max,
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a task boundary: the caller gets the error
            log.warning(
                "rpc: handler %r failed for request %d from %s",
                frame.name,
                frame.request_id,
                self._peer,
                exc_info=True,
            )
            self._send_error(frame.request_id, ERROR_HANDLER_FAILED, f"{type(err).__name__}: {err}")
            return
        self.send(parts)

    def _handler_done(self, request_id: int) -> None:
        self._tasks.pop(request_id, None)
        if self._reading_paused:
            self._update_reading()

    def _send_error(self, request_id: int, code: str, text: str) -> None:
        data = text.encode("utf-8", "replace")[:ERROR_TEXT_BYTES_MAX]
        self.send(encode_frame(KIND_ERROR, request_id, code.encode(), data))

    def pause_writing(self) -> None:
        super().pause_writing()
        self._update_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._update_reading()

    def _update_reading(self) -> None:
        """Read only while replies can be written and handlers are below the limit."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pause = self.write_paused or len(self._tasks) >= self._server.handlers_inflight_max
        if pause and not self._reading_paused:
            transport.pause_reading()
        elif not pause and self._reading_paused:
            transport.resume_reading()
        self._reading_paused = pause


class RpcServer:
    """Serves `handlers` (method name -> async handler) on `host`:`port`.

    Construction binds nothing; `start()` listens (port 0 picks a free port, see
    `port`), `stop()` stops listening, cancels running handlers, closes every
    connection (clients' pending calls fail with `ConnectionLost`) and waits, up to
    `stop_timeout_s`, for the handlers to finish. A handler gets `(message, payload)`
    and returns `(reply_message, reply_payload or None)`; its exceptions go back to
    the caller as `RpcRemoteError`. The payload it is given is its own to keep.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        handlers_inflight_max: int = HANDLERS_INFLIGHT_MAX,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        message_bytes_max: int = MESSAGE_BYTES_MAX,
        payload_bytes_max: int = PAYLOAD_BYTES_MAX,
    ) -> None:
        for name in handlers:
            if not 0 < len(name.encode()) <= NAME_BYTES_MAX:
                raise ValueError(f"method name {name!r} must be 1..{NAME_BYTES_MAX} bytes")
        if handlers_inflight_max < 1:
            raise ValueError(f"handlers_inflight_max must be >= 1, got {handlers_inflight_max}")
        self.handlers = dict(handlers)
        self.host = host
        self.requested_port = port
        self.handlers_inflight_max = handlers_inflight_max
        self.message_bytes_max = message_bytes_max
        self.payload_bytes_max = payload_bytes_max
        self.connections: set[_ServerConnection] = set()
        self._ssl = ssl
        self._stop_timeout_s = stop_timeout_s
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port actually bound (after `start()`)."""
        if self._server is None or not self._server.sockets:
            raise RpcError("the rpc server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        if self._server is not None:
            raise RpcError("the rpc server is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ServerConnection(self), self.host, self.requested_port, ssl=self._ssl
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        connections = list(self.connections)
        tasks = [task for conn in connections for task in conn.tasks]
        for conn in connections:
            conn.close()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._stop_timeout_s)
            if pending:
                log.warning("rpc: %d handlers still running after stop", len(pending))
        closed = [conn.closed for conn in connections]
        if closed:
            await asyncio.wait(closed, timeout=self._stop_timeout_s)
        await asyncio.wait_for(server.wait_closed(), self._stop_timeout_s)

    async def __aenter__(self) -> RpcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# -- client --------------------------------------------------------------------------------


class _ClientConnection(_FrameProtocol):
    def __init__(self, message_bytes_max: int, payload_bytes_max: int) -> None:
        super().__init__(message_bytes_max, payload_bytes_max)
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.methods: dict[int, str] = {}
        self._drain_waiters: list[asyncio.Future[None]] = []

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        if kind == KIND_RESPONSE:
            future = self.pending.pop(frame.request_id, None)
            if future is not None and not future.done():
                future.set_result(Reply(frame.message, frame.payload))
        elif kind == KIND_ERROR:
            future = self.pending.pop(frame.request_id, None)
            if future is not None and not future.done():
                method = self.methods.get(frame.request_id, "?")
                text = frame.message.decode("utf-8", "replace")
                future.set_exception(
                    RpcRemoteError(frame.name, text, method=method, request_id=frame.request_id)
                )
        else:
            self._protocol_error(FrameError(f"a client does not accept frames of kind {kind}"))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        pending, self.pending = self.pending, {}
        for request_id, future in pending.items():
            if not future.done():
                method = self.methods.get(request_id, "?")
                future.set_exception(
                    ConnectionLost(f"call {method!r} (request {request_id}): {self.lost}")
                )
        self._wake_drain_waiters()

    def resume_writing(self) -> None:
        super().resume_writing()
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


class RpcClient:
    """One connection to one `RpcServer`; make it with `await RpcClient.connect(...)`.

    Any number of tasks may `call` at once; calls are multiplexed on the connection,
    at most `inflight_max` outstanding. Close with `await client.close()` (or use it
    as an async context manager).
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
        if not isinstance(transport, asyncio.Transport):
            raise TypeError(f"rpc needs a stream transport, got {transport!r}")
        return cls(
            transport,
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
        return len(self._protocol.pending)

    async def call(
        self,
        method: str,
        message: bytes,
        payload: Payload | None = None,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> Reply:
        """Call `method` on the server and return its `Reply`.

        `payload` is sent beside the message without being copied; do not change it
        until the call returns. The whole call, including waiting for an in-flight slot
        and for write buffer space, is bounded by `timeout_s` (`RpcTimeout`, after
        which a cancel frame goes to the server). A handler's exception is raised as
        `RpcRemoteError`; a lost connection as `ConnectionLost`.
        """
        protocol = self._protocol
        if protocol.lost is not None or self._transport.is_closing():
            raise ConnectionLost(f"call {method!r}: {protocol.lost or 'the client is closed'}")
        name = self._names.get(method)
        if name is None:
            name = method.encode()
            if not 0 < len(name) <= NAME_BYTES_MAX:
                raise ValueError(f"method name {method!r} must be 1..{NAME_BYTES_MAX} bytes")
            self._names[method] = name
        deadline = self._loop.time() + timeout_s
        await self._wait_for_room(method, deadline, timeout_s)
        try:
            request_id = self._next_request_id
            self._next_request_id += 1
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
