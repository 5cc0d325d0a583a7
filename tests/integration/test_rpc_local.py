"""`LocalClient` answers as a connection would: the same handlers served by a real
`RpcServer` on 127.0.0.1 and called through `RpcClient`, then called in process
through `LocalClient`, give the same replies and the same errors (code, detail) for
calls, server streams and client streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from atoll.rpc import (
    ERROR_HANDLER_FAILED,
    ERROR_UNKNOWN_METHOD,
    Chunk,
    HandlerError,
    LocalClient,
    Reply,
    RpcCaller,
    RpcClient,
    RpcRemoteError,
    RpcServer,
    RpcTimeout,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def echo(message: bytes, payload: bytes | memoryview) -> Chunk:
    return message.upper(), bytes(payload) * 2


async def refuse(message: bytes, payload: bytes | memoryview) -> Chunk:
    raise HandlerError("no_such_thing", b"detail " + message)


async def crash(message: bytes, payload: bytes | memoryview) -> Chunk:
    raise ValueError(f"cannot handle {message!r}")


async def stall(message: bytes, payload: bytes | memoryview) -> Chunk:
    await asyncio.sleep(30)
    return b"", None


async def count(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
    for i in range(int(message)):
        yield str(i).encode(), bytes([i]) * 3


async def count_then_fail(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
    yield b"0", b"x"
    raise HandlerError("broke", b"after one")


async def total(chunks: AsyncIterator[Reply]) -> Chunk:
    parts = [bytes(reply.payload) async for reply in chunks]
    return str(len(parts)).encode(), b"".join(parts)


HANDLERS = {
    "echo": echo,
    "refuse": refuse,
    "crash": crash,
    "stall": stall,
    "count": count,
    "count_then_fail": count_then_fail,
}
STREAM_HANDLERS = {"total": total}


async def outcome(call: Callable[[], Awaitable[object]]) -> object:
    """What a call gave: its value, or the error's class, code and detail."""
    try:
        return await call()
    except RpcRemoteError as err:
        detail = err.detail if err.code != ERROR_HANDLER_FAILED else err.remote_message
        return ("RpcRemoteError", err.code, detail)
    except RpcTimeout:
        return ("RpcTimeout",)


async def exercise(client: RpcCaller) -> list[object]:
    async def streamed(method: str, message: bytes) -> list[tuple[bytes, bytes]]:
        return [(r.message, bytes(r.payload)) async for r in client.stream(method, message)]

    async def chunks() -> AsyncIterator[Chunk]:
        for i in range(5):
            yield b"", bytearray([i]) * 10

    async def reply(method: str, message: bytes, payload: bytes) -> tuple[bytes, bytes]:
        r = await client.call(method, message, payload)
        return r.message, bytes(r.payload)

    async def client_stream() -> tuple[bytes, bytes]:
        r = await client.call_stream("total", chunks())
        return r.message, bytes(r.payload)

    return [
        await outcome(lambda: reply("echo", b"abc", b"xy")),
        await outcome(lambda: reply("refuse", b"abc", b"")),
        await outcome(lambda: reply("crash", b"abc", b"")),
        await outcome(lambda: reply("missing", b"", b"")),
        await outcome(lambda: client.call("stall", b"", timeout_s=0.2)),
        await outcome(lambda: streamed("count", b"4")),
        await outcome(lambda: streamed("count_then_fail", b"")),
        await outcome(client_stream),
    ]


def test_local_client_answers_as_a_connection_does() -> None:
    async def body() -> None:
        server = RpcServer(HANDLERS, "127.0.0.1", 0, client_stream_handlers=STREAM_HANDLERS)
        await server.start()
        client = await RpcClient.connect("127.0.0.1", server.port)
        try:
            remote = await exercise(client)
        finally:
            await client.close()
            await server.stop()
        local = await exercise(LocalClient(HANDLERS, STREAM_HANDLERS))
        assert local == remote
        # And they are what the handlers say, not two equal wrong answers.
        assert remote[0] == (b"ABC", b"xyxy")
        assert remote[1] == ("RpcRemoteError", "no_such_thing", b"detail abc")
        assert remote[2] == (
            "RpcRemoteError",
            ERROR_HANDLER_FAILED,
            "ValueError: cannot handle b'abc'",
        )
        assert remote[3][:2] == ("RpcRemoteError", ERROR_UNKNOWN_METHOD)
        assert remote[4] == ("RpcTimeout",)
        assert remote[5] == [(str(i).encode(), bytes([i]) * 3) for i in range(4)]
        assert remote[6] == ("RpcRemoteError", "broke", b"after one")
        assert remote[7] == (b"5", b"".join(bytes([i]) * 10 for i in range(5)))

    asyncio.run(body())
