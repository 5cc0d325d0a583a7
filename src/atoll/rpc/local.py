"""`LocalClient`: the calls of `RpcClient` answered by handlers in this process, with no
socket in between. Does no I/O of its own.

A node runs its storage service and its S3 gateway in one process, and a third of a
stripe's shards (two of six for 4+2 on three hosts) belong to the gateway's own node.
Sending those through the loopback connection to itself costs a socket write, a read
and framing on both sides for every byte. A `LocalClient` over the same handlers the
`RpcServer` serves gives the same behaviour for the caller (the same replies, the same
`RpcRemoteError` for a handler's failure, `RpcTimeout` when a wait passes
`timeout_s`) at the cost of a function call.

Differences from a connection, on purpose: payloads are handed over without a copy
(a handler may keep a view of the caller's buffer until it answers, as the contract
of `RpcClient.call` already requires buffers to stay unchanged until then), and there
is no frame size limit to enforce (nothing is framed).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Mapping
from typing import Protocol, TypeVar

from atoll.rpc.connection import CALL_TIMEOUT_S, Chunk, ClientStreamHandler, Handler
from atoll.rpc.errors import HandlerError, RpcRemoteError, RpcTimeout
from atoll.rpc.frame import (
    ERROR_HANDLER_FAILED,
    ERROR_STREAM_MISMATCH,
    ERROR_UNKNOWN_METHOD,
    OutPayload,
)
from atoll.rpc.streams import Reply

log = logging.getLogger("atoll.rpc.local")

T = TypeVar("T")


def _joined(payload: OutPayload | None) -> bytes | memoryview:
    """One buffer for a payload given as one or several (no copy for one), as a
    connection would deliver it: bytes or a read-only view."""
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return memoryview(payload).toreadonly()
    return b"".join(payload)


def _reply(chunk: Chunk) -> Reply:
    message, payload = chunk
    return Reply(message, _joined(payload))


def _transport_error(method: str, code: str, text: str) -> RpcRemoteError:
    """An error the server side of a connection answers by itself (as `RpcServer`)."""
    return RpcRemoteError(code, text, method=method, request_id=0, detail=text.encode())


def _remote(method: str, err: Exception) -> RpcRemoteError:
    """The error a connection would have raised for a handler's exception."""
    if isinstance(err, HandlerError):
        text = err.detail.decode("utf-8", "replace")
        return RpcRemoteError(err.code, text, method=method, request_id=0, detail=err.detail)
    log.warning("rpc (local): handler %r failed", method, exc_info=err)
    return _transport_error(method, ERROR_HANDLER_FAILED, f"{type(err).__name__}: {err}")


class RpcCaller(Protocol):
    """What callers of one peer need: `RpcClient` (over a connection) and
    `LocalClient` (in this process) both are one."""

    async def call(
        self,
        method: str,
        message: bytes,
        payload: OutPayload | None = None,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> Reply: ...

    def stream(
        self,
        method: str,
        message: bytes,
        payload: OutPayload | None = None,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> AsyncGenerator[Reply, None]: ...

    async def call_stream(
        self,
        method: str,
        chunks: AsyncIterable[Chunk],
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> Reply: ...


class LocalClient:
    def __init__(
        self,
        handlers: Mapping[str, Handler],
        stream_handlers: Mapping[str, ClientStreamHandler] | None = None,
    ) -> None:
        self._handlers = handlers
        self._stream_handlers = stream_handlers or {}

    @property
    def is_closed(self) -> bool:
        return False

    async def close(self) -> None:
        return None

    def _handler(self, method: str) -> Handler:
        handler = self._handlers.get(method)
        if handler is None:
            raise _transport_error(method, ERROR_UNKNOWN_METHOD, f"no method {method!r}")
        return handler

    @staticmethod
    async def _within(method: str, timeout_s: float, call: Awaitable[T]) -> T:
        """`call`'s result, if it comes within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                return await call
        except TimeoutError as err:
            raise RpcTimeout(f"{method} (local): no answer in {timeout_s}s") from err

    async def _start(
        self, method: str, message: bytes, payload: OutPayload | None, timeout_s: float
    ) -> Chunk | AsyncIterator[Chunk]:
        handler = self._handler(method)
        try:
            called = handler(message, _joined(payload))
            if inspect.isawaitable(called):
                return await self._within(method, timeout_s, called)
            return called
        except (RpcTimeout, asyncio.CancelledError):
            raise
        except Exception as err:
            raise _remote(method, err) from err

    async def call(
        self,
        method: str,
        message: bytes,
        payload: OutPayload | None = None,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> Reply:
        """As `RpcClient.call`."""
        result = await self._start(method, message, payload, timeout_s)
        if isinstance(result, AsyncIterator):
            await _aclose(result)
            text = f"method {method!r} streams its reply; read it with stream()"
            raise _transport_error(method, ERROR_STREAM_MISMATCH, text)
        return _reply(result)

    async def stream(
        self,
        method: str,
        message: bytes,
        payload: OutPayload | None = None,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> AsyncGenerator[Reply, None]:
        """As `RpcClient.stream`: the chunks of the handler's streamed reply."""
        result = await self._start(method, message, payload, timeout_s)
        if not isinstance(result, AsyncIterator):
            yield _reply(result)
            return
        try:
            while True:
                try:
                    chunk = await self._within(method, timeout_s, anext(result))
                except StopAsyncIteration:
                    return
                except (RpcTimeout, asyncio.CancelledError):
                    raise
                except Exception as err:
                    raise _remote(method, err) from err
                yield _reply(chunk)
        finally:
            await _aclose(result)

    async def call_stream(
        self,
        method: str,
        chunks: AsyncIterable[Chunk],
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        payload_crc: bool = False,
    ) -> Reply:
        """As `RpcClient.call_stream`: the caller's chunks go to the handler as they
        are produced; its one reply comes back. Not bounded by `timeout_s`: the
        handler waits only for the caller's own chunks (whose production a
        connection does not time either), and the caller's producer is in this
        process."""
        handler = self._stream_handlers.get(method)
        if handler is None:
            if method in self._handlers:
                text = f"method {method!r} takes no client stream"
                raise _transport_error(method, ERROR_STREAM_MISMATCH, text)
            raise _transport_error(method, ERROR_UNKNOWN_METHOD, f"no method {method!r}")

        async def replies() -> AsyncIterator[Reply]:
            async for chunk in chunks:
                yield _reply(chunk)

        try:
            reply = await handler(replies())
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise _remote(method, err) from err
        return _reply(reply)


async def _aclose(iterator: AsyncIterator[Chunk]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


__all__ = ["LocalClient", "RpcCaller"]
