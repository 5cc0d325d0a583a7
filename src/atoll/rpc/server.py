"""The server end of `atoll.rpc`: `RpcServer` and its per-connection protocol.

Does network I/O (listens, reads and writes sockets; docs/rpc.md). Runs each request's
handler as a task owned by its connection: one-reply handlers, handlers that stream
their reply (each chunk sent once the stream's window has room), and client-stream
handlers fed from a `StreamInbox`. Limits and flow control are described in
`atoll.rpc.connection`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator, Mapping

from atoll.rpc.connection import (
    ERROR_TEXT_BYTES_MAX,
    HANDLERS_INFLIGHT_MAX,
    STOP_TIMEOUT_S,
    STREAM_IDLE_TIMEOUT_S,
    STREAMS_INFLIGHT_MAX,
    Chunk,
    ClientStreamHandler,
    FrameProtocol,
    Handler,
)
from atoll.rpc.errors import FrameError, HandlerError, RpcError, RpcTimeout
from atoll.rpc.frame import (
    ERROR_DUPLICATE_REQUEST,
    ERROR_HANDLER_FAILED,
    ERROR_STREAM_MISMATCH,
    ERROR_TOO_MANY_STREAMS,
    ERROR_UNKNOWN_METHOD,
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
    encode_ack,
    encode_frame,
)
from atoll.rpc.streams import StreamInbox, StreamWindow

log = logging.getLogger(__name__)


async def _aclose(chunks: object) -> None:
    """Close an async generator (or anything with `aclose`) a handler returned."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


class _ServerConnection(FrameProtocol):
    def __init__(self, server: RpcServer) -> None:
        super().__init__(server.message_bytes_max, server.payload_bytes_max)
        self._server = server
        self._handlers = server.handlers
        self._stream_handlers = server.client_stream_handlers
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stream_ids: set[int] = set()  # the tasks that run streams
        self._inboxes: dict[int, StreamInbox] = {}  # client streams being received
        self._windows: dict[int, StreamWindow] = {}  # server streams being sent
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
        request_id = frame.request_id
        if kind == KIND_REQUEST:
            self._start_handler(frame)
        elif kind == KIND_CANCEL:
            task = self._tasks.get(request_id)
            if task is not None:
                task.cancel()
        elif not self._stream_frame(frame, self._inboxes, self._windows):
            self._protocol_error(FrameError(f"a server does not accept frames of kind {kind}"))

    def _start_handler(self, frame: Frame) -> None:
        request_id = frame.request_id
        handler = self._handlers.get(frame.name)
        stream_handler = self._stream_handlers.get(frame.name)
        if handler is None and stream_handler is None:
            self._send_error(frame, ERROR_UNKNOWN_METHOD, f"no method {frame.name!r}")
            return
        if request_id in self._tasks:
            self._send_error(frame, ERROR_DUPLICATE_REQUEST, "request id already running")
            return
        if bool(frame.flags & FLAG_CLIENT_STREAM) != (stream_handler is not None):
            expected = "a client stream" if stream_handler is not None else "no client stream"
            self._send_error(
                frame, ERROR_STREAM_MISMATCH, f"method {frame.name!r} takes {expected}"
            )
            return
        is_stream = bool(frame.flags & (FLAG_CLIENT_STREAM | FLAG_SERVER_STREAM))
        if is_stream and len(self._stream_ids) >= self._server.streams_inflight_max:
            limit = self._server.streams_inflight_max
            self._send_error(frame, ERROR_TOO_MANY_STREAMS, f"{limit} streams already open")
            return
        if stream_handler is not None:
            inbox = StreamInbox(lambda count: self.send(encode_ack(request_id, count)))
            self._inboxes[request_id] = inbox
            task = self._loop.create_task(self._run_client_stream(stream_handler, frame, inbox))
        elif handler is not None:
            task = self._loop.create_task(self._run(handler, frame))
        if is_stream:
            self._stream_ids.add(request_id)
        self._tasks[request_id] = task
        task.add_done_callback(lambda _: self._handler_done(request_id))
        self._update_reading()

    async def _run(self, handler: Handler, frame: Frame) -> None:
        try:
            called = handler(frame.message, frame.payload)
            result = await called if inspect.isawaitable(called) else called
            if isinstance(result, AsyncIterator):
                if frame.flags & FLAG_ONE_WAY:
                    await _aclose(result)
                    raise TypeError("a one-way request cannot be answered by a stream")
                await self._send_stream(frame, result)
            elif not frame.flags & FLAG_ONE_WAY:
                self._send_reply(frame.request_id, result)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a task boundary: the caller gets the error
            self._handler_failed(frame, err)

    async def _run_client_stream(
        self, handler: ClientStreamHandler, frame: Frame, inbox: StreamInbox
    ) -> None:
        what = f"client stream {frame.name!r} (request {frame.request_id})"
        try:
            reply = await handler(inbox.iterate(self._server.stream_idle_timeout_s, what))
            self._send_reply(frame.request_id, reply)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a task boundary: the caller gets the error
            self._handler_failed(frame, err)

    def _send_reply(self, request_id: int, reply: Chunk) -> None:
        message, payload = reply
        self.send(
            encode_frame(
                KIND_RESPONSE,
                request_id,
                b"",
                message,
                payload,
                message_bytes_max=self._message_bytes_max,
                payload_bytes_max=self._payload_bytes_max,
            )
        )

    async def _send_stream(self, frame: Frame, chunks: AsyncIterator[Chunk]) -> None:
        """Send `chunks` as a streamed reply, each once the window has room."""
        request_id = frame.request_id
        idle_timeout_s = self._server.stream_idle_timeout_s
        try:
            if not frame.flags & FLAG_SERVER_STREAM:
                self._send_error(
                    frame,
                    ERROR_STREAM_MISMATCH,
                    f"method {frame.name!r} streams its reply; read it with stream()",
                )
                return
            window = self._windows[request_id] = StreamWindow()
            while True:
                try:
                    await window.wait_for_room(idle_timeout_s)
                    if self.write_paused:
                        await self.drain(idle_timeout_s)
                except TimeoutError as err:
                    raise RpcTimeout(
                        f"server stream {frame.name!r} (request {request_id}): "
                        f"the caller took no chunk in {idle_timeout_s}s"
                    ) from err
                try:
                    message, payload = await anext(chunks)
                except StopAsyncIteration:
                    break
                parts = encode_frame(
                    KIND_STREAM_CHUNK,
                    request_id,
                    b"",
                    message,
                    payload,
                    message_bytes_max=self._message_bytes_max,
                    payload_bytes_max=self._payload_bytes_max,
                )
                self.send(parts)
                window.sent()
            self.send(encode_frame(KIND_STREAM_END, request_id))
        finally:
            self._windows.pop(request_id, None)
            await _aclose(chunks)

    def _handler_failed(self, frame: Frame, err: Exception) -> None:
        if isinstance(err, HandlerError) and not frame.flags & FLAG_ONE_WAY:
            self.send(encode_frame(KIND_ERROR, frame.request_id, err.code.encode(), err.detail))
            return
        log.warning(
            "rpc: handler %r failed for request %d from %s",
            frame.name,
            frame.request_id,
            self._peer,
            exc_info=not isinstance(err, HandlerError),
        )
        self._send_error(frame, ERROR_HANDLER_FAILED, f"{type(err).__name__}: {err}")

    def _handler_done(self, request_id: int) -> None:
        self._tasks.pop(request_id, None)
        self._stream_ids.discard(request_id)
        self._inboxes.pop(request_id, None)
        if self._reading_paused:
            self._update_reading()

    def _send_error(self, frame: Frame, code: str, text: str) -> None:
        """Answer `frame` with a transport error; a one-way request gets none, so the
        error is counted and logged here instead."""
        if frame.flags & FLAG_ONE_WAY:
            self._server.one_way_errors += 1
            log.debug("rpc: one-way %r from %s: %s: %s", frame.name, self._peer, code, text)
            return
        data = text.encode("utf-8", "replace")[:ERROR_TEXT_BYTES_MAX]
        self.send(encode_frame(KIND_ERROR, frame.request_id, code.encode(), data))

    def pause_writing(self) -> None:
        super().pause_writing()
        self._update_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._update_reading()

    def _update_reading(self) -> None:
        """Read only while replies can be written and one-reply handlers are below the
        limit (stream handlers need reading to go on; they have their own limit)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        unary = len(self._tasks) - len(self._stream_ids)
        pause = self.write_paused or unary >= self._server.handlers_inflight_max
        if pause and not self._reading_paused:
            transport.pause_reading()
        elif not pause and self._reading_paused:
            transport.resume_reading()
        self._reading_paused = pause


def _check_methods(
    handlers: Mapping[str, Handler], client_stream_handlers: Mapping[str, ClientStreamHandler]
) -> None:
    for name in [*handlers, *client_stream_handlers]:
        if not 0 < len(name.encode()) <= NAME_BYTES_MAX:
            raise ValueError(f"method name {name!r} must be 1..{NAME_BYTES_MAX} bytes")
    both = set(handlers) & set(client_stream_handlers)
    if both:
        raise ValueError(f"methods {sorted(both)} are both plain and client-stream")


class RpcServer:
    """Serves `handlers` (method name -> async handler) on `host`:`port`.

    Construction binds nothing; `start()` listens (port 0 picks a free port, see
    `port`), `stop()` stops listening, cancels running handlers, closes every
    connection (clients' pending calls fail with `ConnectionLost`) and waits, up to
    `stop_timeout_s`, for the handlers to finish.

    A handler gets `(message, payload)` and returns `(reply_message, reply_payload or
    None)`, or an async iterator of such chunks to stream its reply (the caller must
    read it with `RpcClient.stream`); it may also be an async generator function. A
    method in `client_stream_handlers` is called with an async iterator of the
    caller's chunks (`Reply`s, sent with `RpcClient.call_stream`) and returns one
    reply. A handler's exception goes back to the caller as `RpcRemoteError` (with the
    code and detail of a `HandlerError`). A one-way request (`RpcClient.send`) runs its
    handler and gets no reply: its result is dropped, and its failures are logged and
    counted in `one_way_errors`. The payloads a handler is given are its own
    to keep.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        host: str,
        port: int,
        *,
        client_stream_handlers: Mapping[str, ClientStreamHandler] | None = None,
        ssl: ssl_module.SSLContext | None = None,
        handlers_inflight_max: int = HANDLERS_INFLIGHT_MAX,
        streams_inflight_max: int = STREAMS_INFLIGHT_MAX,
        stream_idle_timeout_s: float = STREAM_IDLE_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        message_bytes_max: int = MESSAGE_BYTES_MAX,
        payload_bytes_max: int = PAYLOAD_BYTES_MAX,
    ) -> None:
        _check_methods(handlers, client_stream_handlers or {})
        if handlers_inflight_max < 1:
            raise ValueError(f"handlers_inflight_max must be >= 1, got {handlers_inflight_max}")
        if streams_inflight_max < 1:
            raise ValueError(f"streams_inflight_max must be >= 1, got {streams_inflight_max}")
        self.handlers = dict(handlers)
        self.client_stream_handlers = dict(client_stream_handlers or {})
        self.host = host
        self.requested_port = port
        self.handlers_inflight_max = handlers_inflight_max
        self.streams_inflight_max = streams_inflight_max
        self.stream_idle_timeout_s = stream_idle_timeout_s
        self.message_bytes_max = message_bytes_max
        self.payload_bytes_max = payload_bytes_max
        self.connections: set[_ServerConnection] = set()
        # Transport errors and handler failures of one-way requests, which have no
        # caller to tell.
        self.one_way_errors = 0
        self._ssl = ssl
        self._stop_timeout_s = stop_timeout_s
        self._server: asyncio.Server | None = None

    def add_handlers(
        self,
        handlers: Mapping[str, Handler],
        client_stream_handlers: Mapping[str, ClientStreamHandler] | None = None,
    ) -> None:
        """Serve more methods, from now on, on every connection (a service that can
        start only once the server runs: a node's storage service waits for its device
        ids from the cluster map). A method is never replaced nor removed."""
        client_stream_handlers = client_stream_handlers or {}
        _check_methods(handlers, client_stream_handlers)
        taken = (set(handlers) | set(client_stream_handlers)) & (
            set(self.handlers) | set(self.client_stream_handlers)
        )
        if taken:
            raise ValueError(f"methods {sorted(taken)} are already served")
        self.handlers.update(handlers)
        self.client_stream_handlers.update(client_stream_handlers)

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
