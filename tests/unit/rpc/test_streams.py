"""`atoll.rpc` streams over an in-memory transport pair (no sockets): server streams,
client streams, the flow-control window, cancellation and errors.

The pair delivers bytes with `loop.call_soon` and honours `pause_reading`, and taps
each direction with a `FrameDecoder` so a test can count the frames of each kind.
Tests wait on conditions; `_settle()` only lets already-scheduled callbacks run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from atoll.rpc import (
    ERROR_HANDLER_FAILED,
    ERROR_STREAM_MISMATCH,
    ERROR_TOO_MANY_STREAMS,
    ERROR_UNKNOWN_METHOD,
    MESSAGE_BYTES_MAX,
    PAYLOAD_BYTES_MAX,
    STREAM_ACK_EVERY_CHUNKS,
    STREAM_WINDOW_CHUNKS,
    Chunk,
    ClientStreamHandler,
    ConnectionLost,
    FrameDecoder,
    Handler,
    HandlerError,
    Reply,
    RpcClient,
    RpcRemoteError,
    RpcServer,
    RpcTimeout,
)
from atoll.rpc.client import _ClientConnection
from atoll.rpc.connection import FrameProtocol
from atoll.rpc.frame import (
    KIND_REQUEST,
    KIND_STREAM_ACK,
    KIND_STREAM_CHUNK,
    KIND_STREAM_END,
    encode_frame,
)
from atoll.rpc.server import _ServerConnection

pytestmark = pytest.mark.timeout(30)


class _End(asyncio.Transport):
    """One end of an in-memory connection: `write` delivers to the peer's protocol."""

    def __init__(self, protocol: FrameProtocol) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self.protocol = protocol
        self.peer: _End | None = None
        self._closing = False
        self._reading_paused = False
        self._inbound: list[bytes] = []
        self.tap = FrameDecoder()  # frames written by this end
        self.kinds: Counter[int] = Counter()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "memory" if name == "peername" else default

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self.peer is None:
            return
        chunk = bytes(data)
        for frame in self.tap.feed(chunk):
            self.kinds[frame.kind] += 1
        self._loop.call_soon(self.peer.receive, chunk)

    def receive(self, data: bytes) -> None:
        self._inbound.append(data)
        self._deliver()

    def _deliver(self) -> None:
        while self._inbound and not self._reading_paused and not self._closing:
            data = memoryview(self._inbound.pop(0))
            while data:
                buffer = self.protocol.get_buffer(-1)
                n = min(len(buffer), len(data))
                buffer[:n] = data[:n]
                self.protocol.buffer_updated(n)
                data = data[n:]

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False
        self._loop.call_soon(self._deliver)

    def is_reading(self) -> bool:
        return not self._reading_paused

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self.protocol.connection_lost, None)
        if self.peer is not None:
            self.peer.close()

    def abort(self) -> None:
        self.close()


class Pair:
    def __init__(
        self, client: RpcClient, server: _ServerConnection, client_end: _End, server_end: _End
    ) -> None:
        self.client = client
        self.server = server
        self.client_end = client_end  # what the client wrote
        self.server_end = server_end  # what the server wrote


async def _pair(server: RpcServer) -> Pair:
    client_protocol = _ClientConnection(MESSAGE_BYTES_MAX, PAYLOAD_BYTES_MAX)
    server_protocol = _ServerConnection(server)
    client_end, server_end = _End(client_protocol), _End(server_protocol)
    client_end.peer, server_end.peer = server_end, client_end
    client_protocol.connection_made(client_end)
    server_protocol.connection_made(server_end)
    client = RpcClient(
        client_end,
        client_protocol,
        inflight_max=64,
        message_bytes_max=MESSAGE_BYTES_MAX,
        payload_bytes_max=PAYLOAD_BYTES_MAX,
    )
    return Pair(client, server_protocol, client_end, server_end)


def run(
    body: Callable[[Pair], Awaitable[None]],
    handlers: Mapping[str, Handler] | None = None,
    client_stream_handlers: Mapping[str, ClientStreamHandler] | None = None,
    **server_options: Any,
) -> None:
    async def main() -> None:
        server = RpcServer(
            handlers or {},
            "memory",
            0,
            client_stream_handlers=client_stream_handlers,
            **server_options,
        )
        pair = await _pair(server)
        try:
            await body(pair)
        finally:
            await pair.client.close()

    asyncio.run(main())


async def _settle() -> None:
    """Let every callback already scheduled (and those it schedules) run."""
    for _ in range(100):
        await asyncio.sleep(0)


UNTIL_TIMEOUT_S = 10.0


async def _until(condition: Callable[[], bool], what: str) -> None:
    # Poll the condition (some wait on a server timer) for at most UNTIL_TIMEOUT_S.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + UNTIL_TIMEOUT_S
    while loop.time() < deadline:
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened within {UNTIL_TIMEOUT_S}s: {what}")


def counting_stream(count: int, produced: list[int]) -> Handler:
    async def handler(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        for i in range(count):
            produced.append(i)
            yield b"%d" % i, bytes(payload) * (i % 3)

    return handler


# -- server streams ------------------------------------------------------------------------


def test_server_stream_delivers_every_chunk_in_order_and_acks_in_batches() -> None:
    produced: list[int] = []

    async def body(pair: Pair) -> None:
        got = [reply async for reply in pair.client.stream("count", b"", b"ab")]
        assert [r.message for r in got] == [b"%d" % i for i in range(100)]
        assert [bytes(r.payload) for r in got] == [b"ab" * (i % 3) for i in range(100)]
        await _settle()
        assert pair.server_end.kinds[KIND_STREAM_CHUNK] == 100
        assert pair.server_end.kinds[KIND_STREAM_END] == 1
        # One ack per STREAM_ACK_EVERY_CHUNKS taken, none after the end arrived.
        acks = pair.client_end.kinds[KIND_STREAM_ACK]
        assert 100 // STREAM_ACK_EVERY_CHUNKS - 2 <= acks <= 100 // STREAM_ACK_EVERY_CHUNKS
        assert pair.client.pending_calls == 0

    run(body, {"count": counting_stream(100, produced)})


def test_server_never_runs_ahead_of_the_window() -> None:
    produced: list[int] = []

    async def body(pair: Pair) -> None:
        replies = pair.client.stream("count", b"")
        first = await anext(replies)
        assert first.message == b"0"
        await _settle()
        # The consumer has taken one chunk (not yet acknowledged): the server has
        # produced and sent exactly a window's worth, and waits.
        assert len(produced) == STREAM_WINDOW_CHUNKS
        taken = 1
        while taken < 60:
            await anext(replies)
            taken += 1
            await _settle()
            acked = taken // STREAM_ACK_EVERY_CHUNKS * STREAM_ACK_EVERY_CHUNKS
            assert len(produced) == min(acked + STREAM_WINDOW_CHUNKS, 60)
        assert [r.message async for r in replies] == []
        assert len(produced) == 60

    run(body, {"count": counting_stream(60, produced)})


def test_stopping_early_cancels_the_server_stream() -> None:
    closed = asyncio.Event()

    async def endless(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        try:
            i = 0
            while True:
                yield b"%d" % i, None
                i += 1
        finally:
            closed.set()

    async def body(pair: Pair) -> None:
        async with contextlib.aclosing(pair.client.stream("endless", b"")) as replies:
            async for reply in replies:
                if reply.message == b"20":
                    break
        await asyncio.wait_for(closed.wait(), 5)
        await _until(lambda: not pair.server.tasks, "the handler task ended")
        assert pair.client.pending_calls == 0
        # Late chunks crossing the cancel were dropped; the connection still works.
        assert [r.message async for r in pair.client.stream("endless2", b"")] == [b"x"]

    async def one(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        yield b"x", None

    run(body, {"endless": endless, "endless2": one})


def test_error_mid_stream_comes_after_the_chunks_before_it() -> None:
    async def failing(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        yield b"a", None
        yield b"b", None
        raise ValueError("disk on fire")

    async def body(pair: Pair) -> None:
        replies = pair.client.stream("failing", b"")
        assert [(await anext(replies)).message for _ in range(2)] == [b"a", b"b"]
        with pytest.raises(RpcRemoteError) as info:
            await anext(replies)
        assert info.value.code == ERROR_HANDLER_FAILED
        assert "ValueError: disk on fire" in info.value.remote_message
        assert pair.client.pending_calls == 0

    run(body, {"failing": failing})


def test_awaitable_handler_may_return_a_stream() -> None:
    async def chunks() -> AsyncIterator[Chunk]:
        yield b"one", [b"p", b"q"]  # a payload in parts
        yield b"two", None

    async def handler(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        return chunks()

    async def body(pair: Pair) -> None:
        got = [(r.message, bytes(r.payload)) async for r in pair.client.stream("h", b"")]
        assert got == [(b"one", b"pq"), (b"two", b"")]

    run(body, {"h": handler})


def test_stream_of_a_one_reply_handler_yields_that_reply() -> None:
    async def echo(message: bytes, payload: bytes | memoryview) -> Chunk:
        return message, payload

    async def body(pair: Pair) -> None:
        got = [r async for r in pair.client.stream("echo", b"m", b"p")]
        assert got == [Reply(b"m", b"p")]

    run(body, {"echo": echo})


def test_call_of_a_streaming_handler_is_a_mismatch() -> None:
    async def body(pair: Pair) -> None:
        with pytest.raises(RpcRemoteError) as info:
            await pair.client.call("count", b"")
        assert info.value.code == ERROR_STREAM_MISMATCH

    run(body, {"count": counting_stream(3, [])})


def test_stream_waits_for_chunks_within_its_timeout() -> None:
    cancelled = asyncio.Event()

    async def silent(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        yield b"", None

    async def body(pair: Pair) -> None:
        with pytest.raises(RpcTimeout, match=r"no chunk in 0\.05s"):
            async for _ in pair.client.stream("silent", b"", timeout_s=0.05):
                pass
        await asyncio.wait_for(cancelled.wait(), 5)  # the cancel frame reached it

    run(body, {"silent": silent})


def test_server_gives_up_on_a_caller_that_takes_nothing() -> None:
    async def body(pair: Pair) -> None:
        replies = pair.client.stream("count", b"")
        assert (await anext(replies)).message == b"0"
        await _until(
            lambda: pair.server_end.kinds[KIND_STREAM_CHUNK] == STREAM_WINDOW_CHUNKS,
            "a window of chunks sent",
        )
        await _until(lambda: pair.server_end.kinds[3] == 1, "the server's error frame")
        got = 1
        with pytest.raises(RpcRemoteError, match=r"took no chunk in 0\.05s"):
            async for _ in replies:
                got += 1
        assert got == STREAM_WINDOW_CHUNKS

    run(body, {"count": counting_stream(1000, [])}, stream_idle_timeout_s=0.05)


def test_streams_beyond_the_limit_are_refused() -> None:
    async def body(pair: Pair) -> None:
        open_streams = [pair.client.stream("count", b"") for _ in range(2)]
        for replies in open_streams:
            await anext(replies)
        with pytest.raises(RpcRemoteError) as info:
            await anext(pair.client.stream("count", b""))
        assert info.value.code == ERROR_TOO_MANY_STREAMS
        for replies in open_streams:
            await replies.aclose()
        await _until(lambda: not pair.server.tasks, "the stream handlers ended")
        assert (await anext(pair.client.stream("count", b""))).message == b"0"

    run(body, {"count": counting_stream(1000, [])}, streams_inflight_max=2)


def test_a_peer_that_overruns_the_window_is_dropped() -> None:
    async def body(pair: Pair) -> None:
        replies = pair.client.stream("hang", b"")
        task = asyncio.ensure_future(anext(replies))
        await _until(lambda: pair.client_end.kinds[KIND_REQUEST] == 1, "the request sent")
        for i in range(STREAM_WINDOW_CHUNKS + 1):  # a rogue server ignores the window
            for part in encode_frame(KIND_STREAM_CHUNK, 1, b"", b"%d" % i):
                pair.server_end.write(part)
        assert (await task).message == b"0"
        with pytest.raises(ConnectionLost, match="overran its window"):
            async for _ in replies:
                pass

    async def hang(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        await asyncio.Event().wait()
        yield b"", None

    run(body, {"hang": hang})


# -- client streams ------------------------------------------------------------------------


async def _chunks(count: int, pulled: list[int] | None = None) -> AsyncIterator[Chunk]:
    for i in range(count):
        if pulled is not None:
            pulled.append(i)
        yield b"%d" % i, b"x" * i


def test_client_stream_reaches_the_handler_in_order() -> None:
    async def collect(chunks: AsyncIterator[Reply]) -> Chunk:
        got = [(r.message, bytes(r.payload)) async for r in chunks]
        assert got == [(b"%d" % i, b"x" * i) for i in range(50)]
        return b"%d" % len(got), b"total"

    async def body(pair: Pair) -> None:
        reply = await pair.client.call_stream("collect", _chunks(50), payload_crc=True)
        assert reply == Reply(b"50", b"total")
        assert pair.client.pending_calls == 0
        await _settle()
        assert pair.client_end.kinds[KIND_STREAM_CHUNK] == 50
        assert pair.client_end.kinds[KIND_STREAM_END] == 1
        assert pair.server_end.kinds[KIND_STREAM_ACK] == 50 // STREAM_ACK_EVERY_CHUNKS

    run(body, client_stream_handlers={"collect": collect})


def test_client_never_runs_ahead_of_the_window() -> None:
    taken: list[int] = []
    pulled: list[int] = []
    release = asyncio.Queue[None]()

    async def slow(chunks: AsyncIterator[Reply]) -> Chunk:
        async for reply in chunks:
            taken.append(int(reply.message))
            await release.get()
        return b"done", None

    async def body(pair: Pair) -> None:
        call = asyncio.ensure_future(pair.client.call_stream("slow", _chunks(40, pulled)))
        for step in range(40):
            await _settle()
            acked = len(taken) // STREAM_ACK_EVERY_CHUNKS * STREAM_ACK_EVERY_CHUNKS
            # The source is pulled once more than sent: the chunk waiting for room.
            assert len(pulled) <= min(acked + STREAM_WINDOW_CHUNKS + 1, 40), step
            release.put_nowait(None)
        assert await call == Reply(b"done", b"")
        assert taken == list(range(40))

    run(body, client_stream_handlers={"slow": slow})


def test_early_answer_stops_the_sender() -> None:
    async def first_three(chunks: AsyncIterator[Reply]) -> Chunk:
        got = [r.message async for r in _take(chunks, 3)]
        return b",".join(got), None

    async def body(pair: Pair) -> None:
        pulled: list[int] = []
        reply = await pair.client.call_stream("first3", _chunks(10_000, pulled))
        assert reply.message == b"0,1,2"
        assert len(pulled) <= 3 + STREAM_WINDOW_CHUNKS + 1
        assert await pair.client.call("echo", b"ok") == (b"ok", b"")

    async def echo(message: bytes, payload: bytes | memoryview) -> Chunk:
        return message, payload

    run(body, {"echo": echo}, client_stream_handlers={"first3": first_three})


async def _take(chunks: AsyncIterator[Reply], count: int) -> AsyncIterator[Reply]:
    for _ in range(count):
        yield await anext(chunks)


def test_client_stream_handler_error_with_detail() -> None:
    async def refuse(chunks: AsyncIterator[Reply]) -> Chunk:
        await anext(chunks)
        raise HandlerError("kv_error", b"\x08\x01\x10\x07")

    async def body(pair: Pair) -> None:
        with pytest.raises(RpcRemoteError) as info:
            await pair.client.call_stream("refuse", _chunks(100))
        assert info.value.code == "kv_error"
        assert info.value.detail == b"\x08\x01\x10\x07"
        assert pair.client.pending_calls == 0

    run(body, client_stream_handlers={"refuse": refuse})


def test_client_stream_mismatches_and_unknown_methods() -> None:
    async def echo(message: bytes, payload: bytes | memoryview) -> Chunk:
        return message, payload

    async def collect(chunks: AsyncIterator[Reply]) -> Chunk:
        return b"", None

    async def body(pair: Pair) -> None:
        with pytest.raises(RpcRemoteError) as info:
            await pair.client.call_stream("echo", _chunks(5))
        assert info.value.code == ERROR_STREAM_MISMATCH
        with pytest.raises(RpcRemoteError) as info:
            await pair.client.call("collect", b"")
        assert info.value.code == ERROR_STREAM_MISMATCH
        with pytest.raises(RpcRemoteError) as info:
            await pair.client.call_stream("nope", _chunks(5))
        assert info.value.code == ERROR_UNKNOWN_METHOD

    run(body, {"echo": echo}, client_stream_handlers={"collect": collect})


def test_client_stream_cancelled_by_the_caller_cancels_the_handler() -> None:
    handler_cancelled = asyncio.Event()
    started = asyncio.Event()

    async def hang(chunks: AsyncIterator[Reply]) -> Chunk:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise
        return b"", None

    async def body(pair: Pair) -> None:
        call = asyncio.ensure_future(pair.client.call_stream("hang", _chunks(3)))
        await asyncio.wait_for(started.wait(), 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(handler_cancelled.wait(), 5)
        assert pair.client.pending_calls == 0

    run(body, client_stream_handlers={"hang": hang})


def test_client_stream_reply_timeout() -> None:
    async def hang(chunks: AsyncIterator[Reply]) -> Chunk:
        async for _ in chunks:
            pass
        await asyncio.Event().wait()
        return b"", None

    async def body(pair: Pair) -> None:
        with pytest.raises(RpcTimeout, match=r"no reply in 0\.05s"):
            await pair.client.call_stream("hang", _chunks(3), timeout_s=0.05)
        assert pair.client.pending_calls == 0

    run(body, client_stream_handlers={"hang": hang})


def test_connection_loss_fails_streams_both_ways() -> None:
    async def hang_server(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        yield b"first", None
        await asyncio.Event().wait()

    async def hang_client(chunks: AsyncIterator[Reply]) -> Chunk:
        await asyncio.Event().wait()
        return b"", None

    async def body(pair: Pair) -> None:
        replies = pair.client.stream("s", b"")
        assert (await anext(replies)).message == b"first"
        upload = asyncio.ensure_future(pair.client.call_stream("c", _chunks(1000)))
        await _until(
            lambda: pair.client_end.kinds[KIND_STREAM_CHUNK] == STREAM_WINDOW_CHUNKS,
            "a window of chunks sent",
        )
        pair.server_end.abort()
        with pytest.raises(ConnectionLost):
            await anext(replies)
        with pytest.raises(ConnectionLost):
            await upload

    run(body, {"s": hang_server}, client_stream_handlers={"c": hang_client})


def test_handler_error_detail_must_fit() -> None:
    with pytest.raises(ValueError, match="over 4096"):
        HandlerError("kv_error", b"x" * 4097)
    with pytest.raises(ValueError, match=r"1\.\.255 bytes"):
        HandlerError("")
