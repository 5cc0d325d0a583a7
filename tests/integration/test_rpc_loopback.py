"""`atoll.rpc` over real sockets on 127.0.0.1 (ephemeral ports), one event loop per test."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import pytest

from atoll.base import loop as event_loop
from atoll.rpc import (
    ERROR_HANDLER_FAILED,
    ERROR_UNKNOWN_METHOD,
    INFLIGHT_CALLS_MAX,
    Chunk,
    ClientStreamHandler,
    ConnectionLost,
    Handler,
    Reply,
    RpcClient,
    RpcRemoteError,
    RpcServer,
    RpcTimeout,
)
from atoll.rpc.frame import (
    FLAG_ONE_WAY,
    KIND_REQUEST,
    KIND_RESPONSE,
    Frame,
    FrameDecoder,
    encode_frame,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HOST = "127.0.0.1"


@pytest.fixture(autouse=True, params=event_loop.LOOPS)
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on each loop the nodes can run on (`atoll.base.loop`)."""
    monkeypatch.setenv(event_loop.LOOP_ENV, request.param)
    return str(request.param)


async def echo(message: bytes, payload: bytes | memoryview) -> tuple[bytes, bytes | memoryview]:
    return message, payload


async def fail(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
    raise ValueError(f"cannot handle {message!r}")


def run_with(
    handlers: Mapping[str, Handler],
    body: Callable[[RpcServer, RpcClient], Awaitable[None]],
    *,
    inflight_max: int = INFLIGHT_CALLS_MAX,
    client_stream_handlers: Mapping[str, ClientStreamHandler] | None = None,
) -> None:
    async def main() -> None:
        server = RpcServer(handlers, HOST, 0, client_stream_handlers=client_stream_handlers)
        await server.start()
        try:
            client = await RpcClient.connect(HOST, server.port, inflight_max=inflight_max)
            try:
                await body(server, client)
            finally:
                await client.close()
        finally:
            await server.stop()

    event_loop.run(main())


def test_echo_with_and_without_payload() -> None:
    async def body(server: RpcServer, client: RpcClient) -> None:
        assert await client.call("echo", b"hello", b"raw bytes") == (b"hello", b"raw bytes")
        assert await client.call("echo", b"") == (b"", b"")
        reply = await client.call("echo", b"m", memoryview(b"view"), payload_crc=True)
        assert bytes(reply.payload) == b"view"

    run_with({"echo": echo}, body)


def test_thousand_concurrent_calls_on_one_connection() -> None:
    seen_at_once = 0
    running = 0

    async def slow_echo(message: bytes, payload: bytes | memoryview) -> tuple[bytes, bytes]:
        nonlocal running, seen_at_once
        running += 1
        seen_at_once = max(seen_at_once, running)
        await asyncio.sleep(0.01)
        running -= 1
        return message, bytes(payload) * 2

    async def body(server: RpcServer, client: RpcClient) -> None:
        replies = await asyncio.gather(
            *(client.call("echo", b"%d" % i, b"%d" % i, timeout_s=30) for i in range(1000))
        )
        assert [r.message for r in replies] == [b"%d" % i for i in range(1000)]
        assert [bytes(r.payload) for r in replies] == [b"%d" % i * 2 for i in range(1000)]
        assert len(server.connections) == 1
        assert client.pending_calls == 0

    run_with({"echo": slow_echo}, body, inflight_max=256)
    # The client's in-flight limit held, and calls really overlapped.
    assert 100 <= seen_at_once <= 256


def test_sixteen_mib_payload_both_ways() -> None:
    payload = bytes(range(256)) * (16 * 1024 * 1024 // 256)

    async def body(server: RpcServer, client: RpcClient) -> None:
        reply = await client.call("echo", b"big", payload, timeout_s=30, payload_crc=True)
        assert isinstance(reply.payload, memoryview)
        assert reply.payload == payload

    run_with({"echo": echo}, body)


def test_remote_exception_and_unknown_method() -> None:
    async def body(server: RpcServer, client: RpcClient) -> None:
        with pytest.raises(RpcRemoteError) as info:
            await client.call("fail", b"this")
        assert info.value.code == ERROR_HANDLER_FAILED
        assert info.value.method == "fail"
        assert "ValueError: cannot handle b'this'" in info.value.remote_message
        with pytest.raises(RpcRemoteError) as info:
            await client.call("nope", b"")
        assert info.value.code == ERROR_UNKNOWN_METHOD
        # The connection is still good.
        assert await client.call("echo", b"after") == (b"after", b"")

    run_with({"echo": echo, "fail": fail}, body)


def test_server_stop_fails_pending_calls_with_connection_lost() -> None:
    async def main() -> None:
        started = 0
        all_started = asyncio.Event()

        async def hang(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
            nonlocal started
            started += 1
            if started == 5:
                all_started.set()
            await asyncio.sleep(3600)
            return b"", None

        server = RpcServer({"hang": hang}, HOST, 0)
        await server.start()
        client = await RpcClient.connect(HOST, server.port)
        calls = [asyncio.create_task(client.call("hang", b"", timeout_s=30)) for _ in range(5)]
        await asyncio.wait_for(all_started.wait(), 10)
        await server.stop()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        assert all(isinstance(r, ConnectionLost) for r in results), results
        assert all(isinstance(r, ConnectionError) for r in results)
        with pytest.raises(ConnectionLost):
            await client.call("hang", b"")
        await client.close()

    event_loop.run(main())


def test_call_timeout_raises_and_cancels_the_handler() -> None:
    async def main() -> None:
        done = asyncio.Event()

        async def hang(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                done.set()
                raise
            return b"", None

        async with (
            RpcServer({"hang": hang, "echo": echo}, HOST, 0) as server,
            await RpcClient.connect(HOST, server.port) as client,
        ):
            with pytest.raises(RpcTimeout) as info:
                await client.call("hang", b"", timeout_s=0.2)
            assert isinstance(info.value, TimeoutError)
            await asyncio.wait_for(done.wait(), 5)  # the cancel frame reached it
            assert client.pending_calls == 0
            assert await client.call("echo", b"still ok") == (b"still ok", b"")

    event_loop.run(main())


def test_caller_cancellation_propagates_and_cancels_remotely() -> None:
    async def main() -> None:
        handler_cancelled = asyncio.Event()

        async def hang(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                handler_cancelled.set()
                raise
            return b"", None

        async with (
            RpcServer({"hang": hang}, HOST, 0) as server,
            await RpcClient.connect(HOST, server.port) as client,
        ):
            task = asyncio.create_task(client.call("hang", b""))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(handler_cancelled.wait(), 5)

    event_loop.run(main())


def test_connect_refused_is_connection_lost() -> None:
    async def main() -> None:
        server = RpcServer({}, HOST, 0)
        await server.start()
        port = server.port
        await server.stop()
        with pytest.raises(ConnectionLost):
            await RpcClient.connect(HOST, port, connect_timeout_s=5)

    event_loop.run(main())


# -- streams -------------------------------------------------------------------------------

CHUNK_BYTES = 1024 * 1024


def _block(i: int) -> bytes:
    return bytes([i % 251]) * CHUNK_BYTES


def test_server_stream_of_large_chunks() -> None:
    async def download(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        for i in range(int(message)):
            yield b"%d" % i, _block(i)

    async def body(server: RpcServer, client: RpcClient) -> None:
        digest = hashlib.sha256()
        count = 0
        async for reply in client.stream("download", b"48", payload_crc=True):
            assert reply.message == b"%d" % count
            assert len(reply.payload) == CHUNK_BYTES
            digest.update(reply.payload)
            count += 1
        assert count == 48
        assert digest.digest() == hashlib.sha256(b"".join(map(_block, range(48)))).digest()
        assert client.pending_calls == 0

    run_with({"download": download}, body)


def test_client_stream_of_large_chunks_in_parts() -> None:
    async def upload(chunks: AsyncIterator[Reply]) -> Chunk:
        digest = hashlib.sha256()
        count = 0
        async for reply in chunks:
            assert reply.message == b"%d" % count
            digest.update(reply.payload)
            count += 1
        return b"%d" % count, digest.digest()

    async def source() -> AsyncIterator[Chunk]:
        for i in range(40):
            block = _block(i)
            yield b"%d" % i, [block[:100], block[100:]]  # sent as two unjoined parts

    async def body(server: RpcServer, client: RpcClient) -> None:
        reply = await client.call_stream("upload", source(), payload_crc=True, timeout_s=30)
        assert reply.message == b"40"
        assert reply.payload == hashlib.sha256(b"".join(map(_block, range(40)))).digest()
        # Unary calls share the connection with a stream in progress.
        assert await client.call("echo", b"after") == (b"after", b"")

    run_with({"echo": echo}, body, client_stream_handlers={"upload": upload})


def test_calls_go_on_while_a_stream_consumer_stalls() -> None:
    closed = asyncio.Event()

    async def endless(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        i = 0
        try:
            while True:
                yield b"%d" % i, _block(i)
                i += 1
        finally:
            closed.set()

    async def body(server: RpcServer, client: RpcClient) -> None:
        async with contextlib.aclosing(client.stream("endless", b"")) as replies:
            assert (await anext(replies)).message == b"0"
            # The stream holds at most a window of chunks; other calls still flow.
            for i in range(50):
                assert await client.call("echo", b"%d" % i) == (b"%d" % i, b"")
            assert (await anext(replies)).message == b"1"
        # Leaving the block cancelled the stream on the server.
        await asyncio.wait_for(closed.wait(), 10)
        assert client.pending_calls == 0

    run_with({"endless": endless, "echo": echo}, body)


def test_one_way_requests_run_in_order_and_are_never_answered() -> None:
    """Raw frames on a socket, so that any frame the server sends is seen: one-way
    requests (to a handler, a failing handler, an unknown method) get nothing back,
    not even an error; the plain call after them gets its reply, and it is the first
    frame to arrive. Handlers start in arrival order and these finish without
    suspending, so any answer to the one-way requests would have been written first."""
    seen: list[bytes] = []

    async def record(message: bytes, payload: bytes | memoryview) -> Chunk:
        seen.append(message)
        return b"ignored", None

    async def main() -> None:
        server = RpcServer({"record": record, "fail": fail, "echo": echo}, HOST, 0)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            frames = [
                encode_frame(KIND_REQUEST, i, b"record", b"%d" % i, flags=FLAG_ONE_WAY)
                for i in range(1, 51)
            ]
            frames.append(encode_frame(KIND_REQUEST, 51, b"fail", b"x", flags=FLAG_ONE_WAY))
            frames.append(encode_frame(KIND_REQUEST, 52, b"nope", b"", flags=FLAG_ONE_WAY))
            frames.append(encode_frame(KIND_REQUEST, 53, b"echo", b"last"))
            writer.write(b"".join(bytes(p) for parts in frames for p in parts))
            decoder = FrameDecoder()
            answers: list[Frame] = []
            while not answers:
                data = await asyncio.wait_for(reader.read(65536), 10)
                assert data, "the server closed the connection"
                answers.extend(decoder.feed(data))
            assert [(f.kind, f.request_id, f.message) for f in answers] == [
                (KIND_RESPONSE, 53, b"last")
            ]
            assert seen == [b"%d" % i for i in range(1, 51)]
            assert server.one_way_errors == 2
            writer.close()
        finally:
            await server.stop()

    event_loop.run(main())


def test_client_send_is_one_way_and_fails_on_a_lost_connection() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def record(message: bytes, payload: bytes | memoryview) -> Chunk:
        seen.append((message, bytes(payload)))
        return b"", None

    async def body(server: RpcServer, client: RpcClient) -> None:
        for i in range(200):
            await client.send("record", b"%d" % i, [b"pay", b"load"])
        # A call after the sends returns once every send before it was handled.
        assert await client.call("echo", b"after") == (b"after", b"")
        assert seen == [(b"%d" % i, b"payload") for i in range(200)]
        assert client.pending_calls == 0
        await server.stop()
        await client._protocol.closed
        with pytest.raises(ConnectionLost):
            await client.send("record", b"late")

    run_with({"record": record, "echo": echo}, body)


def test_methods_added_while_serving_reach_open_connections() -> None:
    async def body(server: RpcServer, client: RpcClient) -> None:
        with pytest.raises(RpcRemoteError) as info:
            await client.call("late", b"x")
        assert info.value.code == ERROR_UNKNOWN_METHOD
        server.add_handlers({"late": echo})
        assert await client.call("late", b"now") == (b"now", b"")  # the same connection
        with pytest.raises(ValueError, match="already served"):
            server.add_handlers({"echo": echo})

    run_with({"echo": echo}, body)
