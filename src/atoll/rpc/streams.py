"""Flow control of `atoll.rpc` streams (docs/rpc.md §5): the receiving end's queue of
chunks (`StreamInbox`) and the sending end's window (`StreamWindow`).

No I/O: both wait on asyncio futures, and the inbox sends its acknowledgements through
a callback the connection gives it. The scheme is credit-based and per stream, so a
slow consumer holds back only its own stream, never the connection (pausing the socket
would stall every call multiplexed on it, Raft heartbeats included): a sender may have
`STREAM_WINDOW_CHUNKS` chunks sent and not yet acknowledged; the receiver queues what
arrives, and acknowledges chunks as its consumer takes them, `STREAM_ACK_EVERY_CHUNKS`
at a time. Memory per stream is thus bounded by the window times the chunk size.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from atoll.rpc.errors import RpcTimeout
from atoll.rpc.frame import STREAM_ACK_EVERY_CHUNKS, STREAM_WINDOW_CHUNKS


class Reply(NamedTuple):
    """A received message and its raw payload (`b""` if none): a call's result, a chunk
    of a streamed reply, or, given to a client-stream handler, a chunk of the caller's
    stream. A large payload is a read-only `memoryview` of a buffer of its own."""

    message: bytes
    payload: bytes | memoryview


class StreamInbox:
    """Chunks received on one stream, queued until the consumer takes them with
    `next()`; then the sender's end: `end()` or `fail(error)`.

    Every `STREAM_ACK_EVERY_CHUNKS` chunks taken are acknowledged with `send_ack(n)`.
    `push` refuses (returns False) a chunk beyond the window or after the end: the
    sender broke the protocol and the connection should be dropped.
    """

    def __init__(self, send_ack: Callable[[int], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._send_ack = send_ack
        self._items: deque[Reply] = deque()
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._taken_unacked = 0

    @property
    def finished(self) -> bool:
        """The stream ended or failed: nothing more will arrive."""
        return self._ended or self._error is not None

    def push(self, item: Reply) -> bool:
        if self.finished or len(self._items) + self._taken_unacked >= STREAM_WINDOW_CHUNKS:
            return False
        self._items.append(item)
        self._wake()
        return True

    def end(self) -> None:
        self._ended = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """End the stream with `error`, raised once the queued chunks are taken."""
        if not self.finished:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self, timeout_s: float) -> Reply | None:
        """The next chunk, or None at the end of the stream. Raises the stream's error
        after its last chunk, and `TimeoutError` if nothing arrives in `timeout_s`."""
        while not self._items:
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            waiter = self._waiter = self._loop.create_future()
            try:
                await asyncio.wait_for(waiter, timeout_s)
            finally:
                self._waiter = None
        item = self._items.popleft()
        self._taken_unacked += 1
        if self._taken_unacked >= STREAM_ACK_EVERY_CHUNKS and not self.finished:
            self._send_ack(self._taken_unacked)
            self._taken_unacked = 0
        return item

    async def iterate(self, idle_timeout_s: float, what: str) -> AsyncIterator[Reply]:
        """The chunks as an async iterator; `RpcTimeout` (naming `what`) if the sender
        sends nothing for `idle_timeout_s`."""
        while True:
            try:
                item = await self.next(idle_timeout_s)
            except TimeoutError as err:
                raise RpcTimeout(f"{what}: no chunk in {idle_timeout_s}s") from err
            if item is None:
                return
            yield item


class StreamWindow:
    """The sending end of one stream: chunks sent and not yet acknowledged.

    `wait_for_room()` before each chunk, `sent()` after it; `ack(n)` when credit comes
    back. `close(error)` wakes a waiting sender: with an error (the connection was
    lost) it raises it; without (the receiver answered early) it returns, and the
    sender checks why.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.unacked = 0
        self.closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def sent(self) -> None:
        self.unacked += 1

    def ack(self, count: int) -> bool:
        """Take `count` chunks of credit back; False if more than were sent (a
        protocol error)."""
        if count > self.unacked:
            return False
        self.unacked -= count
        self._wake()
        return True

    def close(self, error: BaseException | None = None) -> None:
        if not self.closed:
            self.closed = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_for_room(self, timeout_s: float) -> None:
        """Return once a chunk may be sent (or the window is closed); `TimeoutError`
        after `timeout_s` without credit."""
        while self.unacked >= STREAM_WINDOW_CHUNKS and not self.closed:
            waiter = self._waiter = self._loop.create_future()
            try:
                await asyncio.wait_for(waiter, timeout_s)
            finally:
                self._waiter = None
        if self._error is not None:
            raise self._error
