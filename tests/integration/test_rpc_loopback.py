"""`atoll.rpc` over real sockets on 127.0.0.1 (ephemeral ports), one event loop per test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import pytest

from atoll.rpc import (
    ERROR_HANDLER_FAILED,
    ERROR_UNKNOWN_METHOD,
    ConnectionLost,
    Handler,
    RpcClient,
    RpcRemoteError,
    RpcServer,
    RpcTimeout,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HOST = "127.0.0.1"


async def echo(message: bytes, payload: bytes | memoryview) -> tuple[bytes, bytes | memoryview]:
    return message, payload


async def fail(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
    raise ValueError(f"cannot handle {message!r}")


def run_with(
    handlers: Mapping[str, Handler],
    body: Callable[[RpcServer, RpcClient], Awaitable[None]],
    **client_options: int,
) -> None:
    async def main() -> None:
        server = RpcServer(handlers, HOST, 0)
        await server.start()
        try:
            client = await RpcClient.connect(HOST, server.port, **client_options)
            try:
                await body(server, client)
            finally:
                await client.close()
        finally:
            await server.stop()

    asyncio.run(main())


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

    asyncio.run(main())


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

    asyncio.run(main())


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

    asyncio.run(main())


def test_connect_refused_is_connection_lost() -> None:
    async def main() -> None:
        server = RpcServer({}, HOST, 0)
        await server.start()
        port = server.port
        await server.stop()
        with pytest.raises(ConnectionLost):
            await RpcClient.connect(HOST, port, connect_timeout_s=5)

    asyncio.run(main())
